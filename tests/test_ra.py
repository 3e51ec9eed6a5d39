"""The RA policy engine with plain objects: no TLS, no token."""
from __future__ import annotations

import datetime
import ipaddress
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import make_csr, new_key
from estappliance.config import Label, Profile
from estappliance.errors import AuthenticationRequired, MalformedRequest, NotAuthorized, NotFound, PolicyRefused
from estappliance.ra import Authenticator, Credentials, Identity, Registrar, TrustAnchors
from estappliance.ra import auth as auth_module
from estappliance.ra.passwords import hash_password
from estappliance.store import Store, on_store_thread

from . import support

NOW = datetime.datetime.now(datetime.timezone.utc)


def make_ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name.from_rfc4514_string(name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def issue(ca_key, ca_cert, name, days=10):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=2)).not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def issue_ca(parent_key, parent, name):
    """An intermediate CA certificate under ``parent``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(name)).issuer_name(parent.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=20))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(parent_key.public_key()),
                           critical=False)
            .sign(parent_key, hashes.SHA256()))
    return key, cert


PROFILE = Profile(name="p", validity_days=30, key_types=("ec-p256", "rsa2048"), key_usage=("digitalSignature",),
                  extended_key_usage=("clientAuth",), copy_san=True)


def label(name="default", auth=("basic", "cert"), anchors=("ca",)):
    return Label(name=name, profile=PROFILE, auth=auth, cert_anchors=anchors)


class TrustAnchorCacheTests(unittest.TestCase):
    """A verified chain is remembered for a while (path validation is the
    costly part of certificate authentication), never past its expiry."""

    def setUp(self):
        self.ca_key, self.ca = make_ca("CN=Our CA")
        self.anchors = TrustAnchors({"ca": [self.ca]})

    def test_a_verified_chain_is_remembered_and_answers_the_same(self):
        _, cert = issue(self.ca_key, self.ca, "CN=dev", days=10)
        self.assertEqual(self.anchors.verify((cert,)), "ca")
        self.patch(auth_module, "PolicyBuilder", None)  # no second path validation
        self.assertEqual(self.anchors.verify((cert,)), "ca")

    def test_never_remembered_past_the_first_expiry_in_the_chain(self):
        key = ec.generate_private_key(ec.SECP256R1())
        soon = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=short"))
                .issuer_name(self.ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - datetime.timedelta(days=1))
                .not_valid_after(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5))
                .sign(self.ca_key, hashes.SHA256()))
        self.assertEqual(self.anchors.verify((soon,)), "ca")
        expires = self.anchors._verified[(soon,)][0]
        self.assertLessEqual(expires - time.monotonic(), 5)

    def test_a_chain_that_failed_is_not_remembered(self):
        _, stranger_ca = make_ca("CN=Stranger")
        stranger_key, _ = make_ca("CN=Other")
        _, cert = issue(stranger_key, stranger_ca, "CN=x")
        self.assertIsNone(self.anchors.verify((cert,)))
        self.assertEqual(self.anchors._verified, {})


class AuthenticatorTests(unittest.TestCase):
    def setUp(self):
        self.store = Store(Path(self.mktemp()) / "s.sqlite")
        self.addCleanup(self.store.close)
        self.ca_key, self.ca = make_ca("CN=Our CA")
        self.mfr_key, self.mfr = make_ca("CN=Manufacturer CA")
        self.auth = Authenticator(self.store, TrustAnchors({"ca": [self.ca], "mfr": [self.mfr]}), "r")
        return on_store_thread(self.store.clients.add_client, "alice", hash_password("pw"), ["default"])

    @defer.inlineCallbacks
    def test_basic_password(self):
        who = yield self.auth.authenticate(Credentials("alice", "pw"), label())
        self.assertEqual((who.name, who.method), ("alice", "basic"))
        # the second time is served from the verified-password cache
        who = yield self.auth.authenticate(Credentials("alice", "pw"), label())
        self.assertEqual(who.name, "alice")

    @defer.inlineCallbacks
    def test_concurrent_logins_share_one_password_check(self):
        from estappliance.ra import auth as auth_module
        calls = []
        original = auth_module.verify_password

        def counting(password, stored):
            calls.append(password)
            return original(password, stored)
        self.patch(auth_module, "verify_password", counting)
        results = yield defer.gatherResults([self.auth.authenticate(Credentials("alice", "pw"), label())
                                             for _ in range(20)])
        self.assertEqual({who.name for who in results}, {"alice"})
        self.assertEqual(len(calls), 1)
        bad = yield defer.DeferredList([self.auth.authenticate(Credentials("alice", "bad"), label())
                                        for _ in range(5)], consumeErrors=True)
        self.assertTrue(all(not ok and f.check(AuthenticationRequired) for ok, f in bad))
        self.assertEqual(len(calls), 2)

    def test_wrong_password_and_unknown_user(self):
        d1 = self.assertFailure(self.auth.authenticate(Credentials("alice", "nope"), label()),
                                AuthenticationRequired)
        d2 = self.assertFailure(self.auth.authenticate(Credentials("zed", "pw"), label()), AuthenticationRequired)
        return defer.gatherResults([d1, d2])

    def test_no_credentials(self):
        return self.assertFailure(self.auth.authenticate(Credentials(), label()), AuthenticationRequired)

    def test_client_outside_its_labels_is_not_authorized(self):
        return self.assertFailure(self.auth.authenticate(Credentials("alice", "pw"), label("other")),
                                  NotAuthorized)

    def test_basic_ignored_where_label_takes_only_certificates(self):
        return self.assertFailure(self.auth.authenticate(Credentials("alice", "pw"), label(auth=("cert",))),
                                  AuthenticationRequired)

    def record(self, cert, client="alice"):
        return on_store_thread(
            self.store.certificates.record_certificate, serial=cert.serial_number, subject=cert.subject.rfc4514_string(),
            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, label="default",
            client=client, der=cert.public_bytes(Encoding.DER))

    @defer.inlineCallbacks
    def test_certificate_from_our_ca_acts_for_its_enroller(self):
        _, cert = issue(self.ca_key, self.ca, "CN=device-7")
        yield self.record(cert)
        who = yield self.auth.authenticate(Credentials(peer_chain=(cert,)), label())
        self.assertEqual((who.name, who.method, who.anchor), ("alice", "cert", "ca"))
        self.assertEqual(who.certificate, cert)
        self.assertFalse(who.is_ra)

    @defer.inlineCallbacks
    def test_certificate_from_our_ca_must_be_on_record_and_not_revoked(self):
        _, cert = issue(self.ca_key, self.ca, "CN=device-8")
        err = yield self.assertFailure(self.auth.authenticate(Credentials(peer_chain=(cert,)), label()),
                                       AuthenticationRequired)
        self.assertIn("unknown", err.reason)
        yield self.record(cert)
        yield on_store_thread(self.store.certificates.revoke, cert.serial_number, "keyCompromise")
        err = yield self.assertFailure(self.auth.authenticate(Credentials(peer_chain=(cert,)), label()),
                                       AuthenticationRequired)
        self.assertIn("revoked", err.reason)

    @defer.inlineCallbacks
    def test_manufacturer_certificate_only_where_label_accepts_that_anchor(self):
        _, idevid = issue(self.mfr_key, self.mfr, "CN=idevid-1")
        who = yield self.auth.authenticate(Credentials(peer_chain=(idevid,)), label(anchors=("ca", "mfr")))
        self.assertEqual(who.anchor, "mfr")
        yield self.assertFailure(self.auth.authenticate(Credentials(peer_chain=(idevid,)), label()), NotAuthorized)

    def test_stranger_certificate_is_not_authenticated(self):
        k, stranger_ca = make_ca("CN=Stranger")
        _, cert = issue(k, stranger_ca, "CN=x")
        return self.assertFailure(self.auth.authenticate(Credentials(peer_chain=(cert,)), label()),
                                  AuthenticationRequired)

    def test_expired_certificate_is_not_authenticated(self):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=old"))
                .issuer_name(self.ca.subject).public_key(key.public_key()).serial_number(5)
                .not_valid_before(NOW - datetime.timedelta(days=10)).not_valid_after(NOW - datetime.timedelta(days=1))
                .sign(self.ca_key, hashes.SHA256()))
        return self.assertFailure(self.auth.authenticate(Credentials(peer_chain=(cert,)), label()),
                                  AuthenticationRequired)

    @defer.inlineCallbacks
    def test_untrusted_certificate_falls_back_to_password(self):
        k, stranger_ca = make_ca("CN=Stranger")
        _, cert = issue(k, stranger_ca, "CN=x")
        who = yield self.auth.authenticate(Credentials("alice", "pw", (cert,)), label())
        self.assertEqual(who.method, "basic")


class FakeCA:
    def ca_certificates(self):
        return ["the CA"]


class CsrPolicyTests(unittest.TestCase):
    def setUp(self):
        cfg = support.config(Path(self.mktemp()), labels={"iot": {}})
        self.registrar = Registrar(cfg, authenticator=None, ca=FakeCA(), store=None)
        self.label = label()

    def der(self, key=None, subject="CN=x", **kw):
        return make_csr(key or new_key("ec-p256"), subject, **kw).public_bytes(Encoding.DER)

    def test_unknown_label_is_not_found(self):
        self.assertRaises(NotFound, self.registrar.label, "nope")
        self.assertEqual(self.registrar.label(None).name, "default")
        self.assertEqual(self.registrar.label("iot").name, "iot")

    def test_accepts_allowed_key(self):
        csr = self.registrar.check_csr(self.der(), self.label)
        self.assertEqual(csr.subject.rfc4514_string(), "CN=x")

    def test_refuses_key_type_outside_profile(self):
        err = self.assertRaises(PolicyRefused, self.registrar.check_csr, self.der(new_key("ec-p384")), self.label)
        self.assertIn("ec-p384", err.reason)

    def test_refuses_garbage_and_bad_signature(self):
        self.assertRaises(MalformedRequest, self.registrar.check_csr, b"\x30\x00", self.label)
        der = bytearray(self.der())
        der[-2] ^= 1
        err = self.assertRaises(MalformedRequest, self.registrar.check_csr, bytes(der), self.label)
        self.assertIn("signature", err.reason)

    def test_refuses_empty_subject_without_san(self):
        key = new_key("ec-p256")
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
        self.assertRaises(PolicyRefused, self.registrar.check_csr, csr.public_bytes(Encoding.DER), self.label)

    def test_refuses_san_forms_the_profile_cannot_judge(self):
        """Copied as asked, these would be certified unchecked (an otherName
        UPN logs on to Windows as whoever it names)."""
        key = new_key("ec-p256")

        def der(*names):
            return (x509.CertificateSigningRequestBuilder().subject_name(x509.Name.from_rfc4514_string("CN=x"))
                    .add_extension(x509.SubjectAlternativeName([x509.DNSName("x.example"), *names]), critical=False)
                    .sign(key, hashes.SHA256()).public_bytes(Encoding.DER))
        for name in (x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x0fadmin@corp.test"),
                     x509.DirectoryName(x509.Name.from_rfc4514_string("CN=admin")),
                     x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
                     x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))):
            err = self.assertRaises(PolicyRefused, self.registrar.check_csr, der(name), self.label)
            self.assertIn("subjectAltName", err.reason)
        csr = self.registrar.check_csr(der(x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
                                           x509.RFC822Name("x@example.com"),
                                           x509.UniformResourceIdentifier("urn:x")), self.label)
        self.assertEqual(len(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value), 4)


class FakeAuthenticator:
    def __init__(self, identity):
        self.identity = identity

    def authenticate(self, creds, label):
        return defer.succeed(self.identity)

    def challenge(self, label, stale=False):
        return ["Basic realm=x"]


class IssuingCA:
    """Signs with a software key and records in the store, like the real CA."""

    def __init__(self, store):
        self.store = store
        self.key, self.certificate = make_ca("CN=Fake CA")
        self.issued = []

    def ca_certificates(self):
        return [self.certificate]

    def issue(self, req):
        builder = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(self.certificate.subject)
                   .public_key(req.public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=1)))
        if req.san is not None:
            builder = builder.add_extension(req.san, critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        self.issued.append(req)
        d = on_store_thread(self.store.certificates.record_certificate, serial=cert.serial_number,
                            subject=req.subject.rfc4514_string(), not_before=NOW, not_after=NOW, label=req.label,
                            client=req.client, der=cert.public_bytes(Encoding.DER), replaces=req.replaces,
                            pending_id=req.pending_id)
        return d.addCallback(lambda _: cert)


class RegistrarFlowTests(unittest.TestCase):
    """Whole enrollment decisions with plain objects: no TLS, no token."""

    def setUp(self):
        self.state = Path(self.mktemp())
        self.store = Store(self.state / "s.sqlite")
        self.addCleanup(lambda: on_store_thread(self.store.close))
        self.ca = IssuingCA(self.store)
        self.key = new_key("ec-p256")

    def registrar(self, identity, **sections):
        cfg = support.config(self.state, **sections)
        return Registrar(cfg, FakeAuthenticator(identity), self.ca, self.store)

    def der(self, subject="CN=dev", key=None, **kw):
        return make_csr(key or self.key, subject, **kw).public_bytes(Encoding.DER)

    # -- proof-of-possession linking ------------------------------------------------

    @defer.inlineCallbacks
    def test_linking_required_and_matching(self):
        import base64
        reg = self.registrar(Identity("alice", "basic"), labels={"default": {"pop_linking": True}})
        binding = b"\x01" * 12
        creds = Credentials("alice", "pw", channel_binding=binding)
        err = yield self.assertFailure(reg.simpleenroll(None, creds, self.der()), PolicyRefused)
        self.assertIn("linking", err.reason)
        wrong = self.der(challenge_password=base64.b64encode(b"\x02" * 12).decode())
        err = yield self.assertFailure(reg.simpleenroll(None, creds, wrong), PolicyRefused)
        self.assertIn("does not match", err.reason)
        good = self.der(challenge_password=base64.b64encode(binding).decode())
        cert = yield reg.simpleenroll(None, creds, good)
        self.assertEqual(cert.subject.rfc4514_string(), "CN=dev")

    @defer.inlineCallbacks
    def test_challenge_password_is_checked_even_where_not_required(self):
        reg = self.registrar(Identity("alice", "basic"))
        creds = Credentials("alice", "pw", channel_binding=b"\x01" * 32)
        yield self.assertFailure(reg.simpleenroll(None, creds, self.der(challenge_password="secret")),
                                 PolicyRefused)
        self.assertEqual(self.ca.issued, [])

    @defer.inlineCallbacks
    def test_ra_certificate_may_relay_another_sessions_csr(self):
        _, ra_cert = make_ca("CN=ra")  # any cert; the EKU is what counts
        ra_cert = (x509.CertificateBuilder().subject_name(ra_cert.subject).issuer_name(ra_cert.subject)
                   .public_key(self.key.public_key()).serial_number(3).not_valid_before(NOW)
                   .not_valid_after(NOW + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.5.5.7.3.28")]), False)
                   .sign(self.key, hashes.SHA256()))
        reg = self.registrar(Identity("ra", "cert", ra_cert, "ca"), labels={"default": {"pop_linking": True}})
        cert = yield reg.simpleenroll(None, Credentials(channel_binding=b"\x09" * 12),
                                      self.der(challenge_password="linked-elsewhere"))
        self.assertIsNotNone(cert)

    # -- re-enrollment ------------------------------------------------------------------

    @defer.inlineCallbacks
    def enrolled(self, subject="CN=dev", dns=("dev.example",)):
        reg = self.registrar(Identity("alice", "basic"))
        cert = yield reg.simpleenroll(None, Credentials("alice", "pw"), self.der(subject, dns_names=dns))
        return cert

    @defer.inlineCallbacks
    def test_renew_and_rekey_link_to_the_old_certificate(self):
        old = yield self.enrolled()
        reg = self.registrar(Identity("alice", "cert", old, "ca"))
        renewed = yield reg.simplereenroll(None, Credentials(), self.der(dns_names=("dev.example",)))
        self.assertEqual(renewed.public_key(), old.public_key())
        rekeyed = yield reg.simplereenroll(None, Credentials(),
                                           self.der(key=new_key(), dns_names=("dev.example",)))
        self.assertNotEqual(rekeyed.public_key(), old.public_key())
        for cert in (renewed, rekeyed):
            record = yield on_store_thread(self.store.certificates.certificate, cert.serial_number)
            self.assertEqual(record.replaces, old.serial_number)

    @defer.inlineCallbacks
    def test_reenroll_refusals(self):
        old = yield self.enrolled()
        reg = self.registrar(Identity("alice", "basic"))
        err = yield self.assertFailure(reg.simplereenroll(None, Credentials("alice", "pw"), self.der()),
                                       NotAuthorized)
        self.assertIn("certificate being renewed", err.reason)
        reg = self.registrar(Identity("alice", "cert", old, "ca"))
        err = yield self.assertFailure(
            reg.simplereenroll(None, Credentials(), self.der("CN=other", dns_names=("dev.example",))),
            PolicyRefused)
        self.assertIn("subject differs", err.reason)
        err = yield self.assertFailure(
            reg.simplereenroll(None, Credentials(), self.der(dns_names=("evil.example",))), PolicyRefused)
        self.assertIn("subjectAltName differs", err.reason)
        count = yield on_store_thread(self.store.certificates.count_certificates)
        self.assertEqual(count, 1)
        events = yield on_store_thread(self.store.audit.events, 3)
        self.assertEqual({e.operation for e in events}, {"simplereenroll"})
        self.assertEqual({e.client for e in events}, {"alice"})

    @defer.inlineCallbacks
    def test_profile_may_allow_a_subject_change(self):
        old = yield self.enrolled()
        reg = self.registrar(Identity("alice", "cert", old, "ca"),
                             profiles={"default": {"allow_subject_change": True}})
        cert = yield reg.simplereenroll(None, Credentials(), self.der("CN=renamed"))
        self.assertEqual(cert.subject.rfc4514_string(), "CN=renamed")

    # -- profile rules ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_subject_template_rewrites(self):
        reg = self.registrar(Identity("alice", "basic"),
                             profiles={"default": {"subject_template": "CN={CN},OU={client},O=Example"}})
        cert = yield reg.simpleenroll(None, Credentials("alice", "pw"), self.der("CN=dev-9,O=Whatever"))
        self.assertEqual(cert.subject.rfc4514_string(), "CN=dev-9,OU=alice,O=Example")
        err = yield self.assertFailure(reg.simpleenroll(None, Credentials("alice", "pw"),
                                                        self.der("O=NoCN", dns_names=("x.example",))),
                                       PolicyRefused)
        self.assertIn("CN", err.reason)

    @defer.inlineCallbacks
    def test_required_rdns_patterns_and_extensions(self):
        reg = self.registrar(Identity("alice", "basic"), profiles={"default": {
            "required_rdns": ["O"], "required_extensions": ["subjectAltName"],
            "name_patterns": {"CN": "dev-[0-9]+", "DNS": "[a-z0-9-]+\\.example"}}})
        creds = Credentials("alice", "pw")
        cases = [("CN=dev-1", ("dev-1.example",), "requires O"),
                 ("CN=dev-1,O=X", (), "requires the subjectAltName"),
                 ("CN=laptop,O=X", ("dev-1.example",), "CN 'laptop' does not match"),
                 ("CN=dev-1,O=X", ("dev-1.evil.org",), "DNS 'dev-1.evil.org' does not match")]
        for subject, dns, reason in cases:
            err = yield self.assertFailure(reg.simpleenroll(None, creds, self.der(subject, dns_names=dns)),
                                           PolicyRefused)
            self.assertIn(reason, err.reason)
        cert = yield reg.simpleenroll(None, creds, self.der("CN=dev-1,O=X", dns_names=("dev-1.example",)))
        self.assertEqual(cert.subject.rfc4514_string(), "CN=dev-1,O=X")

    # -- manual approval ------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_manual_approval_flow(self):
        from estappliance.errors import Pending
        reg = self.registrar(Identity("alice", "basic"), labels={"default": {"approval": "manual"}})
        creds = Credentials("alice", "pw")
        err = yield self.assertFailure(reg.simpleenroll(None, creds, self.der()), Pending)
        self.assertEqual(err.retry_after, 7)
        waiting = yield on_store_thread(self.store.certificates.pending_requests)
        self.assertEqual([(p.client, p.subject, p.state) for p in waiting], [("alice", "CN=dev", "pending")])
        # asking again before a decision: still pending, no second request
        yield self.assertFailure(reg.simpleenroll(None, creds, self.der()), Pending)
        self.assertEqual(len((yield on_store_thread(self.store.certificates.pending_requests, None))), 1)
        yield on_store_thread(self.store.certificates.decide_pending, waiting[0].id, True)
        cert = yield reg.simpleenroll(None, creds, self.der())
        again = yield reg.simpleenroll(None, creds, self.der())
        self.assertEqual(cert, again)
        self.assertEqual(len(self.ca.issued), 1)
        done = yield on_store_thread(self.store.certificates.pending, waiting[0].id)
        self.assertEqual((done.state, done.serial), ("issued", cert.serial_number))

    @defer.inlineCallbacks
    def test_rejected_request_is_refused(self):
        from estappliance.errors import Pending
        reg = self.registrar(Identity("alice", "basic"), labels={"default": {"approval": "manual"}})
        creds = Credentials("alice", "pw")
        yield self.assertFailure(reg.simpleenroll(None, creds, self.der()), Pending)
        request = (yield on_store_thread(self.store.certificates.pending_requests))[0]
        yield on_store_thread(self.store.certificates.decide_pending, request.id, False)
        err = yield self.assertFailure(reg.simpleenroll(None, creds, self.der()), NotAuthorized)
        self.assertIn("rejected", err.reason)
        self.assertEqual(self.ca.issued, [])

    def test_csrattrs_per_label(self):
        reg = self.registrar(Identity("alice", "basic"), labels={
            "strict": {"profile": "p384", "pop_linking": True}, "quiet": {"profile": "none"}},
            profiles={"p384": {"key_types": ["ec-p384"]}, "none": {"csrattrs": False}})
        from estappliance.pki import csrattrs
        hints = csrattrs.parse(reg.csrattrs("strict"))
        self.assertEqual((hints.challenge_password, hints.key_type), (True, "ec-p384"))
        self.assertIsNone(reg.csrattrs("quiet"))
        self.assertRaises(NotFound, reg.csrattrs, "nope")


class ResumedSessionIntermediateTests(unittest.TestCase):
    """A TLS session resumed from a ticket shows the client's certificate
    alone. Intermediates of chains that verified are kept (by the process,
    and in the store for the other workers and nodes) and complete such a
    path; kept or not, a path must end at an anchor."""

    def setUp(self):
        self.store = Store(Path(self.mktemp()) / "s.sqlite")
        self.addCleanup(self.store.close)
        self.root_key, self.root = make_ca("CN=Manufacturer Root")
        self.inter_key, self.inter = issue_ca(self.root_key, self.root, "CN=Manufacturer Issuing CA 7")
        _, self.device = issue(self.inter_key, self.inter, "CN=device-17")

    def worker(self) -> Authenticator:
        """Another process on the same store: nothing kept in memory."""
        return Authenticator(self.store, TrustAnchors({"mfr": [self.root]}), "r")

    def kept_rows(self):
        return on_store_thread(lambda: self.store.db.execute("SELECT count(*) FROM client_intermediates").fetchone()[0])

    @defer.inlineCallbacks
    def test_a_lone_certificate_is_accepted_on_any_worker_once_its_chain_was_seen(self):
        lbl = label(auth=("cert",), anchors=("mfr",))
        first, other = self.worker(), self.worker()
        yield self.assertFailure(other.authenticate(Credentials(peer_chain=(self.device,)), lbl),
                                 AuthenticationRequired)
        who = yield first.authenticate(Credentials(peer_chain=(self.device, self.inter)), lbl)
        self.assertEqual((who.name, who.anchor), ("CN=device-17", "mfr"))
        self.assertEqual((yield self.kept_rows()), 1)
        # the resumed session lands on the other worker (or node): the store completes the path
        who = yield other.authenticate(Credentials(peer_chain=(self.device,)), lbl)
        self.assertEqual((who.name, who.method, who.anchor), ("CN=device-17", "cert", "mfr"))
        who = yield first.authenticate(Credentials(peer_chain=(self.device,)), lbl)
        self.assertEqual(who.name, "CN=device-17")
        # seen again: kept once
        yield first.authenticate(Credentials(peer_chain=(self.device, self.inter)), lbl)
        self.assertEqual((yield self.kept_rows()), 1)

    @defer.inlineCallbacks
    def test_kept_intermediates_grant_nothing_without_an_anchor(self):
        lbl = label(auth=("cert",), anchors=("mfr",))
        auth = self.worker()
        # a chain under a root nobody configured: refused, and its intermediate not kept
        stranger_key, stranger = make_ca("CN=Manufacturer Root")  # the same name, another key
        s_inter_key, s_inter = issue_ca(stranger_key, stranger, "CN=Manufacturer Issuing CA 7")
        _, forged = issue(s_inter_key, s_inter, "CN=device-17")
        yield self.assertFailure(auth.authenticate(Credentials(peer_chain=(forged, s_inter)), lbl),
                                 AuthenticationRequired)
        self.assertEqual((yield self.kept_rows()), 0)
        # the genuine intermediate kept does not make the forged certificate (same issuer name) pass
        yield auth.authenticate(Credentials(peer_chain=(self.device, self.inter)), lbl)
        for a in (auth, self.worker()):
            yield self.assertFailure(a.authenticate(Credentials(peer_chain=(forged,)), lbl), AuthenticationRequired)
        # an anchor the label does not accept stays refused with a lone certificate too
        who = yield self.assertFailure(self.worker().authenticate(Credentials(peer_chain=(self.device,)),
                                                                  label(auth=("cert",), anchors=("ca",))),
                                       NotAuthorized)
        self.assertIn("'mfr'", str(who))

    @defer.inlineCallbacks
    def test_a_store_that_cannot_keep_them_does_not_fail_the_request(self):
        lbl = label(auth=("cert",), anchors=("mfr",))
        auth = self.worker()
        events = []
        self.patch(auth_module, "_log", auth_module.Logger(observer=events.append))

        def refuse(rows):
            from estappliance.errors import StoreUnavailable
            raise StoreUnavailable("the store database failed: connection lost")
        self.patch(self.store.intermediates, "remember_intermediates", refuse)
        who = yield auth.authenticate(Credentials(peer_chain=(self.device, self.inter)), lbl)
        self.assertEqual(who.anchor, "mfr")
        self.assertEqual(len(events), 1)
        self.assertIn("not kept", events[0]["log_format"])
        self.patch(self.store.intermediates, "remember_intermediates",
                   type(self.store.intermediates).remember_intermediates.__get__(self.store.intermediates))
        yield auth.authenticate(Credentials(peer_chain=(self.device, self.inter)), lbl)  # tried again
        self.assertEqual((yield self.kept_rows()), 1)
