"""The RA policy engine with plain objects: no TLS, no token."""
from __future__ import annotations

import datetime
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
from estappliance.ra import Authenticator, Credentials, Registrar, TrustAnchors
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


PROFILE = Profile(name="p", validity_days=30, key_types=("ec-p256", "rsa2048"), key_usage=("digitalSignature",),
                  extended_key_usage=("clientAuth",), copy_san=True)


def label(name="default", auth=("basic", "cert"), anchors=("ca",)):
    return Label(name=name, profile=PROFILE, auth=auth, cert_anchors=anchors)


class AuthenticatorTests(unittest.TestCase):
    def setUp(self):
        self.store = Store(Path(self.mktemp()) / "s.sqlite")
        self.addCleanup(self.store.close)
        self.ca_key, self.ca = make_ca("CN=Our CA")
        self.mfr_key, self.mfr = make_ca("CN=Manufacturer CA")
        self.auth = Authenticator(self.store, TrustAnchors({"ca": [self.ca], "mfr": [self.mfr]}), "r")
        return on_store_thread(self.store.add_client, "alice", hash_password("pw"), ["default"])

    @defer.inlineCallbacks
    def test_basic_password(self):
        who = yield self.auth.authenticate(Credentials("alice", "pw"), label())
        self.assertEqual((who.name, who.method), ("alice", "basic"))
        # the second time is served from the verified-password cache
        who = yield self.auth.authenticate(Credentials("alice", "pw"), label())
        self.assertEqual(who.name, "alice")

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
            self.store.record_certificate, serial=cert.serial_number, subject=cert.subject.rfc4514_string(),
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
        yield on_store_thread(self.store.revoke, cert.serial_number, "keyCompromise")
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
