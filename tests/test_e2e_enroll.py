"""End to end through TLS on 127.0.0.1, with a real SoftHSM2 token: /cacerts,
/simpleenroll, authentication, labels, and every refusal the foundation owns."""
from __future__ import annotations

import base64
import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import BasicAuth, EstClient, EstClientError, make_csr, new_key
from estappliance.pki.cms import read_certs_only
from estappliance.pki.encoding import decode_body

from . import support

PASSWORD = "correct horse"


def csr_der(subject="CN=device-1", key=None, **kw) -> bytes:
    key = key or new_key("ec-p256")
    return make_csr(key, subject, **kw).public_bytes(serialization.Encoding.DER)


class EnrollTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(
            self, labels={"iot": {"profile": "default", "auth": ["basic"]},
                          "certonly": {"auth": ["cert"]}})
        yield self.server.add_client("alice", PASSWORD, labels=("default",))
        yield self.server.add_client("bob", PASSWORD, labels=("*",))

    def client(self, **kw) -> EstClient:
        return self.server.client(**kw)

    def raw(self, method, path, headers=None, body=b"", **kw):
        """One raw HTTP exchange, for what our own client would never send."""
        return self.server.raw(method, path, headers, body, **kw)

    def basic(self, user="alice", password=PASSWORD):
        return {"Authorization": BasicAuth(user, password).header()}

    # -- /cacerts -----------------------------------------------------------------

    @defer.inlineCallbacks
    def test_cacerts_without_authentication(self):
        resp = yield self.raw("GET", "/.well-known/est/cacerts")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-type"), "application/pkcs7-mime")
        self.assertEqual(resp.header("content-transfer-encoding"), "base64")
        certs = read_certs_only(decode_body(resp.body))
        self.assertEqual(certs, [self.server.ca_cert])

    @defer.inlineCallbacks
    def test_cacerts_under_a_label_and_with_client(self):
        certs = yield support.in_thread(self.client(label="iot").cacerts)
        self.assertEqual(certs, [self.server.ca_cert])

    # -- /simpleenroll ---------------------------------------------------------------

    @defer.inlineCallbacks
    def test_enroll_with_basic_auth(self):
        key = new_key("ec-p256")
        csr = make_csr(key, "CN=device-1,O=Example", dns_names=("device-1.example",))
        client = self.client(auth=BasicAuth("alice", PASSWORD))
        cert = yield support.in_thread(client.simpleenroll, csr)
        client.close()
        self.assertEqual(cert.subject, csr.subject)
        self.assertEqual(cert.public_key(), key.public_key())
        self.assertEqual(cert.issuer, self.server.ca_cert.subject)
        cert.verify_directly_issued_by(self.server.ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["device-1.example"])
        self.assertGreaterEqual(cert.serial_number.bit_length(), 64)
        record = yield support.in_thread(self.server.store.certificates.certificate, cert.serial_number)
        self.assertEqual(record.client, "alice")
        self.assertEqual(record.der, cert.public_bytes(serialization.Encoding.DER))

    @defer.inlineCallbacks
    def test_enroll_response_wire_format(self):
        resp = yield self.raw("POST", "/.well-known/est/simpleenroll",
                              {**self.basic(), "Content-Type": "application/pkcs10"},
                              base64.b64encode(csr_der()))
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-type"), "application/pkcs7-mime; smime-type=certs-only")
        self.assertEqual(resp.header("content-transfer-encoding"), "base64")
        self.assertEqual(int(resp.header("content-length")), len(resp.body))
        self.assertEqual(len(read_certs_only(decode_body(resp.body))), 1)

    @defer.inlineCallbacks
    def test_enroll_accepts_wrapped_base64_and_raw_der(self):
        der = csr_der()
        for body, cte in ((base64.encodebytes(der), "base64"), (der, "binary"),
                          (base64.b64encode(der), None)):
            headers = {**self.basic(), "Content-Type": "application/pkcs10"}
            if cte:
                headers["Content-Transfer-Encoding"] = cte
            resp = yield self.raw("POST", "/.well-known/est/simpleenroll", headers, body)
            self.assertEqual(resp.status, 200, resp.body)

    @defer.inlineCallbacks
    def test_enroll_with_client_certificate(self):
        key = new_key("ec-p256")
        first = yield support.in_thread(self.client(auth=BasicAuth("bob", PASSWORD)).simpleenroll,
                                        make_csr(key, "CN=device-2"))
        client = self.client(client_cert=[first], client_key=key, label="certonly")
        cert = yield support.in_thread(client.simpleenroll, make_csr(new_key(), "CN=device-2b"))
        client.close()
        cert.verify_directly_issued_by(self.server.ca_cert)
        record = yield support.in_thread(self.server.store.certificates.certificate, cert.serial_number)
        self.assertEqual(record.client, "bob")  # the device acts for its enroller

    @defer.inlineCallbacks
    def test_device_certificate_stays_within_its_enrollers_labels(self):
        key = new_key("ec-p256")
        first = yield support.in_thread(self.client(auth=BasicAuth("alice", PASSWORD)).simpleenroll,
                                        make_csr(key, "CN=device-3"))
        client = self.client(client_cert=[first], client_key=key, label="certonly")
        err = yield self.assertFailure(support.in_thread(client.simpleenroll, make_csr(new_key(), "CN=d3b")),
                                       EstClientError)
        client.close()
        self.assertEqual(err.status, 403)

    @defer.inlineCallbacks
    def test_enroll_over_tls12_and_tls13(self):
        for version in ("1.2", "1.3"):
            client = self.client(auth=BasicAuth("alice", PASSWORD), tls_version=version)
            cert = yield support.in_thread(client.simpleenroll, make_csr(new_key(), f"CN=tls{version}"))
            self.assertEqual(client.conn.tls_version(), f"TLSv{version}")
            client.close()
            self.assertEqual(cert.subject.rfc4514_string(), f"CN=tls{version}")

    @defer.inlineCallbacks
    def test_rsa_and_p384_keys(self):
        for key_type in ("rsa2048", "ec-p384"):
            key = new_key(key_type)
            client = self.client(auth=BasicAuth("alice", PASSWORD))
            cert = yield support.in_thread(client.simpleenroll, make_csr(key, f"CN={key_type}"))
            client.close()
            self.assertEqual(cert.public_key(), key.public_key())

    @defer.inlineCallbacks
    def test_concurrent_enrollments_all_valid_and_unique(self):
        """Many clients at once: the single PKCS#11 thread keeps every signature good."""
        n = 48

        def enroll(i):
            with self.client(auth=BasicAuth("alice", PASSWORD)) as client:
                return client.simpleenroll(make_csr(new_key(), f"CN=concurrent-{i}"))
        certs = yield defer.gatherResults([support.in_thread(enroll, i) for i in range(n)], consumeErrors=True)
        self.assertEqual(len({c.serial_number for c in certs}), n)
        for i, cert in enumerate(certs):
            cert.verify_directly_issued_by(self.server.ca_cert)
            self.assertEqual(cert.subject.rfc4514_string(), f"CN=concurrent-{i}")
        count = yield self.server.count_certificates()
        self.assertEqual(count, n + 2)  # plus the TLS server and content signer certificates

    @defer.inlineCallbacks
    def test_keep_alive_serves_several_requests_on_one_connection(self):
        client = self.client(auth=BasicAuth("alice", PASSWORD))
        first = yield support.in_thread(client.simpleenroll, make_csr(new_key(), "CN=ka-1"))
        sock = client.conn._sock
        second = yield support.in_thread(client.simpleenroll, make_csr(new_key(), "CN=ka-2"))
        self.assertIs(client.conn._sock, sock)
        client.close()
        self.assertNotEqual(first.serial_number, second.serial_number)

    # -- refusals: status, one-line reason, nothing recorded ---------------------------

    @defer.inlineCallbacks
    def assertRefused(self, status, method, path, headers=None, body=b"", reason=None):
        before = yield self.server.count_certificates()
        resp = yield self.raw(method, path, headers, body)
        self.assertEqual(resp.status, status, resp.body)
        if status == 401:  # empty (Bouncy Castle closes a 401 unread); the reason is audited
            self.assertEqual((resp.body, resp.header("content-length")), (b"", "0"))
            if reason:
                events = yield support.in_thread(self.server.store.audit.events, 1)
                self.assertIn(reason, events[0].detail)
        else:
            self.assertTrue(resp.header("content-type", "").startswith("text/plain"))
            text = resp.body.decode()
            self.assertEqual(text.count("\n"), 1, text)
            self.assertNotIn("Traceback", text)
            if reason:
                self.assertIn(reason, text)
        after = yield self.server.count_certificates()
        self.assertEqual(after, before)
        return resp

    def enroll_headers(self, **extra):
        return {**self.basic(), "Content-Type": "application/pkcs10", **extra}

    @defer.inlineCallbacks
    def test_no_credentials_is_401_with_basic_challenge(self):
        resp = yield self.assertRefused(401, "POST", "/.well-known/est/simpleenroll",
                                        {"Content-Type": "application/pkcs10"}, base64.b64encode(csr_der()))
        self.assertEqual(resp.header_values("www-authenticate")[0], 'Basic realm="estappliance"')

    @defer.inlineCallbacks
    def test_wrong_password_is_401(self):
        yield self.assertRefused(401, "POST", "/.well-known/est/simpleenroll",
                                 {**self.basic(password="nope"), "Content-Type": "application/pkcs10"},
                                 base64.b64encode(csr_der()), reason="wrong username or password")
        yield self.assertRefused(401, "POST", "/.well-known/est/simpleenroll",
                                 {**self.basic(user="mallory"), "Content-Type": "application/pkcs10"},
                                 base64.b64encode(csr_der()), reason="wrong username or password")

    @defer.inlineCallbacks
    def test_client_not_allowed_under_label_is_403(self):
        yield self.assertRefused(403, "POST", "/.well-known/est/iot/simpleenroll", self.enroll_headers(),
                                 base64.b64encode(csr_der()), reason="may not use label")
        resp = yield self.raw("POST", "/.well-known/est/iot/simpleenroll",
                              {**self.basic(user="bob"), "Content-Type": "application/pkcs10"},
                              base64.b64encode(csr_der()))
        self.assertEqual(resp.status, 200)

    @defer.inlineCallbacks
    def test_untrusted_client_certificate_is_401(self):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name.from_rfc4514_string("CN=stranger")
        import datetime
        now = datetime.datetime.now(datetime.timezone.utc)
        from cryptography.hazmat.primitives import hashes
        selfsigned = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                      .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                      .sign(key, hashes.SHA256()))
        client = self.client(client_cert=[selfsigned], client_key=key, label="certonly")
        err = yield self.assertFailure(support.in_thread(client.simpleenroll, make_csr(new_key(), "CN=x")),
                                       EstClientError)
        client.close()
        self.assertEqual(err.status, 401)

    @defer.inlineCallbacks
    def test_basic_refused_where_label_takes_certificates_only(self):
        yield self.assertRefused(401, "POST", "/.well-known/est/certonly/simpleenroll", self.enroll_headers(),
                                 base64.b64encode(csr_der()))

    @defer.inlineCallbacks
    def test_body_not_base64_is_400(self):
        yield self.assertRefused(400, "POST", "/.well-known/est/simpleenroll", self.enroll_headers(),
                                 b"this is not base64 !!!", reason="not base64")

    @defer.inlineCallbacks
    def test_body_not_a_csr_is_400(self):
        yield self.assertRefused(400, "POST", "/.well-known/est/simpleenroll", self.enroll_headers(),
                                 base64.b64encode(b"\x30\x03\x02\x01\x01"), reason="not a PKCS#10")

    @defer.inlineCallbacks
    def test_bad_csr_signature_is_400(self):
        der = bytearray(csr_der())
        der[-3] ^= 0xFF  # inside the signature
        yield self.assertRefused(400, "POST", "/.well-known/est/simpleenroll", self.enroll_headers(),
                                 base64.b64encode(bytes(der)))

    @defer.inlineCallbacks
    def test_key_type_refused_by_profile_is_400(self):
        server = yield support.start_server(self, profiles={"default": {"key_types": ["ec-p384"]}})
        yield server.add_client("carol", PASSWORD)
        self.server = server
        yield self.assertRefused(400, "POST", "/.well-known/est/simpleenroll",
                                 {**self.basic(user="carol"), "Content-Type": "application/pkcs10"},
                                 base64.b64encode(csr_der()), reason="key type ec-p256 not allowed")

    @defer.inlineCallbacks
    def test_wrong_content_type_is_415(self):
        yield self.assertRefused(415, "POST", "/.well-known/est/simpleenroll",
                                 self.enroll_headers(**{"Content-Type": "application/json"}),
                                 base64.b64encode(csr_der()))

    @defer.inlineCallbacks
    def test_unknown_path_and_label_are_404(self):
        yield self.assertRefused(404, "GET", "/.well-known/est/nosuchop")
        yield self.assertRefused(404, "GET", "/.well-known/est/nolabel/cacerts", reason="no such CA label")
        yield self.assertRefused(404, "GET", "/index.html")

    @defer.inlineCallbacks
    def test_wrong_method_is_405(self):
        resp = yield self.assertRefused(405, "POST", "/.well-known/est/cacerts", self.basic(), b"x")
        self.assertEqual(resp.header("allow"), "GET, HEAD")
        # GET fetches an enrollment result announced in the PAL (RFC 8295 9)
        resp = yield self.assertRefused(405, "DELETE", "/.well-known/est/simpleenroll")
        self.assertEqual(resp.header("allow"), "GET, POST")

    @defer.inlineCallbacks
    def test_body_over_limit_is_413(self):
        yield self.assertRefused(413, "POST", "/.well-known/est/simpleenroll", self.enroll_headers(),
                                 base64.b64encode(os.urandom(20000)))

    @defer.inlineCallbacks
    def test_refusals_are_audited_with_identity(self):
        yield self.assertRefused(403, "POST", "/.well-known/est/iot/simpleenroll", self.enroll_headers(),
                                 base64.b64encode(csr_der()))
        events = yield support.in_thread(self.server.store.audit.events, 5)
        self.assertEqual((events[0].client, events[0].label, events[0].operation),
                         ("alice", "iot", "simpleenroll"))
        self.assertIn("refused", events[0].outcome)

    @defer.inlineCallbacks
    def test_token_unavailable_is_503_then_recovers(self):
        tokens = support.hsm_dir() / "tokens"
        hidden = support.hsm_dir() / "tokens.away"
        os.rename(tokens, hidden)
        try:
            resp = yield self.assertRefused(503, "POST", "/.well-known/est/simpleenroll", self.enroll_headers(),
                                            base64.b64encode(csr_der()), reason="unavailable")
            self.assertEqual(resp.header("retry-after"), "7")
        finally:
            os.rename(hidden, tokens)
        resp = yield self.raw("POST", "/.well-known/est/simpleenroll", self.enroll_headers(),
                              base64.b64encode(csr_der()))
        self.assertEqual(resp.status, 200, resp.body)
