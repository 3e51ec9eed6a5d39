"""End to end through TLS on 127.0.0.1 with a real SoftHSM2 token: RFC 8295
/pal (XML and JSON, schema-valid, paged, only the client's own entries),
/crls (crls-only, signed in the token, checked with pyasn1-alt-modules and
openssl, re-issued on revocation and by the schedule), /eecerts (published
with estctl, per client, group and label), enrollment results announced in
the PAL and fetched with GET (RFC 8295 9), and the est/estctl commands."""
from __future__ import annotations

import base64
import contextlib
import datetime
import io
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyasn1.codec.der import decoder, encoder
from pyasn1_alt_modules import rfc5280, rfc5652
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from estappliance.admin.cli import main as estctl_main
from estappliance.ca.crl import CrlSchedule
from estappliance.client import BasicAuth, EstClient, EstClientError, make_csr, new_key
from estappliance.client.cli import main as est_main
from estappliance.client.distribution_commands import get_crls, get_eecerts, get_enrollment_result, get_pal
from estappliance.pki import pal_format
from estappliance.pki.cms import read_certs_only
from estappliance.pki.crlsonly import read_crls_only
from estappliance.pki.encoding import decode_body
from estappliance.store import Store, on_store_thread

from . import support
from .test_admin import write_toml
from .test_e2e_interop import BIN, InteropBase, shared_server
from .test_e2e_interop import USER as INTEROP_USER

PASSWORD = "correct horse"
EST = "/.well-known/est"
STANDING = ["0002", "0004", "0005"]


def captured(main, argv):
    """A command's main() in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (print(e.code, file=sys.stderr) or 1)
    return code, out.getvalue(), err.getvalue()


class DistributionCase(unittest.TestCase):
    timeout = 90
    sections: dict = {}

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(self, labels={
            "default": {"auth": ["basic", "cert"]},
            "iot": {"auth": ["basic"]},
            "manual": {"approval": "manual", "auth": ["basic"]},
        }, **self.sections)
        yield self.server.add_client("alice", PASSWORD, labels=("default", "manual", "iot"))
        yield self.server.add_client("bob", PASSWORD, labels=("default",))
        yield self.server.add_client("carol", PASSWORD, labels=("iot",))

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server.port}{EST}"

    def raw(self, method, path, headers=None, body=b"", **kw):
        return self.server.raw(method, path, headers, body, **kw)

    def basic(self, user="alice", password=PASSWORD):
        return {"Authorization": BasicAuth(user, password).header()}

    def client(self, user="alice", **kw) -> EstClient:
        if user is not None:
            kw.setdefault("auth", BasicAuth(user, PASSWORD))
        c = self.server.client(**kw)
        self.addCleanup(c.close)
        return c

    @defer.inlineCallbacks
    def pal(self, user="alice", label=None, accept=None):
        headers = self.basic(user)
        if accept:
            headers["Accept"] = accept
        path = f"{EST}/{label}/pal" if label else f"{EST}/pal"
        resp = yield self.raw("GET", path, headers)
        self.assertEqual(resp.status, 200, resp.body)
        if accept == "application/json":
            self.assertEqual(resp.header("content-type"), "application/json")
            return pal_format.parse_json(resp.body)
        self.assertEqual(resp.header("content-type"), "application/xml")
        pal_format.validate_xml(resp.body)
        return pal_format.parse_xml(resp.body)

    def estctl(self, *argv):
        conf = self.server.appliance.config.path.parent / "estctl.toml"
        if not conf.exists():
            write_toml(self.server.appliance.config, conf)
        return support.in_thread(captured, estctl_main, ["-c", str(conf), *argv])

    def est(self, *argv, user="alice"):
        anchor = Path(self.mktemp())
        anchor.write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        password = Path(self.mktemp())
        password.write_text(PASSWORD)
        return support.in_thread(captured, est_main, [argv[0], "--server", self.server.url, "--anchor", str(anchor),
                                                      "--user", user, "--password-file", str(password), *argv[1:]])

    @defer.inlineCallbacks
    def enroll(self, subject, user="alice"):
        key = new_key("ec-p256")
        cert = yield support.in_thread(self.client(user).simpleenroll, make_csr(key, subject))
        return key, cert


class PalTests(DistributionCase):
    @defer.inlineCallbacks
    def test_authentication_required_and_label_checked(self):
        resp = yield self.raw("GET", f"{EST}/pal")
        self.assertEqual(resp.status, 401)
        self.assertIn("Basic", resp.header_values("www-authenticate")[0])
        self.assertEqual((resp.body, resp.header("content-length")), (b"", "0"))
        resp = yield self.raw("GET", f"{EST}/pal", self.basic(password="wrong"))
        self.assertEqual(resp.status, 401)
        resp = yield self.raw("GET", f"{EST}/pal", self.basic("carol"))
        self.assertEqual(resp.status, 403)
        resp = yield self.raw("GET", f"{EST}/nolabel/pal", self.basic())
        self.assertEqual(resp.status, 404)
        resp = yield self.raw("POST", f"{EST}/pal", self.basic())
        self.assertEqual((resp.status, resp.header("allow")), (405, "GET"))
        events = yield on_store_thread(self.server.store.audit.events, 10)
        refused = [(e.operation, e.outcome, e.client) for e in events if e.operation == "pal"]
        self.assertIn(("pal", "refused: NotAuthorized", "carol"), refused)

    @defer.inlineCallbacks
    def test_xml_and_json_forms(self):
        resp = yield self.raw("GET", f"{EST}/pal", self.basic())
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-type"), "application/xml")
        self.assertIsNone(resp.header("content-transfer-encoding"))  # XML, not DER: sent as is
        self.assertTrue(resp.body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>"))
        pal_format.validate_xml(resp.body)
        xml_entries = pal_format.parse_xml(resp.body)
        self.assertEqual([(e.type, e.uri, e.date) for e in xml_entries], [
            ("0002", f"{self.base}/cacerts", None), ("0004", f"{self.base}/crls", None),
            ("0005", f"{self.base}/crls", None)])
        json_entries = yield self.pal(accept="application/json")
        self.assertEqual(json_entries, xml_entries)
        # sizes are those of what the URIs serve
        cacerts = yield self.raw("GET", f"{EST}/cacerts")
        crls = yield self.raw("GET", f"{EST}/crls")
        self.assertEqual(xml_entries[0].size, len(decode_body(cacerts.body)))
        self.assertEqual(xml_entries[1].size, len(decode_body(crls.body)))

    @defer.inlineCallbacks
    def test_curl_gets_both_forms(self):
        ca = Path(self.mktemp())
        ca.write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        url = f"{self.server.url}{EST}/pal"
        out = yield support.run_tool("curl", "-sS", "--fail", "--cacert", str(ca), "-u", f"alice:{PASSWORD}", url)
        self.assertEqual(out.returncode, 0, out.stderr)
        pal_format.validate_xml(out.stdout)
        out_json = yield support.run_tool("curl", "-sS", "--fail", "--cacert", str(ca), "-u", f"alice:{PASSWORD}",
                                          "-H", "Accept: application/json", url)
        self.assertEqual(pal_format.parse_json(out_json.stdout), pal_format.parse_xml(out.stdout))

    @defer.inlineCallbacks
    def test_uris_follow_the_label(self):
        entries = yield self.pal(label="iot")
        self.assertEqual([e.uri for e in entries], [f"{self.base}/iot/cacerts", f"{self.base}/iot/crls",
                                                     f"{self.base}/iot/crls"])

    @defer.inlineCallbacks
    def test_downloads_date_the_standing_entries(self):
        yield self.raw("GET", f"{EST}/cacerts", self.basic())
        yield self.raw("GET", f"{EST}/crls", self.basic())
        yield self.raw("GET", f"{EST}/crls")  # anonymous: dates nobody's PAL
        entries = yield self.pal()
        now = datetime.datetime.now(datetime.timezone.utc)
        for e in entries:
            self.assertIsNotNone(e.date, e.type)
            self.assertLess(abs((now - e.date).total_seconds()), 60)
        bob = yield self.pal("bob")
        self.assertEqual([e.date for e in bob], [None, None, None])
        # the same client under another label has not fetched that label's yet
        iot = yield self.pal(label="iot")
        self.assertEqual([e.date for e in iot], [None, None, None])

    @defer.inlineCallbacks
    def test_certificate_client_gets_its_pal(self):
        key, cert = yield self.enroll("CN=device-pal")
        client = self.client(None, client_cert=[cert], client_key=key)
        entries = yield support.in_thread(get_pal, client)
        self.assertEqual([e.type for e in entries], STANDING)
        # the device acts for the client that enrolled it: alice's packages
        yield on_store_thread(self.server.store.packages.queue_package, label="default", pal_type="0026",
                              target_kind="client", target="alice", content=b"\x30\x00")
        entries = yield support.in_thread(get_pal, client)
        self.assertIn("0026", [e.type for e in entries])

    @defer.inlineCallbacks
    def test_one_client_never_sees_anothers_packages(self):
        store = self.server.store
        mine = yield on_store_thread(store.packages.queue_package, label="default", pal_type="0026", target_kind="client",
                                     target="alice", content=b"\x30\x00", receipt_requested=True)
        yield on_store_thread(store.groups.add_to_group, "lab", ["bob"])
        theirs = yield on_store_thread(store.packages.queue_package, label="default", pal_type="0024",
                                       target_kind="group", target="lab", content=b"\x30\x00")
        everyone = yield on_store_thread(store.packages.queue_package, label="default", pal_type="0030",
                                         target_kind="label", target="default", content=b"\x30\x00")
        alice = yield self.pal("alice")
        bob = yield self.pal("bob")
        self.assertEqual([e.type for e in alice], STANDING + ["0026", "0027", "0030"])
        self.assertEqual([e.type for e in bob], STANDING + ["0024", "0030"])
        carol = yield self.pal("carol", label="iot")
        self.assertEqual([e.type for e in carol], STANDING)
        alice_offered = yield on_store_thread(store.packages.delivery, mine.id, "alice")
        self.assertEqual(alice_offered.state, "offered")
        bob_row = yield on_store_thread(store.packages.delivery, mine.id, "bob")
        self.assertIsNone(bob_row)
        for package, client in ((theirs, "alice"), (mine, "bob")):
            row = yield on_store_thread(store.packages.delivery, package.id, client)
            self.assertIsNone(row)
        shared = yield on_store_thread(store.packages.deliveries, everyone.id)
        self.assertEqual(sorted(d.client for d in shared), ["alice", "bob"])


class PagingTests(DistributionCase):
    sections = {"pal": {"max_entries": 4}}

    @defer.inlineCallbacks
    def test_pages_and_the_client_follows_them(self):
        for n in range(5):
            yield on_store_thread(self.server.store.packages.queue_package, label="default", pal_type="0026",
                                  target_kind="client", target="alice", content=b"\x30\x01" + bytes([n]))
        first = yield self.pal()
        self.assertEqual([e.type for e in first], ["0002", "0004", "0005", "0001"])
        self.assertEqual(first[-1].uri, f"{self.base}/pal?page=2")
        resp = yield self.raw("GET", f"{EST}/pal?page=2", self.basic())
        pal_format.validate_xml(resp.body)
        second = pal_format.parse_xml(resp.body)
        self.assertEqual([e.type for e in second], ["0026", "0026", "0026", "0001"])
        self.assertEqual(second[-1].uri, f"{self.base}/pal?page=3")
        resp = yield self.raw("GET", f"{EST}/pal?page=3", self.basic())
        self.assertEqual([e.type for e in pal_format.parse_xml(resp.body)], ["0026", "0026"])
        everything = yield support.in_thread(get_pal, self.client())
        self.assertEqual([e.type for e in everything], STANDING + ["0026"] * 5)
        resp = yield self.raw("GET", f"{EST}/pal?page=4", self.basic())
        self.assertEqual(pal_format.parse_xml(resp.body), [])
        for bad in ("0", "x", "-1"):
            resp = yield self.raw("GET", f"{EST}/pal?page={bad}", self.basic())
            self.assertEqual(resp.status, 400)
            self.assertEqual(resp.body.count(b"\n"), 1)


class CrlTests(DistributionCase):
    def crls_of(self, resp):
        self.assertEqual(resp.status, 200, resp.body)
        self.assertEqual(resp.header("content-type"), "application/pkcs7-mime")
        self.assertEqual(resp.header("content-transfer-encoding"), "base64")
        der = decode_body(resp.body)
        info, rest = decoder.decode(der, asn1Spec=rfc5652.ContentInfo())
        self.assertEqual((rest, encoder.encode(info)), (b"", der))
        sd, rest = decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
        self.assertEqual(rest, b"")
        self.assertEqual((int(sd["version"]), len(sd["signerInfos"])), (1, 0))
        return [x509.load_der_x509_crl(d) for d in read_crls_only(der)]

    @staticmethod
    def split(crls):
        """(CRL, ARL): the ARL is the one limited to CA certificates."""
        def is_arl(crl):
            try:
                return crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value \
                    .only_contains_ca_certs
            except x509.ExtensionNotFound:
                return False
        return next(c for c in crls if not is_arl(c)), next(c for c in crls if is_arl(c))

    @defer.inlineCallbacks
    def test_anonymous_crls_signed_by_the_ca_in_the_token(self):
        resp = yield self.raw("GET", f"{EST}/crls")
        crls = self.crls_of(resp)
        self.assertEqual(len(crls), 2)
        crl, arl = self.split(crls)
        ca = self.server.ca_cert
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        for c in (crl, arl):
            self.assertTrue(c.is_signature_valid(ca.public_key()))
            self.assertEqual(c.issuer, ca.subject)
            self.assertEqual(c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier,
                             ski)
            self.assertGreaterEqual(c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number, 1)
            decoder.decode(c.public_bytes(serialization.Encoding.DER), asn1Spec=rfc5280.CertificateList())
        tmp = Path(self.mktemp())
        tmp.mkdir()
        (tmp / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (tmp / "crl.der").write_bytes(crl.public_bytes(serialization.Encoding.DER))
        out = yield support.run_tool("openssl", "crl", "-inform", "DER", "-in", str(tmp / "crl.der"),
                                     "-CAfile", str(tmp / "ca.pem"), "-noout")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"verify OK", out.stderr + out.stdout)
        (tmp / "crls.p7").write_bytes(decode_body(resp.body))
        out = yield support.run_tool("openssl", "pkcs7", "-inform", "DER", "-in", str(tmp / "crls.p7"), "-print")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.count(b"lastUpdate"), 2)

    @defer.inlineCallbacks
    def test_revocation_reaches_the_crl(self):
        _, cert = yield self.enroll("CN=to-revoke")
        before = self.split(self.crls_of((yield self.raw("GET", f"{EST}/crls"))))[0]
        self.assertIsNone(before.get_revoked_certificate_by_serial_number(cert.serial_number))
        yield on_store_thread(self.server.store.certificates.revoke, cert.serial_number, "keyCompromise")
        after = self.split(self.crls_of((yield self.raw("GET", f"{EST}/crls"))))[0]
        entry = after.get_revoked_certificate_by_serial_number(cert.serial_number)
        self.assertIsNotNone(entry)
        self.assertEqual(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason,
                         x509.ReasonFlags.key_compromise)
        number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
        self.assertGreater(number(after), number(before))
        # the date of the PAL's CRL entry went with the old CRL
        pal = yield self.pal()
        self.assertIsNone(next(e for e in pal if e.type == "0005").date)

    @defer.inlineCallbacks
    def test_our_client_checks_them_against_its_anchor(self):
        crls = yield support.in_thread(get_crls, self.client(), [self.server.ca_cert])
        self.assertEqual(len(crls), 2)
        stranger = new_key("ec-p256")
        name = self.server.ca_cert.subject
        fake = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(stranger.public_key())
                .serial_number(1).not_valid_before(datetime.datetime(2020, 1, 1))
                .not_valid_after(datetime.datetime(2040, 1, 1)).sign(stranger, support_hash()))
        with self.assertRaises(EstClientError):
            yield support.in_thread(get_crls, self.client(), [fake])
        code, out, err = yield self.est("crls")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.count("BEGIN X509 CRL"), 2)

    @defer.inlineCallbacks
    def test_schedule_reissues_before_next_update(self):
        crls = self.server.appliance.crls
        schedule = CrlSchedule(crls, datetime.timedelta(hours=6), 10)
        yield schedule.check()
        first = yield on_store_thread(self.server.store.crls.latest_crl, "crl")
        first_arl = yield on_store_thread(self.server.store.crls.latest_crl, "arl")
        yield schedule.check()
        again = yield on_store_thread(self.server.store.crls.latest_crl, "crl")
        self.assertEqual(again.number, first.number)  # not due yet
        due = CrlSchedule(crls, datetime.timedelta(hours=30), 10)  # validity is 24 h: always due
        yield due.check()
        renewed = yield on_store_thread(self.server.store.crls.latest_crl, "crl")
        renewed_arl = yield on_store_thread(self.server.store.crls.latest_crl, "arl")
        self.assertEqual((renewed.number, renewed_arl.number), (first.number + 1, first_arl.number + 1))
        self.assertEqual(schedule.step, 600)

    def test_the_service_runs_the_schedule_in_one_process_only(self):
        import dataclasses
        from estappliance.service import ApplianceService
        appliance = self.server.appliance
        [schedule] = [s for s in ApplianceService(appliance) if isinstance(s, CrlSchedule)]
        self.assertEqual(schedule.step, appliance.config.crl.check_minutes * 60)
        self.assertEqual(schedule.reissue_before, datetime.timedelta(hours=appliance.config.crl.reissue_before_hours))
        second_worker = dataclasses.replace(appliance, worker_index=1)
        self.assertEqual([s for s in ApplianceService(second_worker) if isinstance(s, CrlSchedule)], [])

    @defer.inlineCallbacks
    def test_token_away_the_current_crl_serves_until_next_update(self):
        from estappliance.errors import TokenUnavailable
        crls = self.server.appliance.crls
        self.patch(crls, "issue", lambda kind: defer.fail(TokenUnavailable("token not present")))
        resp = yield self.raw("GET", f"{EST}/crls")
        self.assertEqual((resp.status, resp.header("retry-after")), (503, "7"))  # nothing to serve yet
        self.assertEqual(resp.body.count(b"\n"), 1)
        self.patch(crls, "issue", type(crls).issue.__get__(crls))
        before = self.crls_of((yield self.raw("GET", f"{EST}/crls")))
        self.patch(crls, "issue", lambda kind: defer.fail(TokenUnavailable("token not present")))
        due = yield crls.current("crl", datetime.timedelta(hours=25))  # due, cannot re-issue: still valid
        self.assertEqual(due.der, self.split(before)[0].public_bytes(serialization.Encoding.DER))
        resp = yield self.raw("GET", f"{EST}/pal", self.basic())
        self.assertEqual(resp.status, 200)
        self.flushLoggedErrors(TokenUnavailable)

    @defer.inlineCallbacks
    def test_concurrent_requests_issue_one_crl(self):
        crls = self.server.appliance.crls
        records = yield defer.gatherResults([crls.current("arl") for _ in range(4)])
        self.assertEqual({r.number for r in records}, {1})
        latest = yield on_store_thread(self.server.store.crls.latest_crl, "arl")
        self.assertEqual(latest.number, 1)

    @defer.inlineCallbacks
    def test_a_crl_issued_by_another_process_meanwhile_is_used(self):
        import sqlite3
        crls = self.server.appliance.crls
        first = yield crls.current("crl")
        issue, theirs = crls.issue, []

        def other_process_won(kind):
            # the other process records the next number just before our record does
            d = issue(kind)
            d.addCallback(theirs.append)
            d.addCallback(lambda _: defer.fail(sqlite3.IntegrityError("UNIQUE constraint failed: crls")))
            return d
        self.patch(crls, "issue", other_process_won)
        got = yield crls.current("crl", datetime.timedelta(hours=25))  # always due: it tries to issue
        self.assertEqual((got.number, got.der), (theirs[0].number, theirs[0].der))
        self.assertEqual(got.number, first.number + 1)


def support_hash():
    from cryptography.hazmat.primitives import hashes
    return hashes.SHA256()


class EeCertTests(DistributionCase):
    @defer.inlineCallbacks
    def publish(self, cert, *target):
        path = Path(self.mktemp())
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        code, out, err = yield self.estctl("publish", "eecert", str(path), *target)
        self.assertEqual(code, 0, err)
        return out

    @defer.inlineCallbacks
    def test_published_per_client_group_and_label(self):
        _, for_alice = yield self.enroll("CN=peer-for-alice", "bob")
        _, for_group = yield self.enroll("CN=peer-for-group", "bob")
        _, for_all = yield self.enroll("CN=peer-for-all", "bob")
        yield self.publish(for_alice, "--client", "alice")
        code, out, err = yield self.estctl("group", "add", "field", "alice")
        self.assertEqual(code, 0, err)
        yield self.publish(for_group, "--group", "field", "--name", "gateway")
        yield self.publish(for_all, "--all")
        entries = yield self.pal()
        ee = [e for e in entries if e.type == "0003"]
        self.assertEqual(len(ee), 1)  # one entry: /eecerts serves them all at once
        self.assertEqual((ee[0].uri, ee[0].date), (f"{self.base}/eecerts", None))
        self.assertEqual(entries[-1].type, "0003")  # EE certificates come last
        resp = yield self.raw("GET", f"{EST}/eecerts", self.basic())
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-type"), "application/pkcs7-mime")
        self.assertEqual(resp.header("content-transfer-encoding"), "base64")
        self.assertEqual(ee[0].size, len(decode_body(resp.body)))
        got = read_certs_only(decode_body(resp.body))
        self.assertEqual({c.subject.rfc4514_string() for c in got},
                         {"CN=peer-for-alice", "CN=peer-for-group", "CN=peer-for-all"})
        entries = yield self.pal()
        self.assertIsNotNone(next(e for e in entries if e.type == "0003").date)
        # bob: only the label-wide one; nobody (anonymous): the label-wide one too
        bob = yield support.in_thread(get_eecerts, self.client("bob"), [self.server.ca_cert])
        self.assertEqual([c.subject.rfc4514_string() for c in bob], ["CN=peer-for-all"])
        anonymous = yield self.raw("GET", f"{EST}/eecerts")
        self.assertEqual([c.subject.rfc4514_string() for c in read_certs_only(decode_body(anonymous.body))],
                         ["CN=peer-for-all"])
        # carol's label has none
        resp = yield self.raw("GET", f"{EST}/iot/eecerts", self.basic("carol"))
        self.assertEqual(resp.status, 404)
        # what the operator sees
        code, out, err = yield self.estctl("packages", "list")
        self.assertEqual(code, 0, err)
        lines = [line.split("\t") for line in out.splitlines()]
        states = {(line[3], line[4]): line[5] for line in lines}
        self.assertEqual(states[("client:alice", "alice")], "downloaded")
        self.assertEqual(states[("group:field", "alice")], "downloaded")
        self.assertEqual(states[("label:default", "alice")], "downloaded")
        self.assertEqual(states[("label:default", "bob")], "downloaded")
        self.assertNotIn(("label:default", "carol"), states)
        self.assertIn("gateway", out)

    @defer.inlineCallbacks
    def test_refusals(self):
        ca_path = Path(self.mktemp())
        ca_path.write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        code, out, err = yield self.estctl("publish", "eecert", str(ca_path), "--all")
        self.assertEqual(code, 1)
        self.assertIn("CA certificate", err)
        junk = Path(self.mktemp())
        junk.write_bytes(b"not a certificate")
        code, out, err = yield self.estctl("publish", "eecert", str(junk), "--client", "alice")
        self.assertEqual(code, 1)
        _, peer = yield self.enroll("CN=peer")
        path = Path(self.mktemp())
        path.write_bytes(peer.public_bytes(serialization.Encoding.PEM))
        code, out, err = yield self.estctl("publish", "eecert", str(path), "--client", "carol")
        self.assertEqual(code, 1)
        self.assertIn("may not use label", err)
        code, out, err = yield self.estctl("publish", "eecert", str(path), "--client", "alice", "--label", "nope")
        self.assertEqual(code, 1)
        packages = yield on_store_thread(self.server.store.packages.packages)
        self.assertEqual(packages, [])
        resp = yield self.raw("GET", f"{EST}/eecerts", self.basic())
        self.assertEqual(resp.status, 404)
        resp = yield self.raw("GET", f"{EST}/eecerts", self.basic(password="wrong"))
        self.assertEqual(resp.status, 401)

    @defer.inlineCallbacks
    def test_client_rejects_certificates_outside_its_anchors(self):
        stranger_key = new_key("ec-p256")
        name = x509.Name.from_rfc4514_string("CN=stranger")
        stranger = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                    .public_key(stranger_key.public_key()).serial_number(5)
                    .not_valid_before(datetime.datetime(2020, 1, 1)).not_valid_after(datetime.datetime(2040, 1, 1))
                    .sign(stranger_key, support_hash()))
        yield self.publish(stranger, "--client", "alice")
        with self.assertRaises(EstClientError) as caught:
            yield support.in_thread(get_eecerts, self.client(), [self.server.ca_cert])
        self.assertIn("does not validate", str(caught.exception))
        code, out, err = yield self.est("eecerts")
        self.assertEqual(code, 1)


class EnrollmentResultTests(DistributionCase):
    @defer.inlineCallbacks
    def post(self, csr, expect):
        der = csr.public_bytes(serialization.Encoding.DER)
        resp = yield self.raw("POST", f"{EST}/manual/simpleenroll",
                              {**self.basic(), "Content-Type": "application/pkcs10"}, base64.b64encode(der))
        self.assertEqual(resp.status, expect, resp.body)
        return resp

    @defer.inlineCallbacks
    def results(self):
        entries = yield self.pal(label="manual")
        return [(e.type, e.uri) for e in entries if e.type not in STANDING]

    @defer.inlineCallbacks
    def test_approved_result_fetched_with_get(self):
        key = new_key("ec-p256")
        yield self.post(make_csr(key, "CN=waiting"), 202)
        announced = yield self.results()
        self.assertEqual(announced, [])
        resp = yield self.raw("GET", f"{EST}/manual/simpleenroll", self.basic())
        self.assertEqual(resp.status, 202)  # still waiting: same answer as the POST
        self.assertEqual(resp.header("retry-after"), "7")
        [request] = yield on_store_thread(self.server.store.certificates.pending_requests)
        code, out, err = yield self.estctl("pending", "approve", str(request.id))
        self.assertEqual(code, 0, err)
        announced = yield self.results()
        self.assertEqual(announced, [("0008", f"{self.base}/manual/simpleenroll")])
        resp = yield self.raw("GET", f"{EST}/manual/simpleenroll", self.basic())
        self.assertEqual(resp.status, 200, resp.body)
        self.assertEqual(resp.header("content-type"), "application/pkcs7-mime; smime-type=certs-only")
        [cert] = read_certs_only(decode_body(resp.body))
        self.assertEqual(cert.public_key(), key.public_key())
        cert.verify_directly_issued_by(self.server.ca_cert)
        record = yield on_store_thread(self.server.store.certificates.certificate, cert.serial_number)
        self.assertEqual((record.client, record.label), ("alice", "manual"))
        done = yield on_store_thread(self.server.store.certificates.pending, request.id)
        self.assertEqual((done.state, done.serial), ("issued", cert.serial_number))
        announced = yield self.results()
        self.assertEqual(announced, [])
        # a lost answer can be fetched again; the repeated POST agrees
        again = yield support.in_thread(get_enrollment_result, self.client(label="manual"), "simpleenroll")
        self.assertEqual(again, cert)
        resp = yield self.post(make_csr(key, "CN=waiting"), 200)
        self.assertEqual(read_certs_only(decode_body(resp.body)), [cert])
        count = yield self.server.count_certificates()
        self.assertEqual(count, 3)  # TLS server, content signer, this one

    @defer.inlineCallbacks
    def test_rejection_announced_once_fetched(self):
        yield self.post(make_csr(new_key("ec-p256"), "CN=unwanted"), 202)
        [request] = yield on_store_thread(self.server.store.certificates.pending_requests)
        code, out, err = yield self.estctl("pending", "reject", str(request.id))
        self.assertEqual(code, 0, err)
        announced = yield self.results()
        self.assertEqual(announced, [("0009", f"{self.base}/manual/simpleenroll")])
        resp = yield self.raw("GET", f"{EST}/manual/simpleenroll", self.basic())
        self.assertEqual(resp.status, 403)
        self.assertIn(b"rejected", resp.body)
        announced = yield self.results()
        self.assertEqual(announced, [])
        resp = yield self.raw("GET", f"{EST}/manual/simpleenroll", self.basic())
        self.assertEqual(resp.status, 404)

    @defer.inlineCallbacks
    def test_rejection_learnt_by_repeating_the_post_is_not_announced_again(self):
        csr = make_csr(new_key("ec-p256"), "CN=unwanted-too")
        yield self.post(csr, 202)
        [request] = yield on_store_thread(self.server.store.certificates.pending_requests)
        yield on_store_thread(self.server.store.certificates.decide_pending, request.id, False)
        announced = yield self.results()
        self.assertEqual([t for t, _ in announced], ["0009"])
        yield self.post(csr, 403)  # the RFC 7030 way: ask again
        announced = yield self.results()
        self.assertEqual(announced, [])

    @defer.inlineCallbacks
    def test_get_needs_authentication_and_sees_only_own_results(self):
        yield self.post(make_csr(new_key("ec-p256"), "CN=alices"), 202)
        [request] = yield on_store_thread(self.server.store.certificates.pending_requests)
        yield on_store_thread(self.server.store.certificates.decide_pending, request.id, True)
        resp = yield self.raw("GET", f"{EST}/manual/simpleenroll")
        self.assertEqual(resp.status, 401)
        yield self.server.add_client("mallory", PASSWORD, labels=("manual",))
        resp = yield self.raw("GET", f"{EST}/manual/simpleenroll", self.basic("mallory"))
        self.assertEqual(resp.status, 404)
        resp = yield self.raw("GET", f"{EST}/manual/simplereenroll", self.basic())
        self.assertEqual(resp.status, 404)  # the result is of the other operation
        count = yield self.server.count_certificates()
        self.assertEqual(count, 2)
        resp = yield self.raw("GET", f"{EST}/manual/simpleenroll", self.basic())
        self.assertEqual(resp.status, 200)


class CommandTests(DistributionCase):
    @defer.inlineCallbacks
    def test_est_pal(self):
        yield on_store_thread(self.server.store.packages.queue_package, label="default", pal_type="0026",
                              target_kind="client", target="alice", content=b"\x30\x00", receipt_requested=True)
        code, out, err = yield self.est("pal")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual([line.split()[0] for line in lines], STANDING + ["0026", "0027"])
        self.assertIn("Firmware Package Receipt or Error", lines[-1])
        self.assertIn(f"{self.base}/firmware/return", lines[-1])
        code, out_json, err = yield self.est("pal", "--json")
        self.assertEqual((code, out_json), (0, out))
        code, raw, err = yield self.est("pal", "--raw")
        self.assertEqual(code, 0, err)
        pal_format.validate_xml(raw.encode())
        code, out, err = yield self.est("pal", user="carol")
        self.assertEqual(code, 1)
        self.assertIn("403", err)

    @defer.inlineCallbacks
    def test_groups(self):
        code, out, err = yield self.estctl("group", "add", "field", "alice", "bob")
        self.assertEqual(code, 0, err)
        code, out, err = yield self.estctl("group", "list")
        self.assertEqual(out.strip(), "field\talice, bob")
        code, out, err = yield self.estctl("group", "remove", "field", "bob")
        self.assertEqual(code, 0, err)
        members = yield on_store_thread(self.server.store.groups.group_members, "field")
        self.assertEqual(members, ["alice"])
        code, out, err = yield self.estctl("group", "remove", "nothing")
        self.assertEqual(code, 1)

    @defer.inlineCallbacks
    def test_withdraw(self):
        _, peer = yield self.enroll("CN=peer")
        path = Path(self.mktemp())
        path.write_bytes(peer.public_bytes(serialization.Encoding.PEM))
        code, out, err = yield self.estctl("publish", "eecert", str(path), "--client", "alice")
        package_id = out.split()[1].rstrip(":")
        code, out, err = yield self.estctl("packages", "withdraw", package_id)
        self.assertEqual(code, 0, err)
        entries = yield self.pal()
        self.assertEqual([e.type for e in entries], STANDING)
        code, out, err = yield self.estctl("packages", "withdraw", package_id)
        self.assertEqual(code, 1)
        code, out, err = yield self.estctl("packages", "list", "--all")
        self.assertIn("withdrawn", out)


class TwistdTests(InteropBase):
    """The real ``twistd -n est`` process (shared with the interop tests)."""

    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.server = yield support.in_thread(shared_server)

    def issued_kinds(self) -> set[str]:
        import sqlite3
        db = sqlite3.connect(f"file:{self.server.state / 'est.sqlite'}?mode=ro", uri=True)
        try:
            return {row[0] for row in db.execute("SELECT DISTINCT kind FROM crls")}
        finally:
            db.close()

    @defer.inlineCallbacks
    def test_schedule_issued_the_crls_and_the_pal_is_served(self):
        for _ in range(100):  # the schedule's first run starts with the service
            if self.issued_kinds() == {"crl", "arl"}:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(self.issued_kinds(), {"crl", "arl"})
        answer = yield self.curl(f"{EST}/pal", "-u", f"{INTEROP_USER}:{self.server.password}")
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.header("content-type"), "application/xml")
        pal_format.validate_xml(answer.body)
        self.assertEqual([e.type for e in pal_format.parse_xml(answer.body)], STANDING)
        answer = yield self.curl(f"{EST}/crls")
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(len(read_crls_only(decode_body(answer.body))), 2)
        proc = yield self.tool(BIN / "est", "pal", "--server", self.server.url, "--anchor", self.server.ca_pem,
                               "--user", INTEROP_USER, "--password-file", self.server.password_file, "--json")
        self.assertEqual([line.split()[0] for line in proc.stdout.decode().splitlines()], STANDING)


class ServiceStopTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_store_closes_after_a_crl_being_issued(self):
        from types import SimpleNamespace
        from estappliance.config import CrlConfig
        from twisted.application.service import Service
        from estappliance.service import ApplianceService
        store = Store(Path(self.mktemp()) / "s.sqlite")
        self.addCleanup(lambda: on_store_thread(store.close))
        issuing = defer.Deferred()
        events = []

        def current(kind, reissue_before):
            events.append(f"issue {kind}")
            return issuing if kind == "crl" else defer.succeed(None)
        appliance = SimpleNamespace(
            primary=True, config=SimpleNamespace(crl=CrlConfig(), ca=SimpleNamespace(key_label="k"),
                                                 server=SimpleNamespace(batch_scheduling=False)),
            crls=SimpleNamespace(current=current), close=lambda: events.append("close"),
            store=store,  # the CRL schedule's lease is taken there
            ca_watch=lambda: Service(),  # the CA generation watch (a no-op here)
            ticket_keys=None, secrets=None, secrets_later=[],  # no TLS here, every shared secret had
            ca=SimpleNamespace(check_key_matches=lambda: defer.succeed(True),
                               certificate=SimpleNamespace(subject=x509.Name([]))))
        top = ApplianceService(appliance)
        top.startService()
        for _ in range(200):  # the lease is taken (a store commit), then the schedule checks
            if events:
                break
            yield task.deferLater(reactor, 0.02, lambda: None)
        stopped = top.stopService()
        self.assertEqual(events, ["issue crl"])  # still issuing: the store stays open
        issuing.callback(None)
        yield stopped
        self.assertEqual(events, ["issue crl", "issue arl", "close"])
