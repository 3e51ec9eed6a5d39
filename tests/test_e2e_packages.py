"""End to end through TLS on 127.0.0.1 with a real SoftHSM2 token: RFC 8295
/symmetrickeys, /firmware and /tamp and their returns. Packages are
published with estctl (run in-process on the PKCS#11 thread), fetched and
answered by `est sync` acting as a device, and every state change is
checked in the store; what travels is decoded with pyasn1-alt-modules; one
client never sees, nor answers for, another's packages; bad returns are
refused and change nothing."""
from __future__ import annotations

import base64
import contextlib
import io
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyasn1_alt_modules import rfc5652, rfc5934 as p5934
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import BasicAuth, EstClient, new_key
from estappliance.client.device import Device
from estappliance.client.sync import sync
from estappliance.pki import pal_format
from estappliance.pki import firmware, symkeys, tamp
from estappliance.pki.asn1 import rfc7191
from estappliance.pki.encoding import decode_body
from estappliance.store import on_store_thread
from estappliance.token import on_token_thread

from . import support
from .distribution_support import Asn1Check, certificate

PASSWORD = "correct horse"
EST = "/.well-known/est"
HW_TYPE = "1.3.6.1.4.1.99999.2.1"
FW_ID = "1.3.6.1.4.1.99999.1.7"
IMAGE = bytes(range(256)) * 20


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class PackagesCase(Asn1Check, unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        self.tmp = tmp
        self.vendor_root = certificate("CN=Widget Vendor Root", ca=True)
        self.vendor_signer = certificate("CN=Widget Firmware Signing", issuer=self.vendor_root)
        (tmp / "vendor.pem").write_bytes(pem(self.vendor_root[1]))
        self.server = yield support.start_server(
            self,
            profiles={"device": {"key_types": ["ec-p256", "rsa2048"],
                                 "key_usage": ["digitalSignature", "keyAgreement", "keyEncipherment"],
                                 "extended_key_usage": ["clientAuth"]}},
            labels={"default": {"profile": "device", "auth": ["basic", "cert"]}},
            trust_anchors={"vendor": str(tmp / "vendor.pem")},
            distribution={"firmware_anchors": ["vendor"]})
        yield self.server.add_client("alice", PASSWORD)
        yield self.server.add_client("bob", PASSWORD)
        self.alice = yield self.enroll("alice")
        self.bob = yield self.enroll("bob")

    # -- helpers ---------------------------------------------------------------------------

    def enroll(self, name, key_type="ec-p256"):
        key = new_key(key_type)

        def go():
            with EstClient(self.server.url, anchors=[self.server.ca_cert], auth=BasicAuth(name, PASSWORD)) as c:
                return key, c.enroll(key, f"CN={name}-device", link=False)
        return support.in_thread(go)

    def client(self, who) -> EstClient:
        key, cert = who
        return self.server.client(client_cert=[cert], client_key=key)

    def estctl(self, *argv):
        return self.server.estctl(*argv)

    def raw(self, method, path, headers=None, body=b"", who=None):
        kw = {} if who is None else {"client_cert": [who[1]], "client_key": who[0]}
        return self.server.raw(method, path, headers, body, **kw)

    def deliveries(self, client):
        def read():
            return {p.package.id: (p.package.pal_type, d) for p in self.server.store.packages.package_report(client=client)
                    for name, d in p.deliveries if name == client}
        return on_store_thread(read)

    def device(self, who, name, **kw) -> Device:
        return Device(self.tmp / f"device-{name}", [self.server.ca_cert, self.vendor_root[1]], key=who[0],
                      cert=who[1], **kw)

    def vendor_firmware(self, version=3, signer=None) -> Path:
        key, cert = signer or self.vendor_signer
        der = firmware.sign(IMAGE, key, cert, name=firmware.PackageName(oid=FW_ID, version=version),
                            targets=[HW_TYPE], certificates=[cert], description="widget firmware")
        path = self.tmp / f"fw-{version}.der"
        path.write_bytes(der)
        return path


class SyncTests(PackagesCase):
    @defer.inlineCallbacks
    def test_publish_every_kind_then_sync_fetches_and_acknowledges_all(self):
        new_root = certificate("CN=Partner Root", ca=True)
        (self.tmp / "partner.pem").write_bytes(pem(new_root[1]))
        steps = [
            ("publish", "symmetric-key", "--client", "alice", "--algorithm", "aes256", "--key-id", "fleet-1"),
            ("publish", "symmetric-key", "--client", "alice", "--algorithm", "aes128", "--key-id", "fleet-2",
             "--form", "encrypted-key-package"),
            ("publish", "firmware", str(self.vendor_firmware()), "--all"),
            ("publish", "firmware", str(self.tmp / "fw-3.der"), "--client", "bob"),
            ("publish", "tamp", "status-query", "--client", "alice"),
            ("publish", "tamp", "update", "--client", "alice", "--add", str(self.tmp / "partner.pem")),
            ("publish", "tamp", "community-update", "--client", "alice", "--add-community", "1.3.6.1.4.1.99999.5.1"),
            ("publish", "tamp", "sequence-adjust", "--all"),
        ]
        for argv in steps:
            code, out = yield self.estctl(*argv)
            self.assertEqual(code, 0, out)
        (self.tmp / "image.bin").write_bytes(IMAGE[::-1])
        code, out = yield self.estctl("publish", "firmware", str(self.tmp / "image.bin"), "--sign", "--client",
                                      "alice", "--package-id", FW_ID, "--version", "4", "--hardware", HW_TYPE)
        self.assertEqual(code, 0, out)
        # No symmetric key is left in the token: made, encrypted, destroyed.
        token = self.server.appliance.token
        labels = yield on_token_thread(token.key_labels, "symkey-")
        self.assertEqual(labels, [])

        device = self.device(self.alice, "alice", hw_type=HW_TYPE, hw_serial=b"SN-1")
        lines = []
        with self.client(self.alice) as c:
            report = yield support.in_thread(sync, c, device, log=lines.append)
        self.assertEqual([o for o in report.outcomes if not o.ok], [], lines)
        self.assertEqual(len(report.outcomes), 8, lines)
        self.assertEqual(len(report.returned), 8, lines)

        # The device kept what it received.
        state = self.tmp / "device-alice"
        self.assertEqual(len((state / "keys" / "fleet-1.key").read_bytes()), 32)
        self.assertEqual(len((state / "keys" / "fleet-2.key").read_bytes()), 16)
        self.assertEqual((state / "firmware" / f"{FW_ID}_version_3.bin").read_bytes(), IMAGE)
        self.assertEqual((state / "firmware" / f"{FW_ID}_version_4.bin").read_bytes(), IMAGE[::-1])
        self.assertIn(tamp.key_id_of_cert(new_root[1]), [a.key_id for a in device.anchors()])
        self.assertEqual(device.communities(), ("1.3.6.1.4.1.99999.5.1",))

        # The store saw every state change: offered, downloaded, receipt.
        mine = yield self.deliveries("alice")
        self.assertEqual(sorted(t for t, _ in mine.values()),
                         ["0024", "0024", "0026", "0026", "0028", "0030", "0034", "0036"])
        for package_id, (pal_type, d) in mine.items():
            self.assertEqual(d.state, "receipt", (package_id, pal_type))
            self.assertIsNotNone(d.offered_at)
            self.assertIsNotNone(d.downloaded_at)
            self.assertIsNotNone(d.receipt_at)
            self.assertIsNotNone(d.return_der)
        # TAMP confirms moved alice's trust anchor record.
        anchors = yield on_store_thread(self.server.store.tamp.client_anchors, "alice")
        self.assertIn(tamp.key_id_of_cert(new_root[1]), [a.key_id for a in anchors])
        self.assertIn(tamp.key_id_of_cert(self.server.ca_cert), [a.key_id for a in anchors])
        tamp_state = yield on_store_thread(self.server.store.tamp.client_tamp_state, "alice")
        self.assertEqual(tamp_state.communities, ("1.3.6.1.4.1.99999.5.1",))

        # Nothing new: the PAL asks for nothing, and validates against the corrected XSD.
        with self.client(self.alice) as c:
            again = yield support.in_thread(sync, c, device)
            resp = yield support.in_thread(c.request, "GET", "pal", accept="application/xml", authenticate=True)
        self.assertEqual(again.outcomes, [])
        pal_format.validate_xml(resp.body)
        entries = pal_format.parse_xml(resp.body)
        owed = [e for e in entries if e.type in ("0025", "0027", "0029", "0031", "0035", "0037")]
        self.assertEqual(owed, [])
        self.assertTrue(all(e.date is not None for e in entries if e.type in ("0024", "0026", "0028", "0030")))

        # bob sees none of alice's packages: the label-wide firmware and TAMP message, and his own firmware.
        bobs = yield self.deliveries("bob")
        self.assertEqual(sorted(t for t, _ in bobs.values()), ["0026", "0026", "0036"])
        for _, d in bobs.values():
            self.assertTrue(d is None or d.downloaded_at is None)  # bob has fetched nothing yet

    @defer.inlineCallbacks
    def test_apex_update_and_removal_move_the_record(self):
        apex = certificate("CN=New Apex", ca=True)
        (self.tmp / "apex.pem").write_bytes(pem(apex[1]))
        (self.tmp / "vendor-root.pem").write_bytes(pem(self.vendor_root[1]))
        for argv in (("publish", "tamp", "update", "--client", "alice", "--remove", str(self.tmp / "vendor-root.pem")),
                     ("publish", "tamp", "apex-update", "--client", "alice", "--apex", str(self.tmp / "apex.pem"))):
            code, out = yield self.estctl(*argv)
            self.assertEqual(code, 0, out)
        device = self.device(self.alice, "alice")
        with self.client(self.alice) as c:
            report = yield support.in_thread(sync, c, device)
        self.assertTrue(all(o.ok for o in report.outcomes), [o.summary for o in report.outcomes])
        self.assertNotIn(tamp.key_id_of_cert(self.vendor_root[1]), [a.key_id for a in device.anchors()])
        record = yield on_store_thread(self.server.store.tamp.client_anchors, "alice")
        apexes = [a for a in record if a.apex]
        self.assertEqual([a.key_id for a in apexes], [tamp.key_id_of_cert(apex[1])])
        self.assertNotIn(tamp.key_id_of_cert(self.vendor_root[1]), [a.key_id for a in record])
        code, out = yield self.estctl("tamp", "anchors", "alice")
        self.assertEqual(code, 0)
        self.assertIn("apex\tCN=New Apex", out)

    @defer.inlineCallbacks
    def test_refused_packages_are_reported_as_errors(self):
        # Firmware for other hardware: the device answers wrongHardware.
        code, out = yield self.estctl("publish", "firmware", str(self.vendor_firmware()), "--client", "alice")
        self.assertEqual(code, 0, out)
        device = self.device(self.alice, "alice", hw_type="1.3.6.1.4.1.99999.2.99")
        with self.client(self.alice) as c:
            report = yield support.in_thread(sync, c, device)
        self.assertEqual([o.ok for o in report.outcomes], [False])
        mine = yield self.deliveries("alice")
        (_, d), = mine.values()
        self.assertEqual((d.state, d.error_code), ("error", 27))


class WireTests(PackagesCase):
    @defer.inlineCallbacks
    def test_symmetric_key_on_the_wire(self):
        code, out = yield self.estctl("publish", "symmetric-key", "--client", "alice")
        self.assertEqual(code, 0, out)
        resp = yield self.raw("GET", f"{EST}/symmetrickeys", who=self.alice)
        self.assertEqual(resp.status, 200, resp.body)
        self.assertEqual(resp.header("content-type"), symkeys.media_type("enveloped"))
        self.assertEqual(resp.header("content-transfer-encoding"), "base64")
        der = decode_body(resp.body)
        _sd, enveloped = self.signed_content(der, rfc5652.id_envelopedData, rfc5652.EnvelopedData())
        self.assertEqual(enveloped["recipientInfos"][0].getName(), "kari")
        opened = symkeys.open_package(der, self.device(self.alice, "x")._recipient_key())
        self.assertEqual(len(opened.keys[0].key), 32)
        # Downloaded is recorded; a receipt signed by bob is refused, nothing recorded.
        mine = yield self.deliveries("alice")
        (package_id, (_, d)), = mine.items()
        self.assertEqual(d.state, "downloaded")
        forged = symkeys.sign_return(rfc7191.RECEIPT, symkeys.receipt(opened.pkg_id, self.bob[1].subject),
                                     *self.bob)
        resp = yield self.raw("POST", f"{EST}/symmetrickeys/return", {"Content-Type": "application/cms"},
                              base64.b64encode(forged), who=self.alice)
        self.assertEqual(resp.status, 400)
        self.assertIn(b"not by a certificate of this client", resp.body)
        # bob may not answer for alice's package either (and sees none of his own).
        resp = yield self.raw("POST", f"{EST}/symmetrickeys/return", {"Content-Type": "application/cms"},
                              forged, who=self.bob)
        self.assertEqual(resp.status, 400)
        self.assertIn(b"never offered", resp.body)
        resp = yield self.raw("GET", f"{EST}/symmetrickeys", who=self.bob)
        self.assertEqual(resp.status, 404)
        mine = yield self.deliveries("alice")
        self.assertEqual(mine[package_id][1].state, "downloaded")
        # The real receipt (raw DER body) is taken: 204.
        receipt = symkeys.sign_return(rfc7191.RECEIPT, symkeys.receipt(opened.pkg_id, self.alice[1].subject),
                                      *self.alice)
        resp = yield self.raw("POST", f"{EST}/symmetrickeys/return", {"Content-Type": "application/cms"}, receipt,
                              who=self.alice)
        self.assertEqual((resp.status, resp.body), (204, b""))
        mine = yield self.deliveries("alice")
        self.assertEqual(mine[package_id][1].state, "receipt")

    @defer.inlineCallbacks
    def test_a_return_for_a_package_offered_but_never_downloaded_is_refused(self):
        """The PAL showed it, the client never fetched it: the server knows it
        never sent it, so a receipt or error for it is a 400, nothing recorded."""
        code, out = yield self.estctl("publish", "symmetric-key", "--client", "alice")
        self.assertEqual(code, 0, out)
        resp = yield self.raw("GET", f"{EST}/pal", who=self.alice)
        self.assertEqual(resp.status, 200, resp.body)
        packages = yield on_store_thread(self.server.store.packages.package_report, client="alice")
        (report,) = packages
        pkg_id = report.package.key_package_id
        mine = yield self.deliveries("alice")
        self.assertEqual(mine[report.package.id][1].state, "offered")
        for body in (symkeys.sign_return(rfc7191.RECEIPT, symkeys.receipt(pkg_id, self.alice[1].subject),
                                         *self.alice),
                     symkeys.unsigned_return(rfc7191.ERROR, symkeys.error(pkg_id, self.alice[1].subject, 61))):
            resp = yield self.raw("POST", f"{EST}/symmetrickeys/return", {"Content-Type": "application/cms"},
                                  base64.b64encode(body), who=self.alice)
            self.assertEqual(resp.status, 400, resp.body)
            self.assertIn(b"offered to this client but never downloaded by it", resp.body)
        mine = yield self.deliveries("alice")
        delivery = mine[report.package.id][1]
        self.assertEqual((delivery.state, delivery.downloaded_at, delivery.error_code), ("offered", None, None))

    @defer.inlineCallbacks
    def test_tamp_on_the_wire(self):
        code, out = yield self.estctl("publish", "tamp", "status-query", "--client", "alice", "--to-hardware",
                                      HW_TYPE, "--serial", "SN-1")
        self.assertEqual(code, 0, out)
        resp = yield self.raw("GET", f"{EST}/tamp", who=self.alice)
        self.assertEqual(resp.status, 200, resp.body)
        self.assertEqual(resp.header("content-type"), "application/tamp-status-query")
        der = decode_body(resp.body)
        _sd, query = self.signed_content(der, p5934.id_ct_TAMP_statusQuery, p5934.TAMPStatusQuery())
        self.assertEqual(str(query["query"]["target"]["hwModules"][0]["hwType"]), HW_TYPE)
        message = tamp.read(der, require_signature=True)
        self.assertIn("TAMP manager", message.signer.subject.rfc4514_string())
        # An answer under the wrong tamp-* type is refused; under its own, taken.
        answer = tamp.unsigned("tamp_status_response", tamp.status_response(
            message.ref, [tamp.TrustAnchor.from_cert(self.server.ca_cert)]))
        resp = yield self.raw("POST", f"{EST}/tamp/return", {"Content-Type": "application/tamp-update-confirm"},
                              base64.b64encode(answer), who=self.alice)
        self.assertEqual(resp.status, 400)
        resp = yield self.raw("POST", f"{EST}/tamp/return", {"Content-Type": "application/tamp-status-response"},
                              base64.b64encode(answer), who=self.alice)
        self.assertEqual(resp.status, 204, resp.body)
        record = yield on_store_thread(self.server.store.tamp.client_anchors, "alice")
        self.assertEqual([a.key_id for a in record], [tamp.key_id_of_cert(self.server.ca_cert)])

    @defer.inlineCallbacks
    def test_firmware_on_the_wire_and_unsigned_reports(self):
        code, out = yield self.estctl("publish", "firmware", str(self.vendor_firmware()), "--client", "alice")
        self.assertEqual(code, 0, out)
        resp = yield self.raw("GET", f"{EST}/firmware", who=self.alice)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-type"),
                         "application/cms; encapsulatingContent=signedData; innerContent=firmwarePackage")
        package = firmware.check(decode_body(resp.body), [self.vendor_root[1]])
        self.assertEqual(package.image, IMAGE)
        # An unsigned load error naming firmware never offered: refused.
        other = firmware.unsigned(firmware.ERROR, firmware.load_error(
            HW_TYPE, b"SN-1", 34, firmware.PackageName(oid=FW_ID, version=99)))
        resp = yield self.raw("POST", f"{EST}/firmware/return", {"Content-Type": "application/cms"},
                              base64.b64encode(other), who=self.alice)
        self.assertEqual(resp.status, 400)
        # The unsigned load error for the real one: 204, recorded with its code.
        error = firmware.unsigned(firmware.ERROR, firmware.load_error(HW_TYPE, b"SN-1", 34, package.name))
        resp = yield self.raw("POST", f"{EST}/firmware/return", {"Content-Type": "application/cms"},
                              base64.b64encode(error), who=self.alice)
        self.assertEqual(resp.status, 204)
        mine = yield self.deliveries("alice")
        (_, d), = mine.values()
        self.assertEqual((d.state, d.error_code, d.return_der), ("error", 34, error))

    @defer.inlineCallbacks
    def test_authentication_and_bad_input(self):
        for path in ("symmetrickeys", "firmware", "tamp"):
            resp = yield self.raw("GET", f"{EST}/{path}")
            self.assertEqual(resp.status, 401, path)
            resp = yield self.raw("POST", f"{EST}/{path}/return", {"Content-Type": "application/cms"}, b"MAo=")
            self.assertEqual(resp.status, 401, path)
            resp = yield self.raw("GET", f"{EST}/{path}", who=self.alice)
            self.assertEqual(resp.status, 404, path)
            self.assertEqual(resp.header("content-type"), "text/plain; charset=utf-8")
        for path, body in (("symmetrickeys", b"not base64 at all!"), ("firmware", b"MAMCAQA="),
                           ("tamp", base64.b64encode(b"\x30\x03\x02\x01\x00"))):
            resp = yield self.raw("POST", f"{EST}/{path}/return", {"Content-Type": "application/cms"}, body,
                                  who=self.alice)
            self.assertEqual(resp.status, 400, (path, resp.body))
            self.assertEqual(len(resp.body.splitlines()), 1)
        resp = yield self.raw("POST", f"{EST}/firmware/return", {"Content-Type": "application/pkcs10"}, b"MAo=",
                              who=self.alice)
        self.assertEqual(resp.status, 415)
        audit = yield on_store_thread(self.server.store.audit.events, 20)
        self.assertTrue(any(e.operation == "firmware/return" and e.outcome.startswith("refused") for e in audit))


class PublishTests(PackagesCase):
    @defer.inlineCallbacks
    def test_firmware_import_refuses_a_bad_signature(self):
        stranger_root = certificate("CN=Stranger Root", ca=True)
        stranger = certificate("CN=Stranger Signing", issuer=stranger_root)
        code, out = yield self.estctl("publish", "firmware", str(self.vendor_firmware(7, stranger)), "--all")
        self.assertNotEqual(code, 0)
        self.assertIn("firmware refused: not signed by a trusted firmware signer", out)
        tampered = bytearray(self.vendor_firmware(8).read_bytes())
        tampered[tampered.find(IMAGE[:64]) + 10] ^= 1
        (self.tmp / "tampered.der").write_bytes(bytes(tampered))
        code, out = yield self.estctl("publish", "firmware", str(self.tmp / "tampered.der"), "--all")
        self.assertNotEqual(code, 0)
        self.assertIn("signature check failed", out)
        packages = yield on_store_thread(self.server.store.packages.packages)
        self.assertEqual(packages, [])

    @defer.inlineCallbacks
    def test_symmetric_key_needs_a_key_to_encrypt_for(self):
        yield self.server.add_client("carol", PASSWORD)
        code, out = yield self.estctl("publish", "symmetric-key", "--client", "carol")
        self.assertNotEqual(code, 0)
        self.assertIn("no key to receive a symmetric key", out)
        packages = yield on_store_thread(self.server.store.packages.packages)
        self.assertEqual(packages, [])
        labels = yield on_token_thread(self.server.appliance.token.key_labels, "symkey-")
        self.assertEqual(labels, [])

    @defer.inlineCallbacks
    def test_group_key_goes_to_each_member_encrypted_for_it(self):
        rsa_dave = yield self.enroll_rsa()
        code, out = yield self.estctl("group", "add", "fleet", "alice", "dave")
        self.assertEqual(code, 0, out)
        code, out = yield self.estctl("publish", "symmetric-key", "--group", "fleet", "--key-id", "shared", "--keep")
        self.assertEqual(code, 0, out)
        self.assertIn("encrypted for 2 client(s)", out)
        keys = []
        for who, name in ((self.alice, "alice"), (rsa_dave, "dave")):
            resp = yield self.raw("GET", f"{EST}/symmetrickeys", who=who)
            self.assertEqual(resp.status, 200)
            opened = symkeys.open_package(decode_body(resp.body), self.device(who, name)._recipient_key())
            keys.append(opened.keys[0].key)
        self.assertEqual(keys[0], keys[1])
        # --keep: the key stays in the token, sealed (not extractable).
        labels = yield on_token_thread(self.server.appliance.token.key_labels, "symkey-shared")
        self.assertEqual(labels, ["symkey-shared"])
        token = self.server.appliance.token
        self.addCleanup(on_token_thread, token.destroy_keypair, "symkey-shared")
        from estappliance.token import TokenRefused
        with self.assertRaises(TokenRefused):
            yield on_token_thread(token.export_secret_key, "symkey-shared")

    @defer.inlineCallbacks
    def test_form_follows_what_each_client_declared(self):
        # alice once asked /serverkeygen for an Encrypted Key Package (RFC 8295 8.1): she declared support.
        yield on_store_thread(self.server.store.keygen.key_package_started, pkg_id=b"\x01" * 16, client="alice",
                              label="default", key_label="skg-test", form="encrypted-key-package",
                              receipt_requested=False)
        code, out = yield self.estctl("publish", "symmetric-key", "--all", "--key-id", "auto-form")
        self.assertEqual(code, 0, out)
        self.assertIn("encrypted-key-package", out)
        for who, form in ((self.alice, "encrypted-key-package"), (self.bob, "enveloped")):
            resp = yield self.raw("GET", f"{EST}/symmetrickeys", who=who)
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.header("content-type"), symkeys.media_type(form))

    @defer.inlineCallbacks
    def enroll_rsa(self):
        yield self.server.add_client("dave", PASSWORD)
        who = yield self.enroll("dave", "rsa2048")
        return who

    @defer.inlineCallbacks
    def test_signers_are_token_keys_certified_by_the_ca(self):
        code, out = yield self.estctl("signer", "tamp")
        self.assertEqual(code, 0, out)
        cert = x509.load_pem_x509_certificate(self.server.appliance.config.distribution.tamp_cert_file.read_bytes())
        cert.verify_directly_issued_by(self.server.ca_cert)
        self.assertIn("TAMP manager", cert.subject.rfc4514_string())
        spki = yield on_token_thread(self.server.appliance.token.public_key_der,
                                     self.server.appliance.config.distribution.tamp_key_label)
        self.assertEqual(cert.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo), spki)

    @defer.inlineCallbacks
    def test_tamp_sequence_numbers_only_grow(self):
        seqs = []
        for _ in range(3):
            code, out = yield self.estctl("publish", "tamp", "sequence-adjust", "--all")
            self.assertEqual(code, 0, out)
        packages = yield on_store_thread(self.server.store.packages.packages)
        seqs = [p.details["seq_num"] for p in packages]
        self.assertEqual(seqs, sorted(set(seqs)))
        self.assertEqual(len(seqs), 3)


class CommandTests(PackagesCase):
    @defer.inlineCallbacks
    def test_est_sync_command(self):
        from estappliance.client.cli import main as est_main
        code, out = yield self.estctl("publish", "firmware", str(self.vendor_firmware()), "--client", "bob")
        self.assertEqual(code, 0, out)
        code, out = yield self.estctl("publish", "symmetric-key", "--client", "bob", "--key-id", "bob-key")
        self.assertEqual(code, 0, out)
        key, cert = self.bob
        (self.tmp / "bob.pem").write_bytes(pem(cert))
        (self.tmp / "bob.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
        (self.tmp / "ca.pem").write_bytes(pem(self.server.ca_cert))
        argv = ["sync", "--server", self.server.url, "--anchor", str(self.tmp / "ca.pem"),
                "--trust", str(self.tmp / "vendor.pem"), "--cert", str(self.tmp / "bob.pem"),
                "--key", str(self.tmp / "bob.key"), "--state", str(self.tmp / "bob-device"), "--hw-type", HW_TYPE,
                "--hw-serial", "SN-7"]

        def run():
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = est_main(argv)
            return code, out.getvalue(), err.getvalue()
        code, out, err = yield support.in_thread(run)
        self.assertEqual(code, 0, err)
        self.assertIn("sync: 2 package(s) handled, 2 answer(s) returned, 0 refused", out)
        self.assertIn("symmetric key bob-key stored", err)
        self.assertEqual((self.tmp / "bob-device" / "firmware" / f"{FW_ID}_version_3.bin").read_bytes(), IMAGE)
        bobs = yield self.deliveries("bob")
        self.assertEqual(sorted(d.state for _, d in bobs.values()), ["receipt", "receipt"])
        # A second run finds nothing new.
        code, out, err = yield support.in_thread(run)
        self.assertEqual(code, 0, err)
        self.assertIn("sync: 0 package(s) handled", out)

    @defer.inlineCallbacks
    def test_key_for_a_client_with_only_a_kek(self):
        # carol has a password and a KEK registered for her, no certificate.
        yield self.server.add_client("carol", PASSWORD)
        kek = bytes(range(32))
        (self.tmp / "carol.kek").write_text(kek.hex())
        code, out = yield self.estctl("serverkeygen", "kek", "add", "carol", "--id", "c0ffee01", "--import",
                                      str(self.tmp / "carol.kek"))
        self.assertEqual(code, 0, out)
        self.addCleanup(self.estctl, "serverkeygen", "kek", "remove", "c0ffee01")
        code, out = yield self.estctl("publish", "symmetric-key", "--client", "carol", "--key-id", "carol-key",
                                      "--algorithm", "aes192")
        self.assertEqual(code, 0, out)
        resp = yield self.raw("GET", f"{EST}/symmetrickeys", {"Authorization": BasicAuth("carol", PASSWORD).header()})
        self.assertEqual(resp.status, 200, resp.body)
        _sd, enveloped = self.signed_content(decode_body(resp.body), rfc5652.id_envelopedData,
                                             rfc5652.EnvelopedData())
        self.assertEqual(enveloped["recipientInfos"][0].getName(), "kekri")
        device = Device(self.tmp / "carol-device", [self.server.ca_cert], kek=kek, kek_id=bytes.fromhex("c0ffee01"))
        with EstClient(self.server.url, anchors=[self.server.ca_cert], auth=BasicAuth("carol", PASSWORD)) as c:
            report = yield support.in_thread(sync, c, device)
        self.assertEqual(len((self.tmp / "carol-device" / "keys" / "carol-key.key").read_bytes()), 24)
        # RFC 7191 receipts are signed; carol has no key to sign with, so none was sent.
        self.assertEqual(report.returned, [])
        self.assertIn("no receipt", report.outcomes[0].summary)
        carols = yield self.deliveries("carol")
        self.assertEqual([d.state for _, d in carols.values()], ["downloaded"])
