"""End to end through TLS on 127.0.0.1, with a real SoftHSM2 token: the RA
features. /simplereenroll (renew, rekey, refusals, revocation), proof-of-
possession linking on TLS 1.2 (tls-unique) and TLS 1.3 (tls-exporter), RA
certificates, /csrattrs (checked with our parser and with pyasn1-alt-modules),
manual approval (202 + Retry-After, estctl pending approve/reject), HTTP
Digest (our client, SHA-256; curl, MD5; replays), subject templates, name
rules, and the audit trail of every refusal."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc8951
from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from estappliance.admin.cli import main as estctl_main
from estappliance.client import (BasicAuth, DigestAuth, EnrollmentPending, EstClient, EstClientError,
                                 HttpsConnection, make_csr, new_key)
from estappliance.pki import csrattrs
from estappliance.pki.cms import read_certs_only
from estappliance.pki.encoding import decode_body
from estappliance.http_digest import ha1_all, parse_authorization
from estappliance.ra.passwords import hash_password
from estappliance.store import on_store_thread
from estappliance.token import on_token_thread

from . import support

PASSWORD = "correct horse"
VERSIONS = ("1.2", "1.3")
EST = "/.well-known/est"

OID_CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"
OID_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_RSA = "1.2.840.113549.1.1.1"
OID_P256 = "1.2.840.10045.3.1.7"
OID_P384 = "1.3.132.0.34"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
OID_ECDSA_SHA384 = "1.2.840.10045.4.3.3"
OID_SHA256_RSA = "1.2.840.113549.1.1.11"
OID_SAN = "2.5.29.17"
OID_CMC_RA = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.28")

PROFILES = {
    "ra": {"extended_key_usage": ["clientAuth", "cmcRA"]},
    "change": {"allow_subject_change": True},
    "p384": {"key_types": ["ec-p384"], "required_extensions": ["subjectAltName"]},
    "rsa": {"key_types": ["rsa2048", "ec-p256"]},
    "p521": {"key_types": ["ec-p521"]},
    "quiet": {"csrattrs": False},
    "tmpl": {"subject_template": "CN={CN},O=Example"},
    "tmplclient": {"subject_template": "CN={client}"},
    "rules": {"required_rdns": ["O"],
              "name_patterns": {"CN": "dev-[0-9]+", "DNS": r"[a-z0-9-]+\.example\.com"}},
}
LABELS = {
    "default": {},  # basic, digest and cert
    "basiconly": {"auth": ["basic"]},
    "certonly": {"auth": ["cert"]},
    "change": {"profile": "change", "auth": ["cert"]},
    "linked": {"pop_linking": True},
    "ra": {"profile": "ra", "auth": ["basic"]},
    "p384": {"profile": "p384", "pop_linking": True, "auth": ["basic"]},
    "rsa": {"profile": "rsa", "auth": ["basic"]},
    "quiet": {"profile": "quiet", "auth": ["basic"]},
    "manual": {"approval": "manual", "auth": ["basic"]},
    "manualre": {"approval": "manual", "auth": ["cert"]},
    "p521": {"profile": "p521", "auth": ["basic"]},
    "digest": {"auth": ["digest"]},
    "digestbasic": {"auth": ["digest", "basic"]},
    "digeststrict": {"auth": ["digest", "basic"], "challenge_order": "strict"},
    "digestmd5": {"auth": ["digest"], "digest_algorithms": ["MD5"]},
    "tmpl": {"profile": "tmpl", "auth": ["basic"]},
    "tmplclient": {"profile": "tmplclient", "auth": ["basic"]},
    "rules": {"profile": "rules", "auth": ["basic"]},
}


def der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


def b64csr(csr: x509.CertificateSigningRequest) -> bytes:
    return base64.b64encode(der(csr))


def san_dns(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def pyasn1_items(der_bytes: bytes) -> list[tuple]:
    """CsrAttrs decoded by pyasn1-alt-modules (independent of asn1crypto); the
    DER must re-encode byte for byte. Attribute values: OIDs as dotted text,
    INTEGERs as int."""
    obj, rest = der_decoder.decode(der_bytes, asn1Spec=rfc8951.CsrAttrs())
    if rest:
        raise AssertionError(f"trailing bytes after CsrAttrs: {rest!r}")
    if der_encoder.encode(obj) != der_bytes:
        raise AssertionError("CsrAttrs does not re-encode to the same DER")
    items = []
    for item in obj:
        if item.getName() == "oid":
            items.append(("oid", str(item["oid"])))
            continue
        attr = item["attribute"]
        values = []
        for raw in attr["attrValues"]:
            raw = bytes(raw)
            if raw[:1] == b"\x06":
                values.append(str(der_decoder.decode(raw, asn1Spec=univ.ObjectIdentifier())[0]))
            elif raw[:1] == b"\x02":
                values.append(int(der_decoder.decode(raw, asn1Spec=univ.Integer())[0]))
            else:
                values.append(raw)
        items.append(("attr", str(attr["attrType"]), values))
    return items


def toml_value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


def write_estctl_config(cfg, path) -> None:
    """The running server's config as the TOML file estctl reads (absolute paths)."""
    hsm = support.hsm_dir().resolve()
    tables = {
        "server": {"realm": cfg.server.realm, "retry_after": cfg.server.retry_after,
                   "tls_key": cfg.server.tls_key, "tls_cert": cfg.server.tls_cert},
        "token": {"module": support.SOFTHSM_LIB, "label": support.TOKEN_LABEL, "pin_file": hsm / "pin",
                  "softhsm2_conf": hsm / "softhsm2.conf"},
        "ca": {"key_label": cfg.ca.key_label, "key_type": cfg.ca.key_type, "subject": cfg.ca.subject,
               "cert_file": cfg.ca.cert_file, "chain_file": cfg.ca.chain_file},
        "store": support.store_table(cfg),
    }
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")


def _estctl(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = estctl_main(argv)
        except SystemExit as e:
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
                code = 1
            else:
                code = e.code or 0
    return code, out.getvalue(), err.getvalue()


class RaTestCase(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(self, labels=LABELS, profiles=PROFILES)
        self.realm = self.server.appliance.config.server.realm
        store = self.server.store
        yield on_store_thread(store.clients.add_client, "alice", hash_password(PASSWORD), ["*"],
                              ha1_all("alice", self.realm, PASSWORD))
        yield on_store_thread(store.clients.add_client, "bob", hash_password(PASSWORD), ["default"],
                              ha1_all("bob", self.realm, PASSWORD))

    # -- helpers ------------------------------------------------------------------

    def client(self, **kw) -> EstClient:
        client = self.server.client(**kw)
        self.addCleanup(client.close)
        return client

    def basic_client(self, label=None, user="alice", **kw) -> EstClient:
        return self.client(label=label, auth=BasicAuth(user, PASSWORD), **kw)

    def raw(self, method, path, headers=None, body=b"", **kw):
        """One raw HTTP exchange on a fresh connection."""
        return self.server.raw(method, path, headers, body, **kw)

    @staticmethod
    def basic(user="alice", password=PASSWORD) -> dict:
        return {"Authorization": BasicAuth(user, password).header(), "Content-Type": "application/pkcs10"}

    def path(self, label, op):
        return f"{EST}/{label}/{op}" if label else f"{EST}/{op}"

    def on_store(self, fn, *args, **kw):
        return on_store_thread(fn, *args, **kw)

    def count(self):
        return self.server.count_certificates()

    def record(self, serial):
        return on_store_thread(self.server.store.certificates.certificate, serial)

    @defer.inlineCallbacks
    def issue(self, subject, dns_names=(), key=None, label=None):
        """A certificate from this CA, enrolled by alice with Basic; fires with (key, cert)."""
        key = key or new_key("ec-p256")
        client = self.basic_client(label)
        cert = yield support.in_thread(client.simpleenroll, make_csr(key, subject, dns_names=dns_names))
        return key, cert

    @defer.inlineCallbacks
    def assertRefused(self, status, method, path, headers=None, body=b"", reason=None, client="alice", **kw):
        """A refusal: status, one-line text/plain reason (a 401: an empty body,
        the reason only in the audit), audited with the client name, no
        certificate and no pending request recorded."""
        before = yield self.count()
        pending_before = yield self.on_store(self.server.store.certificates.pending_requests, None)
        resp = yield self.raw(method, path, headers, body, **kw)
        self.assertEqual(resp.status, status, resp.body)
        if status == 401:
            self.assertEqual((resp.body, resp.header("content-length")), (b"", "0"))
        else:
            self.assertTrue((resp.header("content-type") or "").startswith("text/plain"), resp.headers)
            text = resp.body.decode()
            self.assertEqual(text.count("\n"), 1, text)
            self.assertTrue(text.endswith("\n"))
            if reason:
                self.assertIn(reason, text)
        after = yield self.count()
        self.assertEqual(after, before, "a refused request changed the certificate count")
        pending_after = yield self.on_store(self.server.store.certificates.pending_requests, None)
        self.assertEqual(pending_after, pending_before, "a refused request changed the pending table")
        if client is not None:
            events = yield self.on_store(self.server.store.audit.events, 1)
            self.assertTrue(events[0].outcome.startswith("refused"), events[0])
            if isinstance(client, (set, frozenset)):
                self.assertIn(events[0].client, client)
            else:
                self.assertEqual(events[0].client, client)
            if reason:
                self.assertIn(reason, events[0].detail or "")
        return resp

    def estctl(self, *argv):
        """estctl in-process on the PKCS#11 thread; fires with (code, stdout, stderr)."""
        conf = self.server.appliance.config.path.parent / "estctl.toml"
        if not conf.exists():
            write_estctl_config(self.server.appliance.config, conf)
        return on_token_thread(_estctl, ["-c", str(conf), *argv])


class ReenrollTests(RaTestCase):

    @defer.inlineCallbacks
    def test_renew_same_key_tls12_and_tls13(self):
        for version in VERSIONS:
            key, first = yield self.issue(f"CN=renew-{version},O=Example", ("renew.example",))
            client = self.client(label="certonly", client_cert=[first], client_key=key, tls_version=version)
            csr = make_csr(key, f"CN=renew-{version},O=Example", dns_names=("renew.example",))
            cert = yield support.in_thread(client.simplereenroll, csr)
            self.assertEqual(client.conn.tls_version(), f"TLSv{version}")
            cert.verify_directly_issued_by(self.server.ca_cert)
            self.assertNotEqual(cert.serial_number, first.serial_number)
            self.assertEqual(cert.subject, first.subject)
            self.assertEqual(cert.public_key(), first.public_key())  # renew: same key
            self.assertEqual(san_dns(cert), ["renew.example"])
            record = yield self.record(cert.serial_number)
            self.assertEqual(record.replaces, first.serial_number)
            self.assertEqual(record.client, "alice")
            self.assertEqual(record.der, cert.public_bytes(serialization.Encoding.DER))
            old = yield self.record(first.serial_number)
            self.assertIsNone(old.replaces)

    @defer.inlineCallbacks
    def test_rekey_new_key_tls12_and_tls13(self):
        for version in VERSIONS:
            key, first = yield self.issue(f"CN=rekey-{version}", ("rekey.example", "alt.example"))
            new = new_key("ec-p256")
            client = self.client(label="certonly", client_cert=[first], client_key=key, tls_version=version)
            # SAN order differs: the comparison is of the set of names.
            cert = yield support.in_thread(client.enroll, new, f"CN=rekey-{version}",
                                           dns_names=("alt.example", "rekey.example"), link=True, reenroll=True)
            cert.verify_directly_issued_by(self.server.ca_cert)
            self.assertEqual(cert.public_key(), new.public_key())
            self.assertNotEqual(cert.public_key(), first.public_key())
            self.assertEqual(cert.subject, first.subject)
            record = yield self.record(cert.serial_number)
            self.assertEqual(record.replaces, first.serial_number)
            # The new certificate renews in turn: a chain of replacements.
            client2 = self.client(label="certonly", client_cert=[cert], client_key=new, tls_version=version)
            third = yield support.in_thread(client2.simplereenroll,
                                            make_csr(new, f"CN=rekey-{version}",
                                                     dns_names=("rekey.example", "alt.example")))
            record3 = yield self.record(third.serial_number)
            self.assertEqual(record3.replaces, cert.serial_number)

    @defer.inlineCallbacks
    def test_reenroll_with_basic_only_is_403(self):
        key, first = yield self.issue("CN=basic-re")
        csr = make_csr(key, "CN=basic-re")
        for label in ("basiconly", None):
            yield self.assertRefused(403, "POST", self.path(label, "simplereenroll"), self.basic(), b64csr(csr),
                                     reason="re-enrollment needs the certificate being renewed")
        # A good certificate is no help where the label does not take certificates.
        yield self.assertRefused(403, "POST", self.path("basiconly", "simplereenroll"), self.basic(), b64csr(csr),
                                 reason="re-enrollment needs the certificate", client_cert=[first], client_key=key)

    @defer.inlineCallbacks
    def test_reenroll_without_credentials_is_401(self):
        key, _ = yield self.issue("CN=nocreds")
        resp = yield self.assertRefused(401, "POST", self.path("certonly", "simplereenroll"),
                                        {"Content-Type": "application/pkcs10"}, b64csr(make_csr(key, "CN=nocreds")),
                                        client=None)
        self.assertTrue(resp.header("www-authenticate"))

    @defer.inlineCallbacks
    def test_reenroll_subject_change_refused(self):
        key, first = yield self.issue("CN=dev-subj,O=Example", ("subj.example",))
        for version in VERSIONS:
            for subject in ("CN=dev-other,O=Example", "CN=dev-subj", "CN=dev-subj,O=Example,OU=x"):
                yield self.assertRefused(
                    400, "POST", self.path("certonly", "simplereenroll"), {"Content-Type": "application/pkcs10"},
                    b64csr(make_csr(key, subject, dns_names=("subj.example",))),
                    reason="CSR subject differs from the certificate being renewed",
                    client_cert=[first], client_key=key, tls_version=version)

    @defer.inlineCallbacks
    def test_reenroll_san_change_refused(self):
        key, first = yield self.issue("CN=dev-san", ("a.example",))
        for dns in (("b.example",), ("a.example", "b.example"), ()):
            yield self.assertRefused(
                400, "POST", self.path("certonly", "simplereenroll"), {"Content-Type": "application/pkcs10"},
                b64csr(make_csr(new_key(), "CN=dev-san", dns_names=dns)),
                reason="CSR subjectAltName differs from the certificate being renewed",
                client_cert=[first], client_key=key)

    @defer.inlineCallbacks
    def test_subject_change_where_profile_allows_it(self):
        key, first = yield self.issue("CN=before", ("before.example",))
        client = self.client(label="change", client_cert=[first], client_key=key)
        cert = yield support.in_thread(client.simplereenroll,
                                       make_csr(key, "CN=after", dns_names=("after.example",)))
        self.assertEqual(cert.subject.rfc4514_string(), "CN=after")
        self.assertEqual(san_dns(cert), ["after.example"])
        record = yield self.record(cert.serial_number)
        self.assertEqual(record.replaces, first.serial_number)

    @defer.inlineCallbacks
    def test_reenroll_under_label_enroller_may_not_use_is_refused(self):
        """bob may use only 'default'. His device's certificate must not open
        'change' (subject change allowed) to him: re-enrolling there would let
        him trade it for a certificate with any subject."""
        key = new_key()
        bob = self.basic_client(None, user="bob")
        first = yield support.in_thread(bob.simpleenroll, make_csr(key, "CN=bob-device"))
        yield self.assertRefused(403, "POST", self.path("change", "simplereenroll"),
                                 {"Content-Type": "application/pkcs10"},
                                 b64csr(make_csr(key, "CN=www.bank.example")),
                                 client="bob", client_cert=[first], client_key=key)

    @defer.inlineCallbacks
    def test_manual_approval_of_a_reenrollment(self):
        key, first = yield self.issue("CN=slow-renew")
        client = self.client(label="manualre", client_cert=[first], client_key=key)
        err = yield self.assertFailure(support.in_thread(client.simplereenroll, make_csr(key, "CN=slow-renew")),
                                       EnrollmentPending)
        self.assertEqual(err.retry_after, 7)
        rows = yield self.on_store(self.server.store.certificates.pending_requests, "pending")
        self.assertEqual([(r.operation, r.client) for r in rows], [("simplereenroll", "alice")])
        code, _, err_text = yield self.estctl("pending", "approve", str(rows[0].id))
        self.assertEqual(code, 0, err_text)
        cert = yield support.in_thread(client.simplereenroll, make_csr(key, "CN=slow-renew"))
        record = yield self.record(cert.serial_number)
        self.assertEqual(record.replaces, first.serial_number)

    @defer.inlineCallbacks
    def test_revoked_certificate_no_longer_authenticates(self):
        key, first = yield self.issue("CN=dev-rev")
        csr = make_csr(key, "CN=dev-rev")
        # Works before the revocation...
        client = self.client(label="certonly", client_cert=[first], client_key=key)
        renewed = yield support.in_thread(client.simplereenroll, csr)
        # ...estctl cert revoke (hex serial, as `cert list` shows it)...
        code, out, err = yield self.estctl("cert", "revoke", format(first.serial_number, "x"),
                                           "--reason", "keyCompromise")
        self.assertEqual(code, 0, err)
        self.assertIn("revoked", out)
        record = yield self.record(first.serial_number)
        self.assertTrue(record.revoked)
        self.assertEqual(record.revocation_reason, "keyCompromise")
        # ...and not after: 401, for re-enrollment and enrollment alike.
        for op in ("simplereenroll", "simpleenroll"):
            resp = yield self.assertRefused(401, "POST", self.path("certonly", op),
                                            {"Content-Type": "application/pkcs10"}, b64csr(csr),
                                            reason="client certificate revoked", client={"alice", "CN=dev-rev"},
                                            client_cert=[first], client_key=key)
            self.assertTrue(resp.header("www-authenticate"))
        # Store.revoke (what estctl calls) on the renewed one, over TLS 1.3.
        yield self.on_store(self.server.store.certificates.revoke, renewed.serial_number, "superseded")
        yield self.assertRefused(401, "POST", self.path("certonly", "simplereenroll"),
                                 {"Content-Type": "application/pkcs10"}, b64csr(csr),
                                 reason="client certificate revoked", client={"alice", "CN=dev-rev"},
                                 client_cert=[renewed], client_key=key, tls_version="1.3")


class LinkingTests(RaTestCase):

    @defer.inlineCallbacks
    def test_required_linking_refuses_csr_without_challenge_password(self):
        yield self.assertRefused(400, "POST", self.path("linked", "simpleenroll"), self.basic(),
                                 b64csr(make_csr(new_key(), "CN=unlinked")),
                                 reason="requires proof-of-possession linking")

    @defer.inlineCallbacks
    def test_linked_csr_accepted_tls12_and_tls13(self):
        for version in VERSIONS:
            client = self.basic_client("linked", tls_version=version)
            key = new_key()
            binding = yield support.in_thread(client.channel_binding)
            self.assertEqual(len(base64.b64decode(binding)), 12 if version == "1.2" else 32)
            cert = yield support.in_thread(client.enroll, key, f"CN=linked-{version}", link=True)
            self.assertEqual(client.conn.tls_version(), f"TLSv{version}")
            cert.verify_directly_issued_by(self.server.ca_cert)
            self.assertEqual(cert.public_key(), key.public_key())

    @defer.inlineCallbacks
    def test_linked_csr_accepted_where_linking_is_optional(self):
        for version in VERSIONS:
            client = self.basic_client(None, tls_version=version)
            cert = yield support.in_thread(client.enroll, new_key(), f"CN=optlinked-{version}", link=True)
            cert.verify_directly_issued_by(self.server.ca_cert)

    @defer.inlineCallbacks
    def test_binding_of_another_connection_is_refused(self):
        for label in ("linked", None):  # a challengePassword present is checked even where optional
            for version in VERSIONS:
                first = self.basic_client(label, tls_version=version)
                binding = yield support.in_thread(first.channel_binding)
                key = new_key()
                csr = make_csr(key, f"CN=stolen-{version}", challenge_password=binding)
                for other_version in VERSIONS:
                    yield self.assertRefused(
                        400, "POST", self.path(label, "simpleenroll"), self.basic(), b64csr(csr),
                        reason="challengePassword does not match this TLS session's channel binding",
                        tls_version=other_version)
                # On its own connection the very same CSR is good.
                cert = yield support.in_thread(first.simpleenroll, csr)
                self.assertEqual(cert.public_key(), key.public_key())

    @defer.inlineCallbacks
    def test_device_certificate_may_not_relay_another_sessions_binding(self):
        key, device = yield self.issue("CN=plain-device")
        other = self.basic_client("linked")
        binding = yield support.in_thread(other.channel_binding)
        csr = make_csr(new_key(), "CN=relayed", challenge_password=binding)
        yield self.assertRefused(400, "POST", self.path("linked", "simpleenroll"),
                                 {"Content-Type": "application/pkcs10"}, b64csr(csr),
                                 reason="does not match", client_cert=[device], client_key=key)

    @defer.inlineCallbacks
    def test_ra_certificate_may_send_another_sessions_binding(self):
        ra_key, ra_cert = yield self.issue("CN=Registration Authority", label="ra")
        eku = ra_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertIn(OID_CMC_RA, eku)
        self.assertIn(x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH, eku)
        for version in VERSIONS:
            device = self.basic_client("linked", tls_version=version)
            binding = yield support.in_thread(device.channel_binding)  # the device's session with the RA
            key = new_key()
            csr = make_csr(key, f"CN=via-ra-{version}", challenge_password=binding)
            ra = self.client(label="linked", client_cert=[ra_cert], client_key=ra_key, tls_version=version)
            cert = yield support.in_thread(ra.simpleenroll, csr)
            cert.verify_directly_issued_by(self.server.ca_cert)
            self.assertEqual(cert.public_key(), key.public_key())
            record = yield self.record(cert.serial_number)
            self.assertEqual(record.client, "alice")  # the RA acts for the client that enrolled it
            # An RA may also relay a CSR without linking on a linking label.
            cert2 = yield support.in_thread(ra.simpleenroll, make_csr(new_key(), f"CN=via-ra-nolink-{version}"))
            cert2.verify_directly_issued_by(self.server.ca_cert)


    def _raw_post(self, sock, path, body: bytes) -> tuple[int, bytes]:
        """POST on an already connected TLS socket (Connection: close); (status, body)."""
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
                f"Authorization: {BasicAuth('alice', PASSWORD).header()}\r\n"
                f"Content-Type: application/pkcs10\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        status_line, _, rest = data.partition(b"\r\n")
        return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]

    @defer.inlineCallbacks
    def test_tls_unique_from_stdlib_ssl_full_and_resumed_handshake(self):
        """Python's ssl module computes tls-unique itself (the client's Finished
        on a full handshake, the server's on a resumed one, RFC 5929 3.1): an
        independent check of the TLS 1.2 binding, both branches."""
        import socket
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=self.server.ca_cert.public_bytes(serialization.Encoding.PEM).decode())
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        path = self.path("linked", "simpleenroll")

        def enroll(session=None):
            raw = socket.create_connection(("127.0.0.1", self.server.port), timeout=20)
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as sock:
                binding = sock.get_channel_binding("tls-unique")
                csr = make_csr(new_key(), "CN=stdlib", challenge_password=base64.b64encode(binding).decode())
                status, body = self._raw_post(sock, path, b64csr(csr))
                return status, body, sock.session, sock.session_reused

        status, body, session, reused = yield support.in_thread(enroll)
        self.assertEqual((status, reused), (200, False), body)
        status, body, _, reused = yield support.in_thread(enroll, session)
        if not reused:
            raise unittest.SkipTest("the server did not resume the TLS 1.2 session")
        self.assertEqual(status, 200, body)

    @defer.inlineCallbacks
    def test_tls_exporter_from_openssl_s_client(self):
        """openssl s_client prints the RFC 9266 tls-exporter value itself
        (-keymatexport EXPORTER-Channel-Binding, 32 bytes, no context): an
        independent check of the TLS 1.3 binding."""
        if not support.have_tool("openssl"):
            raise unittest.SkipTest("openssl not installed")
        import subprocess
        import threading
        ca_file = self.server.appliance.config.path.parent / "s_client-ca.pem"
        ca_file.write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        path = self.path("linked", "simpleenroll")
        key = new_key()

        def go():
            proc = subprocess.Popen(
                ["openssl", "s_client", "-connect", f"127.0.0.1:{self.server.port}", "-tls1_3", "-CAfile",
                 str(ca_file), "-verify_return_error", "-keymatexport", "EXPORTER-Channel-Binding",
                 "-keymatexportlen", "32", "-ign_eof"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            killer = threading.Timer(20, proc.kill)
            killer.start()
            try:
                binding = None
                for line in iter(proc.stdout.readline, b""):
                    if line.strip().startswith(b"Keying material:"):
                        binding = bytes.fromhex(line.split(b":", 1)[1].strip().decode())
                        break
                if binding is None:
                    return None, b""
                csr = make_csr(key, "CN=s_client", challenge_password=base64.b64encode(binding).decode())
                body = b64csr(csr)
                proc.stdin.write((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  f"Authorization: {BasicAuth('alice', PASSWORD).header()}\r\n"
                                  f"Content-Type: application/pkcs10\r\nContent-Length: {len(body)}\r\n"
                                  "Connection: close\r\n\r\n").encode() + body)
                proc.stdin.close()
                out = proc.stdout.read()
                proc.wait()
                return binding, out
            finally:
                killer.cancel()

        binding, out = yield support.in_thread(go)
        self.assertIsNotNone(binding, "s_client printed no keying material")
        self.assertEqual(len(binding), 32)
        self.assertIn(b"HTTP/1.1 200", out, out[-500:])
        # s_client interleaves its own reports (session tickets) with the data.
        head, _, rest = out[out.index(b"HTTP/1.1 200"):].partition(b"\r\n\r\n")
        length = int(next(ln.split(b":", 1)[1] for ln in head.split(b"\r\n")
                          if ln.lower().startswith(b"content-length:")))
        cert = read_certs_only(decode_body(rest[:length]))[0]
        self.assertEqual(cert.public_key(), key.public_key())


class CsrAttrsTests(RaTestCase):

    @defer.inlineCallbacks
    def fetch(self, label, tls_version=None):
        """GET /csrattrs without credentials; fires with (response, DER)."""
        resp = yield self.raw("GET", self.path(label, "csrattrs"), tls_version=tls_version)
        self.assertEqual(resp.status, 200, resp.body)
        self.assertEqual(resp.header("content-type"), "application/csrattrs")
        body = b"".join(resp.body.split())
        der_bytes = base64.b64decode(body, validate=True)  # base64 (RFC 8951), not raw DER
        self.assertEqual(decode_body(resp.body), der_bytes)
        return resp, der_bytes

    @defer.inlineCallbacks
    def test_default_label(self):
        for version in VERSIONS:
            _, der_bytes = yield self.fetch(None, version)
            self.assertEqual(pyasn1_items(der_bytes), [("attr", OID_EC_PUBLIC_KEY, [OID_P256]),
                                                       ("oid", OID_ECDSA_SHA256)])
            hints = csrattrs.parse(der_bytes)
            self.assertFalse(hints.challenge_password)
            self.assertEqual(hints.key_type, "ec-p256")
            self.assertEqual(hints.signature_algorithm, "ecdsa-with-SHA256")
            self.assertEqual(hints.extensions, set())
        # No credentials needed, even where enrollment takes only Digest or certificates.
        for label in ("digest", "certonly", "manual"):
            _, der_bytes = yield self.fetch(label)
            self.assertEqual(pyasn1_items(der_bytes)[-1], ("oid", OID_ECDSA_SHA256))

    @defer.inlineCallbacks
    def test_linking_p384_and_required_san(self):
        _, der_bytes = yield self.fetch("p384")
        self.assertEqual(pyasn1_items(der_bytes), [
            ("oid", OID_CHALLENGE_PASSWORD),
            ("attr", OID_EC_PUBLIC_KEY, [OID_P384]),
            ("attr", OID_EXTENSION_REQUEST, [OID_SAN]),
            ("oid", OID_ECDSA_SHA384),
        ])
        hints = csrattrs.parse(der_bytes)
        self.assertTrue(hints.challenge_password)
        self.assertEqual(hints.key_type, "ec-p384")
        self.assertEqual(hints.signature_algorithm, "ecdsa-with-SHA384")
        self.assertEqual(hints.extensions, {OID_SAN})
        self.assertEqual(hints.oids, [OID_CHALLENGE_PASSWORD, OID_ECDSA_SHA384])

    @defer.inlineCallbacks
    def test_linking_label_with_default_profile(self):
        _, der_bytes = yield self.fetch("linked")
        self.assertEqual(pyasn1_items(der_bytes), [("oid", OID_CHALLENGE_PASSWORD),
                                                   ("attr", OID_EC_PUBLIC_KEY, [OID_P256]),
                                                   ("oid", OID_ECDSA_SHA256)])

    @defer.inlineCallbacks
    def test_rsa_profile(self):
        _, der_bytes = yield self.fetch("rsa")
        self.assertEqual(pyasn1_items(der_bytes), [("attr", OID_RSA, [2048]), ("oid", OID_SHA256_RSA)])
        hints = csrattrs.parse(der_bytes)
        self.assertEqual(hints.key_type, "rsa2048")
        self.assertEqual(hints.signature_algorithm, "sha256WithRSAEncryption")
        self.assertFalse(hints.challenge_password)

    @defer.inlineCallbacks
    def test_no_attributes_is_204(self):
        resp = yield self.raw("GET", self.path("quiet", "csrattrs"))
        self.assertEqual(resp.status, 204)
        self.assertEqual(resp.body, b"")
        self.assertIsNone(resp.header("content-length"))
        client = self.client(label="quiet")
        hints = yield support.in_thread(client.csrattrs)
        self.assertIsNone(hints)
        # The connection stays usable after a 204 without a body.
        certs = yield support.in_thread(client.cacerts)
        self.assertEqual(certs, [self.server.ca_cert])
        # And enrollment there works without any CSR attributes.
        client = self.basic_client("quiet")
        cert = yield support.in_thread(client.enroll, new_key(), "CN=quiet", link=None)
        cert.verify_directly_issued_by(self.server.ca_cert)

    @defer.inlineCallbacks
    def test_unknown_label_is_404(self):
        resp = yield self.raw("GET", self.path("nosuchlabel", "csrattrs"))
        self.assertEqual(resp.status, 404)
        self.assertIn(b"no such CA label", resp.body)

    @defer.inlineCallbacks
    def test_client_builds_conforming_csr_from_csrattrs(self):
        for version in VERSIONS:
            client = self.basic_client("p384", tls_version=version)
            hints = yield support.in_thread(client.csrattrs)
            key = new_key(hints.key_type)
            dns = ("auto.example",) if OID_SAN in hints.extensions else ()
            cert = yield support.in_thread(client.enroll, key, f"CN=auto-{version}", dns_names=dns, link=None)
            cert.verify_directly_issued_by(self.server.ca_cert)
            self.assertEqual(cert.public_key(), key.public_key())
            self.assertEqual(san_dns(cert), ["auto.example"])
        # The same client told not to link is refused there: the hint mattered.
        client = self.basic_client("p384")
        err = yield self.assertFailure(
            support.in_thread(client.enroll, new_key("ec-p384"), "CN=nolink", dns_names=("x.example",), link=False),
            EstClientError)
        self.assertEqual(err.status, 400)

    @defer.inlineCallbacks
    def test_client_csr_signature_follows_csrattrs(self):
        """The CSR our client builds from /csrattrs uses the signature algorithm
        listed there (P-521 with SHA-512)."""
        for label, expected in (("p384", OID_ECDSA_SHA384), ("rsa", OID_SHA256_RSA), (None, OID_ECDSA_SHA256),
                                ("p521", "1.2.840.10045.4.3.4")):
            client = self.basic_client(label)
            hints = yield support.in_thread(client.csrattrs)
            sent = []
            post = client._post_csr
            client._post_csr = lambda op, csr, post=post: sent.append(csr) or post(op, csr)
            dns = ("sig.example",) if OID_SAN in hints.extensions else ()
            yield support.in_thread(client.enroll, new_key(hints.key_type), "CN=sig", dns_names=dns, link=None)
            self.assertEqual(csrattrs.OIDS[hints.signature_algorithm], expected)
            self.assertEqual(sent[0].signature_algorithm_oid.dotted_string, expected,
                             f"label {label}: csrattrs asks {hints.signature_algorithm}")

    @defer.inlineCallbacks
    def test_client_follows_rsa_hint(self):
        client = self.basic_client("rsa")
        hints = yield support.in_thread(client.csrattrs)
        key = new_key(hints.key_type)
        cert = yield support.in_thread(client.enroll, key, "CN=rsa-auto", link=None)
        self.assertEqual(cert.public_key().key_size, 2048)


class ApprovalTests(RaTestCase):

    def pending_rows(self, state=None):
        return self.on_store(self.server.store.certificates.pending_requests, state)

    @defer.inlineCallbacks
    def post_manual(self, csr, expect):
        resp = yield self.raw("POST", self.path("manual", "simpleenroll"), self.basic(), b64csr(csr))
        self.assertEqual(resp.status, expect, resp.body)
        return resp

    @defer.inlineCallbacks
    def test_manual_approval_full_flow_with_estctl(self):
        key = new_key()
        first_csr = make_csr(key, "CN=waiting,O=Example")
        before = yield self.count()
        resp = yield self.post_manual(first_csr, 202)
        self.assertEqual(resp.header("retry-after"), "7")
        # Empty, as Bouncy Castle's client needs (it closes a 202 unread).
        self.assertEqual((resp.body, resp.header("content-length")), (b"", "0"))
        rows = yield self.pending_rows()
        self.assertEqual(len(rows), 1)
        row = rows[0]
        self.assertEqual((row.label, row.client, row.operation, row.subject, row.state),
                         ("manual", "alice", "simpleenroll", "CN=waiting,O=Example", "pending"))
        self.assertEqual(row.request, der(first_csr))
        self.assertEqual((yield self.count()), before)
        events = yield self.on_store(self.server.store.audit.events, 1)
        self.assertEqual((events[0].client, events[0].outcome), ("alice", "pending"))

        # Asking again before a decision: still 202, no second row.
        yield self.post_manual(make_csr(key, "CN=waiting,O=Example"), 202)
        self.assertEqual(len((yield self.pending_rows(None))), 1)

        code, out, err = yield self.estctl("pending", "list")
        self.assertEqual(code, 0, err)
        self.assertIn(f"{row.id}\tpending", out)
        self.assertIn("CN=waiting,O=Example", out)
        code, out, err = yield self.estctl("pending", "approve", str(row.id))
        self.assertEqual(code, 0, err)
        self.assertIn("approved", out)
        code, out, err = yield self.estctl("pending", "list")
        self.assertNotIn("CN=waiting", out)

        # The repeat (a new CSR: same key, same subject) gets the certificate.
        resp = yield self.post_manual(make_csr(key, "CN=waiting,O=Example"), 200)
        certs = read_certs_only(decode_body(resp.body))
        self.assertEqual(len(certs), 1)
        cert = certs[0]
        cert.verify_directly_issued_by(self.server.ca_cert)
        self.assertEqual(cert.public_key(), key.public_key())
        self.assertEqual(cert.subject.rfc4514_string(), "CN=waiting,O=Example")
        rows = yield self.pending_rows(None)
        self.assertEqual([(r.state, r.serial) for r in rows], [("issued", cert.serial_number)])
        self.assertEqual((yield self.count()), before + 1)

        # And again: the same certificate, nothing new issued.
        resp = yield self.post_manual(make_csr(key, "CN=waiting,O=Example"), 200)
        self.assertEqual(read_certs_only(decode_body(resp.body)), [cert])
        self.assertEqual((yield self.count()), before + 1)

        code, out, err = yield self.estctl("pending", "list", "--all")
        self.assertIn(f"{row.id}\tissued", out)
        # Deciding twice is refused by estctl.
        code, out, err = yield self.estctl("pending", "approve", str(row.id))
        self.assertNotEqual(code, 0)
        self.assertIn(f"no pending request {row.id}", err)

    @defer.inlineCallbacks
    def test_rejected_request_is_403(self):
        key = new_key()
        yield self.post_manual(make_csr(key, "CN=unwanted"), 202)
        rows = yield self.pending_rows()
        code, out, err = yield self.estctl("pending", "reject", str(rows[0].id))
        self.assertEqual(code, 0, err)
        self.assertIn("rejected", out)
        for _ in range(2):
            yield self.assertRefused(403, "POST", self.path("manual", "simpleenroll"), self.basic(),
                                     b64csr(make_csr(key, "CN=unwanted")), reason="rejected by an operator")
        rows = yield self.pending_rows(None)
        self.assertEqual([r.state for r in rows], ["rejected"])

    @defer.inlineCallbacks
    def test_another_subject_for_the_same_key_is_a_new_request(self):
        key = new_key()
        yield self.post_manual(make_csr(key, "CN=one"), 202)
        rows = yield self.pending_rows()
        yield self.on_store(self.server.store.certificates.decide_pending, rows[0].id, True)
        yield self.post_manual(make_csr(key, "CN=two"), 202)  # not covered by the approval of CN=one
        rows = yield self.pending_rows(None)
        self.assertEqual([(r.subject, r.state) for r in rows], [("CN=one", "approved"), ("CN=two", "pending")])

    @defer.inlineCallbacks
    def test_approval_survives_a_later_request_for_the_same_key(self):
        """Two requests for one key (two subjects) wait; the operator approves
        the first; the first's repeat must get its certificate, not file a
        third request."""
        key = new_key()
        yield self.post_manual(make_csr(key, "CN=first-subject"), 202)
        yield self.post_manual(make_csr(key, "CN=second-subject"), 202)
        rows = yield self.pending_rows()
        first = next(r for r in rows if r.subject == "CN=first-subject")
        yield self.on_store(self.server.store.certificates.decide_pending, first.id, True)
        yield self.post_manual(make_csr(key, "CN=first-subject"), 200)
        rows = yield self.pending_rows(None)
        self.assertEqual(len(rows), 2, [(r.id, r.subject, r.state) for r in rows])

    @defer.inlineCallbacks
    def test_client_enroll_follows_202_until_approved(self):
        sleeps = []
        store = self.server.store

        def approve_meanwhile(seconds):
            sleeps.append(seconds)
            rows = threads.blockingCallFromThread(reactor, on_store_thread, store.certificates.pending_requests, "pending")
            for r in rows:
                if r.subject == "CN=patient":
                    threads.blockingCallFromThread(reactor, on_store_thread, store.certificates.decide_pending, r.id, True)

        for version in VERSIONS:
            del sleeps[:]
            client = self.basic_client("manual", tls_version=version)
            key = new_key()
            cert = yield support.in_thread(client.enroll, key, "CN=patient", max_polls=3, sleep=approve_meanwhile)
            self.assertEqual(sleeps, [7])
            self.assertEqual(cert.public_key(), key.public_key())
            cert.verify_directly_issued_by(self.server.ca_cert)

    @defer.inlineCallbacks
    def test_client_enroll_gives_up_after_max_polls(self):
        sleeps = []
        client = self.basic_client("manual")
        err = yield self.assertFailure(
            support.in_thread(client.enroll, new_key(), "CN=never", max_polls=2, sleep=sleeps.append),
            EnrollmentPending)
        self.assertEqual(err.retry_after, 7)
        self.assertEqual(sleeps, [7, 7])
        self.assertEqual(len((yield self.pending_rows())), 1)

    @defer.inlineCallbacks
    def test_approved_request_issued_once_under_concurrent_repeats(self):
        """Two repeats of one approved request racing each other: one approval,
        one certificate, given to both. The token is made slow (as RSA-3072 or a busy HSM is) so that the
        race is lost every time rather than most times."""
        key = new_key()
        yield self.post_manual(make_csr(key, "CN=racing"), 202)
        rows = yield self.pending_rows()
        yield self.on_store(self.server.store.certificates.decide_pending, rows[0].id, True)
        ca = self.server.appliance.ca
        issue = ca.issue
        ca.issue = lambda req: task.deferLater(reactor, 0.3, issue, req)
        self.addCleanup(lambda: ca.__dict__.pop("issue", None))
        before = yield self.count()
        responses = yield defer.gatherResults(
            [self.raw("POST", self.path("manual", "simpleenroll"), self.basic(),
                      b64csr(make_csr(key, "CN=racing"))) for _ in range(2)], consumeErrors=True)
        self.assertEqual([r.status for r in responses], [200] * 2)
        serials = {read_certs_only(decode_body(r.body))[0].serial_number for r in responses}
        after = yield self.count()
        self.assertEqual((len(serials), after - before), (1, 1),
                         f"one approval issued {after - before} certificates")


def _mac_has_colon(nonce: str) -> bool:
    """Whether a nonce of ra.digest's format (urlsafe base64 of
    ``stamp:random:MAC16``) has a ':' byte in its 16-byte MAC."""
    try:
        raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    except ValueError:
        return False
    return len(raw) > 16 and b":" in raw[-16:]


class DigestTests(RaTestCase):

    @defer.inlineCallbacks
    def test_every_issued_nonce_is_usable(self):
        """A correct answer to any nonce the server issued is accepted, also
        when the nonce's binary 16-byte MAC happens to contain ':' (0x3a),
        as about 6% do."""
        path = self.path("digest", "simpleenroll")

        def find_and_answer():
            with HttpsConnection("127.0.0.1", self.server.port, anchors=[self.server.ca_cert]) as conn:
                challenges = None
                for _ in range(400):
                    challenges = conn.request("POST", path, {"Content-Type": "application/pkcs10"}) \
                        .header_values("www-authenticate")
                    if _mac_has_colon(parse_authorization(challenges[0])["nonce"]):
                        break
                auth = DigestAuth("alice", PASSWORD)
                auth.use_challenge(challenges)
                resp = conn.request("POST", path, {"Authorization": auth.header("POST", path),
                                                   "Content-Type": "application/pkcs10"},
                                    b64csr(make_csr(new_key(), "CN=any-nonce")))
                return auth._challenge["nonce"], resp

        nonce, resp = yield support.in_thread(find_and_answer)
        self.assertEqual(resp.status, 200, f"nonce {nonce}: {resp.body!r}")

    @defer.inlineCallbacks
    def test_credentials_from_estctl_are_sealed_and_answer_both_algorithms(self):
        """``estctl client add``: the store holds the H(A1)s sealed by the
        token, never in clear, and the server opens them to check a SHA-256
        and an MD5 Digest answer; ``estctl client passwd`` changes them at once."""
        secret = Path(self.mktemp())
        secret.write_text("sealed-pass")
        code, out, err = yield self.estctl("client", "add", "sealy", "--password-file", str(secret), "--labels", "*")
        self.assertEqual(code, 0, err)
        record = yield on_store_thread(self.server.store.clients.client, "sealy")
        clear = ha1_all("sealy", self.realm, "sealed-pass")
        self.assertEqual(set(record.digest_ha1), {"SHA-256", "MD5"})
        for alg, stored in record.digest_ha1.items():
            self.assertTrue(stored.startswith("sealed:"), stored)
            self.assertNotIn(clear[alg], stored)
        path = self.path("digest", "simpleenroll")

        def answer(algorithm: str, password: str) -> int:
            with HttpsConnection("127.0.0.1", self.server.port, anchors=[self.server.ca_cert]) as conn:
                challenges = conn.request("POST", path, {"Content-Type": "application/pkcs10"}) \
                    .header_values("www-authenticate")
                auth = DigestAuth("sealy", password)
                auth.use_challenge([c for c in challenges if c.startswith("Digest")
                                    and ("algorithm=SHA-256" in c) == (algorithm == "SHA-256")])
                return conn.request("POST", path, {"Authorization": auth.header("POST", path),
                                                   "Content-Type": "application/pkcs10"},
                                    b64csr(make_csr(new_key(), f"CN=sealed-{algorithm}"))).status
        for alg in ("SHA-256", "MD5"):
            self.assertEqual((yield support.in_thread(answer, alg, "sealed-pass")), 200, alg)
        secret.write_text("new-pass")
        code, out, err = yield self.estctl("client", "passwd", "sealy", "--password-file", str(secret))
        self.assertEqual(code, 0, err)
        self.assertEqual((yield support.in_thread(answer, "SHA-256", "sealed-pass")), 401)
        self.assertEqual((yield support.in_thread(answer, "SHA-256", "new-pass")), 200)

    @defer.inlineCallbacks
    def test_client_digest_sha256(self):
        for version in VERSIONS:
            auth = DigestAuth("alice", PASSWORD)
            client = self.client(label="digest", auth=auth, tls_version=version)
            key = new_key()
            cert = yield support.in_thread(client.simpleenroll, make_csr(key, f"CN=digest-{version}"))
            self.assertEqual(auth._challenge.get("algorithm"), "SHA-256")
            # The nonce is reused on the same connection with a growing count.
            cert2 = yield support.in_thread(client.simpleenroll, make_csr(new_key(), f"CN=digest2-{version}"))
            self.assertEqual(auth._nc, 2)
            for c in (cert, cert2):
                c.verify_directly_issued_by(self.server.ca_cert)
                record = yield self.record(c.serial_number)
                self.assertEqual(record.client, "alice")

    @defer.inlineCallbacks
    def test_digest_with_linked_csr(self):
        for version in VERSIONS:
            client = self.client(label="linked", auth=DigestAuth("alice", PASSWORD), tls_version=version)
            cert = yield support.in_thread(client.enroll, new_key(), f"CN=digest-linked-{version}", link=None)
            cert.verify_directly_issued_by(self.server.ca_cert)

    @defer.inlineCallbacks
    def test_challenges_sha256_then_md5_then_basic(self):
        resp = yield self.assertRefused(401, "POST", self.path("digest", "simpleenroll"),
                                        {"Content-Type": "application/pkcs10"},
                                        b64csr(make_csr(new_key(), "CN=x")), client=None)
        values = resp.header_values("www-authenticate")
        self.assertEqual(len(values), 2, values)
        self.assertTrue(values[0].startswith("Digest ") and "algorithm=SHA-256" in values[0], values)
        # MD5 is said by leaving algorithm out (RFC 7616 3.3), every value quoted.
        self.assertTrue(values[1].startswith("Digest ") and "algorithm" not in values[1], values)
        for v in values:
            self.assertIn(f'realm="{self.realm}"', v)
            self.assertIn('qop="auth"', v)

        def schemes(label):
            d = self.raw("POST", self.path(label, "simpleenroll"), {"Content-Type": "application/pkcs10"},
                         b64csr(make_csr(new_key(), "CN=x")))
            return d.addCallback(lambda r: [" ".join(v.split()[:1] + [a for a in ("SHA-256",) if a in v])
                                            for v in r.header_values("www-authenticate")])
        # Compatible order (the default): Basic first, for clients that read
        # only the first challenge; strict: Digest, strongest first.
        self.assertEqual((yield schemes("digestbasic")), ["Basic", "Digest SHA-256", "Digest"])
        self.assertEqual((yield schemes("digeststrict")), ["Digest SHA-256", "Digest", "Basic"])
        self.assertEqual((yield schemes("digestmd5")), ["Digest"])

    @defer.inlineCallbacks
    def test_label_refuses_a_digest_algorithm_it_does_not_offer(self):
        path = self.path("digestmd5", "simpleenroll")
        resp = yield self.raw("POST", self.path("digest", "simpleenroll"), {"Content-Type": "application/pkcs10"})
        auth = DigestAuth("alice", PASSWORD)
        self.assertTrue(auth.use_challenge(resp.header_values("www-authenticate")[:1]))  # SHA-256
        yield self.assertRefused(401, "POST", path, {"Authorization": auth.header("POST", path),
                                                     "Content-Type": "application/pkcs10"},
                                 b64csr(make_csr(new_key(), "CN=x")), reason="wrong username or password")
        md5 = DigestAuth("alice", PASSWORD)
        self.assertTrue(md5.use_challenge(resp.header_values("www-authenticate")[1:]))
        resp = yield self.raw("POST", path, {"Authorization": md5.header("POST", path),
                                             "Content-Type": "application/pkcs10"},
                              b64csr(make_csr(new_key(), "CN=md5-only")))
        self.assertEqual(resp.status, 200, resp.body)

    @defer.inlineCallbacks
    def test_digest_uri_without_the_label_as_libest_signs_it(self):
        """libest answers for /.well-known/est/simpleenroll even when it asks
        under a label: accepted for that request, not for another operation."""
        path = self.path("digestmd5", "simpleenroll")
        resp = yield self.raw("POST", path, {"Content-Type": "application/pkcs10"})
        auth = DigestAuth("alice", PASSWORD)
        self.assertTrue(auth.use_challenge(resp.header_values("www-authenticate")))
        key = new_key()
        resp = yield self.raw("POST", path, {"Authorization": auth.header("POST", "/.well-known/est/simpleenroll"),
                                             "Content-Type": "application/pkcs10"},
                              b64csr(make_csr(key, "CN=libest-label")))
        self.assertEqual(resp.status, 200, resp.body)
        self.assertEqual(read_certs_only(decode_body(resp.body))[0].public_key(), key.public_key())
        yield self.assertRefused(401, "POST", path,
                                 {"Authorization": auth.header("POST", "/.well-known/est/simplereenroll"),
                                  "Content-Type": "application/pkcs10"},
                                 b64csr(make_csr(new_key(), "CN=x")), reason="wrong username or password")

    @defer.inlineCallbacks
    def test_wrong_password_is_401(self):
        client = self.client(label="digest", auth=DigestAuth("alice", "wrong"))
        err = yield self.assertFailure(support.in_thread(client.simpleenroll, make_csr(new_key(), "CN=x")),
                                       EstClientError)
        self.assertEqual(err.status, 401)
        events = yield self.on_store(self.server.store.audit.events, 1)
        self.assertEqual(events[0].client, "alice")
        self.assertIn("wrong username or password", events[0].detail)
        client = self.client(label="digest", auth=DigestAuth("mallory", PASSWORD))
        err = yield self.assertFailure(support.in_thread(client.simpleenroll, make_csr(new_key(), "CN=x")),
                                       EstClientError)
        self.assertEqual(err.status, 401)

    @defer.inlineCallbacks
    def test_digest_client_outside_its_labels_is_403(self):
        client = self.client(label="digest", auth=DigestAuth("bob", PASSWORD))
        err = yield self.assertFailure(support.in_thread(client.simpleenroll, make_csr(new_key(), "CN=x")),
                                       EstClientError)
        self.assertEqual(err.status, 403)

    @defer.inlineCallbacks
    def test_replayed_authorization_is_refused(self):
        path = self.path("digest", "simpleenroll")
        resp = yield self.raw("POST", path, {"Content-Type": "application/pkcs10"})
        self.assertEqual(resp.status, 401)
        auth = DigestAuth("alice", PASSWORD)
        self.assertTrue(auth.use_challenge(resp.header_values("www-authenticate")))
        header = auth.header("POST", path)
        headers = {"Authorization": header, "Content-Type": "application/pkcs10"}
        resp = yield self.raw("POST", path, headers, b64csr(make_csr(new_key(), "CN=once")))
        self.assertEqual(resp.status, 200, resp.body)
        # The captured header again (same nonce, same nc), on a new connection.
        resp = yield self.assertRefused(401, "POST", path, headers, b64csr(make_csr(new_key(), "CN=twice")),
                                        reason="nonce expired or reused")
        self.assertTrue(any("stale=true" in v for v in resp.header_values("www-authenticate")))
        # A lower count is a replay too; a higher one is fine.
        resp = yield self.assertRefused(401, "POST", path,
                                        {"Authorization": header.replace("nc=00000001", "nc=00000000"),
                                         "Content-Type": "application/pkcs10"},
                                        b64csr(make_csr(new_key(), "CN=lower")), client="alice")
        resp = yield self.raw("POST", path, {"Authorization": auth.header("POST", path),
                                             "Content-Type": "application/pkcs10"},
                              b64csr(make_csr(new_key(), "CN=next")))
        self.assertEqual(resp.status, 200, resp.body)

    @defer.inlineCallbacks
    def test_curl_wrong_password_is_401(self):
        if not support.have_tool("curl"):
            raise unittest.SkipTest("curl not installed")
        ca_file = self.server.appliance.config.path.parent / "curl-ca.pem"
        ca_file.write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        result = yield support.run_tool(
            "curl", "-sS", "--digest", "-u", "alice:wrong", "--cacert", str(ca_file),
            "-H", "Content-Type: application/pkcs10", "--data-binary", b64csr(make_csr(new_key(), "CN=c")).decode(),
            "-o", "/dev/null", "-w", "%{http_code}", f"{self.server.url}{self.path('digest', 'simpleenroll')}",
            timeout=30)
        self.assertEqual(result.stdout.decode(), "401", result.stderr)

    @defer.inlineCallbacks
    def test_md5_digest_as_libest_sends_it(self):
        """The MD5 challenge answered (with and without an algorithm parameter,
        which then defaults to MD5, RFC 7616 3.3)."""
        path = self.path("digest", "simpleenroll")
        resp = yield self.raw("POST", path, {"Content-Type": "application/pkcs10"})
        md5 = [v for v in resp.header_values("www-authenticate") if "algorithm" not in v]
        self.assertEqual(len(md5), 1)
        auth = DigestAuth("alice", PASSWORD)
        self.assertTrue(auth.use_challenge(md5))
        for strip in (False, True):
            header = auth.header("POST", path)
            self.assertIn("algorithm=MD5", header)
            if strip:
                header = header.replace(", algorithm=MD5", "")
            key = new_key()
            resp = yield self.raw("POST", path, {"Authorization": header, "Content-Type": "application/pkcs10"},
                                  b64csr(make_csr(key, f"CN=md5-{strip}")))
            self.assertEqual(resp.status, 200, resp.body)
            cert = read_certs_only(decode_body(resp.body))[0]
            self.assertEqual(cert.public_key(), key.public_key())

    @defer.inlineCallbacks
    def test_digest_header_for_another_uri_is_refused(self):
        path = self.path("digest", "simpleenroll")
        resp = yield self.raw("POST", path, {"Content-Type": "application/pkcs10"})
        auth = DigestAuth("alice", PASSWORD)
        auth.use_challenge(resp.header_values("www-authenticate"))
        header = auth.header("POST", self.path("digest", "simplereenroll"))
        yield self.assertRefused(401, "POST", path, {"Authorization": header, "Content-Type": "application/pkcs10"},
                                 b64csr(make_csr(new_key(), "CN=x")), reason="wrong username or password")

    @defer.inlineCallbacks
    def test_curl_digest_md5(self):
        if not support.have_tool("curl"):
            raise unittest.SkipTest("curl not installed")
        state = self.server.appliance.config.path.parent
        ca_file = state / "curl-ca.pem"
        ca_file.write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        key = new_key()
        csr_file = state / "curl.csr.b64"
        csr_file.write_bytes(b64csr(make_csr(key, "CN=curl-digest")))
        out_file = state / "curl.out"
        result = yield support.run_tool(
            "curl", "-sS", "-v", "--digest", "-u", f"alice:{PASSWORD}", "--cacert", str(ca_file),
            "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{csr_file}",
            "-o", str(out_file), "-w", "%{http_code}",
            f"{self.server.url}{self.path('digest', 'simpleenroll')}", timeout=30)
        verbose = result.stderr.decode("utf-8", "replace")
        self.assertEqual(result.stdout.decode(), "200", verbose)
        auth_lines = [ln for ln in verbose.splitlines() if ln.startswith("> Authorization: Digest")]
        self.assertTrue(auth_lines, verbose)
        # curl 7.88 answers the first Digest challenge it understands, which
        # the server makes SHA-256 (RFC 7616 3.7); MD5 is checked by hand below.
        self.assertRegex(auth_lines[-1], r"algorithm=(SHA-256|MD5)")
        certs = read_certs_only(decode_body(out_file.read_bytes()))
        self.assertEqual(len(certs), 1)
        certs[0].verify_directly_issued_by(self.server.ca_cert)
        self.assertEqual(certs[0].public_key(), key.public_key())
        record = yield self.record(certs[0].serial_number)
        self.assertEqual(record.client, "alice")


class NamePolicyTests(RaTestCase):

    @defer.inlineCallbacks
    def test_subject_template_rewrites_subject(self):
        client = self.basic_client("tmpl")
        cert = yield support.in_thread(client.simpleenroll,
                                       make_csr(new_key(), "CN=dev-7,OU=Sales,O=Evil Corp", dns_names=("d.example",)))
        self.assertEqual(cert.subject.rfc4514_string(), "CN=dev-7,O=Example")
        self.assertEqual(san_dns(cert), ["d.example"])
        record = yield self.record(cert.serial_number)
        self.assertEqual(record.subject, "CN=dev-7,O=Example")

    @defer.inlineCallbacks
    def test_subject_template_with_client_name(self):
        client = self.basic_client("tmplclient")
        cert = yield support.in_thread(client.simpleenroll, make_csr(new_key(), "CN=whatever-i-ask"))
        self.assertEqual(cert.subject.rfc4514_string(), "CN=alice")

    @defer.inlineCallbacks
    def test_subject_template_missing_rdn_is_refused(self):
        yield self.assertRefused(400, "POST", self.path("tmpl", "simpleenroll"), self.basic(),
                                 b64csr(make_csr(new_key(), "O=NoCommonName")),
                                 reason="profile 'tmpl' needs 'CN' in the CSR subject")

    @defer.inlineCallbacks
    def test_required_rdn_refused(self):
        yield self.assertRefused(400, "POST", self.path("rules", "simpleenroll"), self.basic(),
                                 b64csr(make_csr(new_key(), "CN=dev-1", dns_names=("a.example.com",))),
                                 reason="profile 'rules' requires O in the subject")

    @defer.inlineCallbacks
    def test_name_patterns_refused_with_rule_named(self):
        cases = [
            (("CN=laptop,O=Example", ("a.example.com",)), "CN 'laptop' does not match the pattern of profile 'rules'"),
            (("CN=dev-12x,O=Example", ()), "CN 'dev-12x' does not match the pattern"),  # whole value must match
            (("CN=dev-1,O=Example", ("a.example.com", "evil.org")),
             "DNS 'evil.org' does not match the pattern of profile 'rules'"),
        ]
        for (subject, dns), reason in cases:
            yield self.assertRefused(400, "POST", self.path("rules", "simpleenroll"), self.basic(),
                                     b64csr(make_csr(new_key(), subject, dns_names=dns)), reason=reason)

    @defer.inlineCallbacks
    def test_conforming_names_accepted(self):
        client = self.basic_client("rules")
        cert = yield support.in_thread(client.simpleenroll,
                                       make_csr(new_key(), "CN=dev-42,O=Example", dns_names=("dev-42.example.com",)))
        self.assertEqual(cert.subject.rfc4514_string(), "CN=dev-42,O=Example")

    @defer.inlineCallbacks
    def test_required_extension_refused(self):
        binding_client = self.basic_client("p384")
        binding = yield support.in_thread(binding_client.channel_binding)
        csr = make_csr(new_key("ec-p384"), "CN=nosan", challenge_password=binding)
        resp = yield support.in_thread(binding_client.conn.request, "POST", self.path("p384", "simpleenroll"),
                                       self.basic(), b64csr(csr))
        self.assertEqual(resp.status, 400, resp.body)
        self.assertIn(b"profile 'p384' requires the subjectAltName extension", resp.body)
        events = yield self.on_store(self.server.store.audit.events, 1)
        self.assertEqual(events[0].client, "alice")

    @defer.inlineCallbacks
    def test_key_type_refused_with_rule_named(self):
        yield self.assertRefused(400, "POST", self.path("rsa", "simpleenroll"), self.basic(),
                                 b64csr(make_csr(new_key("ec-p384"), "CN=x")),
                                 reason="key type ec-p384 not allowed by profile 'rsa'")
