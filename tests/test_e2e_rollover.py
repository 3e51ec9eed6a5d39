"""End to end, over TLS with a real SoftHSM2 token: the CA's whole life.

One server lives through a root key update (RFC 4210 4.4, RFC 7030 4.1.3):
an interrupted ceremony (a step failing half way, resumed; an abort; the
process killed between the switch's commit and its last steps), devices
enrolled before, during and after the overlap, a device that only knows the
old root walking to the new one with ``est cacerts``, CRLs of both keys
checked by ``openssl verify -crl_check``, every certificate and link decoded
by pyasn1-alt-modules, and the old key's retirement.
"""
from __future__ import annotations

import datetime
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyasn1_alt_modules import rfc5280
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from estappliance.ca import ceremony, setup
from estappliance.ca.setup import SetupError
from estappliance.client import BasicAuth, EstClient, new_key
from estappliance.client.cli import main as est_main
from estappliance.client import HttpsConnection
from estappliance.client import keygen_commands as skg
from estappliance.client.distribution_commands import get_crls, get_pal
from estappliance.pki import certs, keygen_request
from estappliance.service import build, site, tls_factory
from estappliance.store import Store
from estappliance.pki.rollover import authority_key_identifier, key_identifier
from estappliance.store import on_store_thread
from estappliance.token import on_token_thread

from . import support
from .test_e2e_distribution import captured

PASSWORD = "correct horse"
PEM = serialization.Encoding.PEM


def pem(*certs) -> bytes:
    return b"".join(c.public_bytes(PEM) for c in certs)


def support_der_octets(data: bytes) -> bytes:
    """DER OCTET STRING: the eContent of id-data."""
    return bytes([0x04, len(data)]) + data


def aki(cert: x509.Certificate) -> bytes:
    return authority_key_identifier(cert)


class CaLifeHelpers(support.ExactDecoding):
    """What both stories do: enroll, re-enroll, fetch, run estctl, wait for the server."""

    timeout = 240

    def client(self, anchors, **kw) -> EstClient:
        kw.setdefault("auth", BasicAuth("alice", PASSWORD))
        return EstClient(self.server.url, anchors=anchors, **kw)

    def enroll(self, name: str, anchors, **kw):
        def go():
            key = new_key("ec-p256")
            with self.client(anchors, **kw) as c:
                return key, c.enroll(key, f"CN={name}", link=False)
        return support.in_thread(go)

    def reenroll(self, key, cert, anchors):
        def go():
            with self.client(anchors, auth=None, client_cert=[cert], client_key=key) as c:
                return c.enroll(key, cert.subject.rfc4514_string(), link=False, reenroll=True)
        return support.in_thread(go)

    def cacerts(self, anchors):
        def go():
            with self.client(anchors, auth=None) as c:
                return c.cacerts()
        return support.in_thread(go)

    @defer.inlineCallbacks
    def estctl(self, *argv):
        """estctl, then one look of the server's watch (as its timer would, a moment later)."""
        try:
            result = yield self.server.estctl(*argv)
        except SetupError as e:  # what estctl's main prints, exit status 2
            result = (2, f"estctl: {e}")
        finally:
            yield self.watch.check()
        return result

    def generations(self):
        return on_store_thread(self.server.store.generations.generations)

    def start_watch(self) -> None:
        """The running server follows the store like ApplianceService does,
        only faster; and a temporary directory for the story's files."""
        self.watch = self.server.appliance.ca_watch()
        self.watch.step = 0.2
        self.watch.startService()
        self.addCleanup(self.watch.stopService)
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir(exist_ok=True)

    @defer.inlineCallbacks
    def wait_for_key(self, label: str):
        """Until the running server signs with ``label`` (the watch's interval, not a restart)."""
        deadline = time.monotonic() + 15
        while self.server.appliance.ca.signer.key_label != label:
            self.assertLess(time.monotonic(), deadline, f"the server never switched to {label}")
            yield task.deferLater(reactor, 0.1, lambda: None)

    def decode_all(self, certs):
        for c in certs:
            self.decode(c.public_bytes(serialization.Encoding.DER), rfc5280.Certificate())

    @defer.inlineCallbacks
    def openssl_verify(self, cert, roots, crls):
        (self.tmp / "leaf.pem").write_bytes(pem(cert))
        (self.tmp / "roots.pem").write_bytes(pem(*roots))
        (self.tmp / "crls.pem").write_bytes(b"".join(c.public_bytes(PEM) for c in crls))
        out = yield support.run_tool("openssl", "verify", "-crl_check", "-CAfile", str(self.tmp / "roots.pem"),
                                     "-CRLfile", str(self.tmp / "crls.pem"), str(self.tmp / "leaf.pem"))
        return out.returncode, (out.stdout + out.stderr).decode()

    def _server_chain(self, anchors):
        conn = HttpsConnection("127.0.0.1", self.server.port, anchors=anchors)
        try:
            conn.connect()
            chain = conn._conn.get_peer_cert_chain()
            return [c.to_cryptography() for c in chain]
        finally:
            conn.close()


class RolloverTests(CaLifeHelpers, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(self, labels={"default": {"auth": ["basic", "cert"]}})
        yield self.server.add_client("alice", PASSWORD)
        self.start_watch()
        self.old_root = self.server.ca_cert
        self.old_label = self.server.appliance.config.ca.key_label

    @defer.inlineCallbacks
    def test_root_key_update_from_start_to_retirement(self):
        store = self.server.store
        old = self.old_root
        key_a, dev_a = yield self.enroll("device-before", [old])
        self.assertEqual(aki(dev_a), key_identifier(old))
        # alice fetched /cacerts: her PAL's 0002 is dated
        def fetch_and_pal():
            with self.client([old]) as c:
                c.request("GET", "cacerts", authenticate=True)
                return get_pal(c)
        pal = yield support.in_thread(fetch_and_pal)
        self.assertIsNotNone(next(e for e in pal if e.type == "0002").date)

        # 0. Nothing under way: each step says why it cannot run, and changes nothing.
        for argv, reason in [(("ca", "switch"), "no rollover or renewal is ready to switch"),
                             (("ca", "retire"), "no generation is retiring"),
                             (("ca", "rollover", "--abort"), "no rollover or renewal is under way"),
                             (("ca", "renew", "--csr-out", str(self.tmp / "x.csr")), "this CA is a root")]:
            code, out = yield self.estctl(*argv)
            self.assertEqual(code, 2, argv)
            self.assertIn(reason, out)
        self.assertEqual([g.state for g in (yield self.generations())], ["current"])

        # 1. A rollover step fails half way (the new key and NewWithNew made, no links): the CA serves on.
        real_link = ceremony.link

        def broken(**kw):
            raise RuntimeError("token removed during the ceremony")
        ceremony.link = broken
        try:
            yield self.assertFailure(self.estctl("ca", "rollover"), RuntimeError)
        finally:
            ceremony.link = real_link
        gens = yield self.generations()
        self.assertEqual([g.state for g in gens], ["current", "next"])
        self.assertIsNotNone(gens[1].cert)
        self.assertIsNone(gens[1].new_with_old)
        served = yield self.cacerts([old])
        self.assertEqual(served, [old], "a half-made generation is not published")
        _, dev_x = yield self.enroll("device-while-broken", [old])
        self.assertEqual(aki(dev_x), key_identifier(old))

        # ... and is undone: the key leaves the token, the old key signs as before.
        code, out = yield self.estctl("ca", "rollover", "--abort")
        self.assertEqual(code, 0, out)
        aborted = (yield self.generations())[1]
        self.assertEqual(aborted.state, "aborted")
        has = yield on_token_thread(self.server.appliance.token.has_key, aborted.key_label)
        self.assertFalse(has)

        # 2. Again, to another key type, interrupted once more and resumed by running it again.
        ceremony.link = broken
        try:
            yield self.assertFailure(self.estctl("ca", "rollover", "--key-type", "ec-p384"), RuntimeError)
        finally:
            ceremony.link = real_link
        code, out = yield self.estctl("ca", "rollover")
        self.assertEqual(code, 0, out)
        gens = yield self.generations()
        nxt = gens[-1]
        self.assertEqual((nxt.state, nxt.key_type), ("next", "ec-p384"))
        attrs = yield on_token_thread(self.server.appliance.token.private_key_attributes, nxt.key_label)
        self.assertEqual(attrs, {"sensitive": True, "extractable": False, "always_sensitive": True,
                                 "never_extractable": True})
        new = x509.load_der_x509_certificate(nxt.cert)
        new_with_old = x509.load_der_x509_certificate(nxt.new_with_old)
        old_with_new = x509.load_der_x509_certificate(nxt.old_with_new)
        # RFC 4210 4.4: who signs what, and the validity of each link
        new_with_old.verify_directly_issued_by(old)
        old_with_new.verify_directly_issued_by(new)
        new.verify_directly_issued_by(new)
        self.assertEqual(new_with_old.public_key(), new.public_key())
        self.assertEqual(old_with_new.public_key(), old.public_key())
        self.assertEqual(new_with_old.not_valid_before_utc, new.not_valid_before_utc)
        self.assertEqual(new_with_old.not_valid_after_utc, old.not_valid_after_utc)
        self.assertEqual((old_with_new.not_valid_before_utc, old_with_new.not_valid_after_utc),
                         (old.not_valid_before_utc, old.not_valid_after_utc))
        self.decode_all([new, new_with_old, old_with_new])
        code, shown = yield self.estctl("ca", "show")
        self.assertIn("generation 1: current", shown)
        self.assertIn(f"generation {nxt.id}: next, key {nxt.key_label!r} (ec-p384)", shown)
        self.assertIn("links: NewWithOld and OldWithNew", shown)
        audit = yield on_store_thread(store.audit.events, 50)
        ceremony_steps = [e.detail for e in audit if e.operation == "ca"]
        self.assertTrue(any("NewWithNew issued" in d for d in ceremony_steps), ceremony_steps)
        self.assertTrue(any("links issued" in d for d in ceremony_steps), ceremony_steps)
        self.assertTrue(any("aborted" in d for d in ceremony_steps), ceremony_steps)

        # 3. The overlap: /cacerts holds the current root first, the new one and the links; the old key signs.
        served = yield self.cacerts([old])
        # (certs-only is a DER SET OF: the wire order is DER's, not ours)
        self.assertEqual(set(served), {old, new, new_with_old, old_with_new})
        self.assertEqual(len(served), 4)
        # a client that already trusts only the new root reaches the (old-key) server through OldWithNew
        served_tls = yield support.in_thread(self._server_chain, [new])
        self.assertEqual((aki(served_tls[0]), served_tls[1:]), (key_identifier(old), [old_with_new]))
        served = yield self.cacerts([new])
        self.assertEqual(len(served), 4)
        key_b, dev_b = yield self.enroll("device-during", [old])
        self.assertEqual(aki(dev_b), key_identifier(old))

        # 4. The switch, killed right after its commit (before the TLS and signer certificates are
        # re-issued) while this node's server is stopped: running the command again finishes it.
        # (A running server finishes it by itself: test_e2e_nodes, a switch made on the other node.)
        yield self.watch.stopService()
        yield on_store_thread(store.generations.switch_generation, nxt.id, detail="switch (the process was killed after this)")
        code, out = yield self.estctl("ca", "switch")
        self.assertEqual(code, 0, out)
        self.watch.startService()
        yield self.wait_for_key(nxt.key_label)
        key_c, dev_c = yield self.enroll("device-after", [old])
        self.assertEqual(aki(dev_c), key_identifier(new))
        deadline = time.monotonic() + 15
        while True:  # the watch re-reads the TLS certificate file too
            served_tls = yield support.in_thread(self._server_chain, [new])
            if served_tls and aki(served_tls[0]) == key_identifier(new):
                break
            self.assertLess(time.monotonic(), deadline, "the TLS certificate was never reloaded")
            yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(served_tls[1:], [new_with_old])
        code, out = yield self.estctl("ca", "rollover")  # one key update at a time
        self.assertEqual(code, 2)
        self.assertIn("generation 1 is still retiring", out)

        # /cacerts: the new root first, with the links and the old root while the old key retires
        served = yield self.cacerts([old])  # a device that knows only the old root still connects
        self.assertEqual(set(served), {new, old, new_with_old, old_with_new})
        self.assertEqual(self.server.appliance.ca.ca_certificates()[0], new)
        self.decode_all(served)
        pal = yield support.in_thread(lambda: get_pal(self.client([new])))
        self.assertIsNone(next(e for e in pal if e.type == "0002").date, "0002 is dated anew after the switch")

        # CMS content: the content signer's certificate was re-issued under the new key; openssl
        # verifies a SignedData from the running server against the new root alone.
        signer = self.server.appliance.content_signer
        self.assertEqual(aki(signer.certificate), key_identifier(new))
        signed = yield signer.sign("data", support_der_octets(b"after the switch"))
        (self.tmp / "signed.der").write_bytes(signed)
        (self.tmp / "new.pem").write_bytes(pem(new))
        out = yield support.run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", str(self.tmp / "signed.der"),
                                     "-CAfile", str(self.tmp / "new.pem"), "-purpose", "any")
        self.assertEqual(out.returncode, 0, out.stderr.decode())

        # 5. A device that only knows the old root walks to the new one.
        anchor_file = self.tmp / "anchor.pem"
        anchor_file.write_bytes(pem(old))
        code, _, err = yield support.in_thread(captured, est_main, [
            "cacerts", "--server", self.server.url, "--anchor", str(anchor_file), "-o", str(self.tmp / "ca.pem")])
        self.assertEqual(code, 0, err)
        self.assertIn("CA key update: new root", err)
        self.assertIn("updated (2 anchor(s))", err)
        self.assertEqual(set(x509.load_pem_x509_certificates(anchor_file.read_bytes())), {new, old})

        # 6. Re-enrollment with an old-key certificate yields a new-key certificate.
        renewed_a = yield self.reenroll(key_a, dev_a, [new])
        self.assertEqual(aki(renewed_a), key_identifier(new))
        renewed_a.verify_directly_issued_by(new)

        # 7. Revocation of an old-key certificate lands on the old key's CRL; /crls serves both keys'.
        code, out = yield self.estctl("cert", "revoke", format(dev_b.serial_number, "x"), "--reason",
                                      "keyCompromise")
        self.assertEqual(code, 0, out)
        crls = yield support.in_thread(lambda: get_crls(self.client([new], auth=None), [new, old]))
        by_key = {}
        for crl in crls:
            self.assertEqual(crl.issuer, new.subject)
            ext = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
            only_ca = any(isinstance(e.value, x509.IssuingDistributionPoint) for e in crl.extensions)
            by_key[(ext.key_identifier, only_ca)] = crl
        old_crl = by_key[(key_identifier(old), False)]
        new_crl = by_key[(key_identifier(new), False)]
        self.assertIn((key_identifier(old), True), by_key)  # both keys' ARLs too
        self.assertIn((key_identifier(new), True), by_key)
        self.assertTrue(old_crl.is_signature_valid(old.public_key()))
        self.assertTrue(new_crl.is_signature_valid(new.public_key()))
        self.assertIsNotNone(old_crl.get_revoked_certificate_by_serial_number(dev_b.serial_number))
        self.assertIsNone(new_crl.get_revoked_certificate_by_serial_number(dev_b.serial_number))
        for crl in crls:
            self.decode(crl.public_bytes(serialization.Encoding.DER), rfc5280.CertificateList())
        # openssl: each key's CRL for its own certificates, both roots and both CRLs offered at once
        code, text = yield self.openssl_verify(dev_b, [old, new], [old_crl, new_crl])
        self.assertNotEqual(code, 0, text)
        self.assertIn("certificate revoked", text)
        code, text = yield self.openssl_verify(dev_a, [old, new], [old_crl, new_crl])
        self.assertEqual(code, 0, text)
        code, text = yield self.openssl_verify(dev_c, [old, new], [old_crl, new_crl])
        self.assertEqual(code, 0, text)
        code, text = yield self.openssl_verify(renewed_a, [new], [new_crl])
        self.assertEqual(code, 0, text)

        # 8. Retirement is refused while the old key's certificates are valid, with the reason.
        code, out = yield self.estctl("ca", "retire")
        self.assertNotEqual(code, 0)
        self.assertIn("still answers for", out)
        has = yield on_token_thread(self.server.appliance.token.has_key, self.old_label)
        self.assertTrue(has)
        for cert in (dev_a, dev_x):
            code, out = yield self.estctl("cert", "revoke", format(cert.serial_number, "x"), "--reason",
                                          "superseded")
            self.assertEqual(code, 0, out)
        code, out = yield self.estctl("ca", "retire")
        self.assertEqual(code, 0, out)
        has = yield on_token_thread(self.server.appliance.token.has_key, self.old_label)
        self.assertFalse(has, "the retired key is destroyed in the token")
        gens = yield self.generations()
        self.assertEqual(gens[0].state, "retired")
        deadline = time.monotonic() + 15
        while True:
            served = yield self.cacerts([new])
            if served == [new]:
                break
            self.assertLess(time.monotonic(), deadline, "the links stayed in /cacerts")
            yield task.deferLater(reactor, 0.2, lambda: None)
        # the old key's last CRL still lists what it revoked, in force until those certificates expire
        crls = yield support.in_thread(lambda: get_crls(self.client([new], auth=None), [new, old]))
        last_old = [c for c in crls if c.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier).value.key_identifier == key_identifier(old)
            and not any(isinstance(e.value, x509.IssuingDistributionPoint) for e in c.extensions)][0]
        self.assertIsNotNone(last_old.get_revoked_certificate_by_serial_number(dev_b.serial_number))
        self.assertGreaterEqual(last_old.next_update_utc, dev_b.not_valid_after_utc - datetime.timedelta(seconds=1))
        # the device's next /cacerts drops the retired root from its anchors
        code, _, err = yield support.in_thread(captured, est_main, [
            "cacerts", "--server", self.server.url, "--anchor", str(anchor_file), "-o", str(self.tmp / "ca.pem")])
        self.assertEqual(code, 0, err)
        self.assertIn("is retired; removed from the anchors", err)
        self.assertEqual(x509.load_pem_x509_certificates(anchor_file.read_bytes()), [new])
        key_d, dev_d = yield self.enroll("device-last", [new])
        dev_d.verify_directly_issued_by(new)


def parent_ca():
    """A parent root CA with a software key (the one that certifies our subordinate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Parent Root")])
    cert = certs.root_ca(name, key.public_key(), x509.random_serial_number(), now, 3650).sign(key, hashes.SHA256())
    return key, cert


def parent_signs(parent_key, parent_cert, csr_pem: bytes) -> x509.Certificate:
    csr = x509.load_pem_x509_csr(csr_pem)
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(parent_cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1800))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(certs.key_usage(("digitalSignature", "keyCertSign", "cRLSign")), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(parent_cert.public_key()),
                           critical=False)
            .sign(parent_key, hashes.SHA256()))


class SubordinateRenewalTests(CaLifeHelpers, unittest.TestCase):
    """A subordinate CA renews its certificate with its parent: a new key
    (``estctl ca renew --csr-out``), the parent's answer imported (and
    switched to), then the same key again (``--same-key``)."""

    @defer.inlineCallbacks
    def setUp(self):
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir()
        self.parent_key, self.parent = parent_ca()
        cfg = support.config(self.tmp / "state")
        csr_path = self.tmp / "sub.csr"
        (self.tmp / "parent.pem").write_bytes(pem(self.parent))

        def make():
            token = support.token()
            setup.init_subordinate(cfg, token, csr_path)
            (self.tmp / "sub.pem").write_bytes(pem(parent_signs(self.parent_key, self.parent, csr_path.read_bytes())))
            store = Store(cfg.store)
            try:
                return setup.import_subordinate(cfg, token, store, self.tmp / "sub.pem", self.tmp / "parent.pem")
            finally:
                store.close()
        sub = yield on_token_thread(make)
        appliance = build(cfg)
        listener = reactor.listenSSL(0, site(appliance), tls_factory(appliance), interface="127.0.0.1")
        self.server = support.RunningServer(appliance, listener.getHost().port, listener, self.parent)
        self.addCleanup(self.server.stop)
        yield self.server.add_client("alice", PASSWORD)
        self.watch = appliance.ca_watch()
        self.watch.step = 0.2
        self.watch.startService()
        self.addCleanup(self.watch.stopService)
        self.sub = sub
        self.old_label = cfg.ca.key_label

    @defer.inlineCallbacks
    def test_renewal_with_a_new_key_then_with_the_same_key(self):
        parent, old_sub = self.parent, self.sub
        code, out = yield self.estctl("ca", "rollover")
        self.assertEqual(code, 2)
        self.assertIn("estctl ca renew", out)
        key_a, dev_a = yield self.enroll("device-1", [parent])
        dev_a.verify_directly_issued_by(old_sub)

        csr_path = self.tmp / "renew.csr"
        code, out = yield self.estctl("ca", "renew", "--csr-out", str(csr_path))
        self.assertEqual(code, 0, out)
        gens = yield self.generations()
        self.assertEqual([g.state for g in gens], ["current", "next"])
        _, dev_b = yield self.enroll("device-while-renewing", [parent])
        dev_b.verify_directly_issued_by(old_sub)  # nothing changes before the answer is imported
        new_sub = parent_signs(self.parent_key, parent, csr_path.read_bytes())
        self.assertNotEqual(new_sub.public_key(), old_sub.public_key())
        (self.tmp / "new-sub.pem").write_bytes(pem(new_sub))
        code, out = yield self.estctl("ca", "import", str(self.tmp / "new-sub.pem"), "--chain",
                                      str(self.tmp / "parent.pem"))
        self.assertEqual(code, 0, out)
        yield self.wait_for_key(gens[1].key_label)
        _, dev_c = yield self.enroll("device-after", [parent])
        dev_c.verify_directly_issued_by(new_sub)
        # /cacerts: the new CA certificate with its chain, and the old one while it retires (RFC 7030 4.1.3)
        served = yield self.cacerts([parent])
        self.assertEqual(set(served), {new_sub, parent, old_sub})
        self.decode_all(served)
        renewed = yield self.reenroll(key_a, dev_a, [parent])
        renewed.verify_directly_issued_by(new_sub)

        code, out = yield self.estctl("ca", "retire")
        self.assertEqual(code, 2)
        self.assertIn("still answers for 2 valid certificate(s)", out)
        for cert in (dev_a, dev_b):
            yield self.estctl("cert", "revoke", format(cert.serial_number, "x"))
        code, out = yield self.estctl("ca", "retire")
        self.assertEqual(code, 0, out)
        has = yield on_token_thread(self.server.appliance.token.has_key, self.old_label)
        self.assertFalse(has)
        served = yield self.cacerts([parent])
        self.assertEqual(set(served), {new_sub, parent})

        # the same key again: the old certificate retires at once, the key stays
        code, out = yield self.estctl("ca", "renew", "--csr-out", str(csr_path), "--same-key")
        self.assertEqual(code, 0, out)
        again = parent_signs(self.parent_key, parent, csr_path.read_bytes())
        self.assertEqual(again.public_key(), new_sub.public_key())
        (self.tmp / "again.pem").write_bytes(pem(again))
        code, out = yield self.estctl("ca", "import", str(self.tmp / "again.pem"), "--chain",
                                      str(self.tmp / "parent.pem"))
        self.assertEqual(code, 0, out)
        gens = yield self.generations()
        self.assertEqual([g.state for g in gens], ["retired", "retired", "current"])
        self.assertEqual(gens[1].key_label, gens[2].key_label)
        served = yield self.cacerts([parent])
        self.assertEqual(set(served), {again, parent})
        _, dev_d = yield self.enroll("device-same-key", [parent])
        dev_d.verify_directly_issued_by(again)
        renewed.verify_directly_issued_by(again)  # same name, same key: earlier certificates chain to it too


class ServerKeysAcrossASwitchTests(CaLifeHelpers, unittest.TestCase):
    """What the token keeps for server-side key generation is named after the
    appliance, not after the CA key of the day: a PKCS#12 password the
    operator set before a root key update still opens after the switch and a
    restart of the server."""

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(self, labels={
            "default": {"auth": ["basic", "cert"]},
            "p12": {"auth": ["cert"], "serverkeygen_default": "pkcs12", "pkcs12_iterations": 10_000}})
        yield self.server.add_client("alice", PASSWORD, labels=("*",))
        self.start_watch()

    @defer.inlineCallbacks
    def restart(self):
        """A new server process on the same state: stop listening, build again."""
        yield self.watch.stopService()
        yield self.server.listener.stopListening()
        appliance = build(self.server.appliance.config)
        listener = reactor.listenSSL(0, site(appliance), tls_factory(appliance), interface="127.0.0.1")
        self.server = support.RunningServer(appliance, listener.getHost().port, listener, self.server.ca_cert)
        self.addCleanup(self.server.stop)

    def p12_key(self, device_key, device_cert, anchors, secret: bytes):
        def go():
            csr = keygen_request.build_csr(x509.Name.from_rfc4514_string("CN=device-enc"), new_key())
            with EstClient(self.server.url, anchors=anchors, label="p12", client_cert=[device_cert],
                           client_key=device_key) as c:
                answer = skg.request_key(c, csr)
                return answer, skg.open_answer(answer, anchors=anchors, pkcs12_password=secret)
        return support.in_thread(go)

    @defer.inlineCallbacks
    def test_a_pkcs12_password_set_before_a_key_update_opens_after_it(self):
        old = self.server.ca_cert
        device_key, device_cert = yield self.enroll("device-1", [old])
        secret = b"operator-agreed-1"
        (self.tmp / "pw").write_bytes(secret + b"\n")
        code, out = yield self.estctl("serverkeygen", "pkcs12-password", "alice", "--password-file",
                                      str(self.tmp / "pw"))
        self.assertEqual(code, 0, out)
        answer, delivered = yield self.p12_key(device_key, device_cert, [old], secret)
        self.assertEqual(answer.form, "pkcs12")

        for step in (("ca", "rollover"), ("ca", "switch")):
            code, out = yield self.estctl(*step)
            self.assertEqual(code, 0, out)
        new_label = (yield self.generations())[-1].key_label
        self.assertNotEqual(new_label, self.server.appliance.config.ca.key_label)
        yield self.wait_for_key(new_label)
        yield self.restart()
        self.assertEqual(self.server.appliance.ca.signer.key_label, new_label)

        answer, delivered = yield self.p12_key(device_key, device_cert, [old], secret)
        self.assertEqual(answer.form, "pkcs12")
        self.assertEqual(aki(delivered.certificate), key_identifier(x509.load_der_x509_certificate(
            (yield self.generations())[-1].cert)))
        self.assertEqual(delivered.key.public_key().public_bytes(serialization.Encoding.DER,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo),
                         delivered.certificate.public_key().public_bytes(
                             serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        # and estctl, which names keys as the server does, finds none of the server's keys abandoned
        code, out = yield self.estctl("serverkeygen", "sweep")
        self.assertEqual((code, out.strip()), (0, "0 abandoned key(s) destroyed"))


class WorkersFollowASwitchTests(unittest.TestCase):
    """The real ``twistd est`` with two worker processes: ``estctl ca
    rollover`` and ``switch`` from another process reach both workers within
    the watch interval, no restart, and a connection open across the switch
    keeps working."""

    timeout = 180

    def setUp(self):
        from .test_e2e_interop import EstServer, require_tools
        require_tools()
        self.server = EstServer(Path(self.mktemp()), workers=2)
        self.addCleanup(self.server.shutdown)
        return support.in_thread(self._start)

    def _start(self):
        from .test_workers import children, wait_for
        self.server.prepare()
        self.server.start()
        assert wait_for(lambda: len(children(self.server.proc.pid)) == 2), self.server.log()
        assert wait_for(lambda: self.server.log().count(" ready") >= 2), self.server.log()
        self.workers = sorted(children(self.server.proc.pid))

    def test_both_workers_sign_with_the_new_key_without_a_restart(self):
        return support.in_thread(self._story)

    def _story(self):
        from .test_e2e_interop import USER
        from .test_workers import children, wait_for
        s = self.server
        old = x509.load_pem_x509_certificate(s.ca_pem.read_bytes())
        auth = BasicAuth(USER, s.password)
        with EstClient(s.url, anchors=[old], auth=auth) as kept:
            kept.cacerts()  # a keep-alive connection, open across the switch
            s.estctl("ca", "rollover")
            s.estctl("ca", "switch")
            new = x509.load_pem_x509_certificate(s.ca_pem.read_bytes())
            self.assertNotEqual(key_identifier(new), key_identifier(old))

            def tls_key_ids():
                ids = set()
                for _ in range(6):  # new connections, shared by the master between both workers
                    conn = HttpsConnection("127.0.0.1", s.port, anchors=[old])
                    try:
                        conn.connect()
                        ids.add(aki(conn._conn.get_peer_certificate(as_cryptography=True)))
                    finally:
                        conn.close()
                return ids
            self.assertTrue(wait_for(lambda: tls_key_ids() == {key_identifier(new)}, timeout=20, step=0.5),
                            s.log())
            for i in range(8):
                with EstClient(s.url, anchors=[old], auth=auth) as c:
                    cert = c.enroll(new_key(), f"CN=after-{i}", link=False)
                self.assertEqual(aki(cert), key_identifier(new))
            served = kept.cacerts()  # the same connection, opened before the switch
            self.assertIn(new, served)
            self.assertEqual(aki(kept.conn._conn.get_peer_certificate(as_cryptography=True)), key_identifier(old))
        self.assertEqual(sorted(children(s.proc.pid)), self.workers, "no worker was restarted")
