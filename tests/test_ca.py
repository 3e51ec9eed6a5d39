"""The issuing CA with a real token: what goes into a certificate, and the
store holding it before anyone sees it."""
from __future__ import annotations

import datetime
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.ca import CertificateAuthority, IssueRequest, TokenSigner
from estappliance.client import new_key
from estappliance.config import Profile
from estappliance.store import DuplicateSerial, Store, on_store_thread

from . import support

PROFILE = Profile(name="p", validity_days=30, key_types=("ec-p256",), key_usage=("digitalSignature",),
                  extended_key_usage=("clientAuth", "serverAuth"), copy_san=True)


class IssueTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.cfg = support.config(Path(self.mktemp()), ca={"key_type": "ec-p384"})
        self.ca_cert = yield support.init_ca(self.cfg)
        self.store = Store(self.cfg.store)
        self.addCleanup(lambda: on_store_thread(self.store.close))
        self.ca = CertificateAuthority.from_files(TokenSigner(support.token(), self.cfg.ca.key_label),
                                                  self.cfg.ca.cert_file, self.cfg.ca.chain_file, self.store)

    def request(self, subject="CN=d1", san=None, profile=PROFILE):
        key = new_key("ec-p256")
        return key, IssueRequest(subject=x509.Name.from_rfc4514_string(subject), public_key=key.public_key(),
                                 san=san, profile=profile, label="default", client="alice")

    def test_ca_key_matches_certificate(self):
        return self.ca.check_key_matches().addCallback(self.assertTrue)

    @defer.inlineCallbacks
    def test_issued_certificate_contents(self):
        san = x509.SubjectAlternativeName([x509.DNSName("d1.example")])
        key, req = self.request(san=san)
        cert = yield self.ca.issue(req)
        cert.verify_directly_issued_by(self.ca_cert)
        self.assertEqual(cert.signature_hash_algorithm.name, "sha384")  # P-384 CA
        ext = cert.extensions
        self.assertFalse(ext.get_extension_for_class(x509.BasicConstraints).value.ca)
        ku = ext.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign)
        self.assertEqual([o._name for o in ext.get_extension_for_class(x509.ExtendedKeyUsage).value],
                         ["clientAuth", "serverAuth"])
        self.assertEqual(ext.get_extension_for_class(x509.SubjectAlternativeName).value, san)
        ca_ski = self.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.assertEqual(ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier,
                         ca_ski.digest)
        self.assertEqual(ext.get_extension_for_class(x509.SubjectKeyIdentifier).value,
                         x509.SubjectKeyIdentifier.from_public_key(key.public_key()))
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        self.assertAlmostEqual(lifetime.total_seconds(), datetime.timedelta(days=30, minutes=5).total_seconds(),
                               delta=5)
        record = yield on_store_thread(self.store.certificates.certificate, cert.serial_number)
        self.assertEqual(record.der, cert.public_bytes(Encoding.DER))

    @defer.inlineCallbacks
    def test_validity_never_outlives_the_ca(self):
        long = Profile(**{**PROFILE.__dict__, "validity_days": 100000})
        _, req = self.request(profile=long)
        cert = yield self.ca.issue(req)
        self.assertEqual(cert.not_valid_after_utc, self.ca_cert.not_valid_after_utc)

    @defer.inlineCallbacks
    def test_empty_subject_makes_san_critical(self):
        san = x509.SubjectAlternativeName([x509.DNSName("only-san.example")])
        req = IssueRequest(subject=x509.Name([]), public_key=new_key().public_key(), san=san, profile=PROFILE,
                           label="default", client=None)
        cert = yield self.ca.issue(req)
        self.assertTrue(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical)

    @defer.inlineCallbacks
    def test_serial_collision_is_resigned_with_a_new_serial(self):
        serials = iter([77777777777777777777, 77777777777777777777, 88888888888888888888])
        self.patch(x509, "random_serial_number", lambda: next(serials))
        _, first = self.request("CN=first")
        _, second = self.request("CN=second")
        a = yield self.ca.issue(first)
        b = yield self.ca.issue(second)
        self.assertEqual((a.serial_number, b.serial_number), (77777777777777777777, 88888888888888888888))
        stored = yield on_store_thread(self.store.certificates.certificate, 77777777777777777777)
        self.assertEqual(stored.subject, "CN=first")

    @defer.inlineCallbacks
    def test_serial_collisions_exhausted_fail_without_recording(self):
        self.patch(x509, "random_serial_number", lambda: 5555555555555555555)
        _, first = self.request("CN=first")
        yield self.ca.issue(first)
        _, second = self.request("CN=second")
        yield self.assertFailure(self.ca.issue(second), DuplicateSerial)
        count = yield on_store_thread(self.store.certificates.count_certificates)
        self.assertEqual(count, 3)  # TLS server, content signer, first

    @defer.inlineCallbacks
    def test_signing_happens_on_the_token_thread_only(self):
        seen = []
        signer = self.ca.signer
        original = signer.token.sign

        def spy(*a, **kw):
            seen.append(threading.current_thread().name)
            return original(*a, **kw)
        self.patch(signer.token, "sign", spy)
        _, req = self.request()
        yield self.ca.issue(req)
        self.assertTrue(seen)
        self.assertEqual(set(seen), {"pkcs11"})


class CrlTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        from estappliance.ca.crl import CrlIssuer
        self.cfg = support.config(Path(self.mktemp()))
        self.ca_cert = yield support.init_ca(self.cfg)
        self.store = Store(self.cfg.store)
        self.addCleanup(lambda: on_store_thread(self.store.close))
        signer = TokenSigner(support.token(), self.cfg.ca.key_label)
        self.ca = CertificateAuthority.from_files(signer, self.cfg.ca.cert_file, self.cfg.ca.chain_file, self.store)
        self.crls = CrlIssuer(signer, self.ca_cert, self.store)

    @defer.inlineCallbacks
    def test_revocations_appear_with_reason_and_numbers_grow(self):
        _, req = IssueTests.request(self)
        cert = yield self.ca.issue(req)
        first = yield self.crls.issue("crl")
        yield on_store_thread(self.store.certificates.revoke, cert.serial_number, "keyCompromise")
        second = yield self.crls.issue("crl")
        self.assertEqual((first.number, second.number), (1, 2))
        crl = x509.load_der_x509_crl(second.der)
        self.assertTrue(crl.is_signature_valid(self.ca_cert.public_key()))
        self.assertEqual(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number, 2)
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        self.assertEqual(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason,
                         x509.ReasonFlags.key_compromise)
        self.assertIsNone(x509.load_der_x509_crl(first.der).get_revoked_certificate_by_serial_number(
            cert.serial_number))
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        self.assertEqual(aki, self.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)

    @defer.inlineCallbacks
    def test_arl_is_for_ca_certificates_only(self):
        arl = yield self.crls.issue("arl")
        crl = x509.load_der_x509_crl(arl.der)
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        self.assertTrue(idp.critical and idp.value.only_contains_ca_certs)
        self.assertEqual(len(crl), 0)

    @defer.inlineCallbacks
    def test_current_reissues_only_when_needed(self):
        a = yield self.crls.current("crl")
        b = yield self.crls.current("crl")
        self.assertEqual(a.number, b.number)
        c = yield self.crls.current("crl", refresh_before=datetime.timedelta(days=2))
        self.assertEqual(c.number, a.number + 1)

    @defer.inlineCallbacks
    def test_openssl_verifies_the_crl(self):
        record = yield self.crls.issue("crl")
        tmp = Path(self.mktemp())
        tmp.mkdir()
        (tmp / "crl.der").write_bytes(record.der)
        (tmp / "ca.pem").write_bytes(self.ca_cert.public_bytes(Encoding.PEM))
        out = yield support.run_tool("openssl", "crl", "-inform", "DER", "-in", str(tmp / "crl.der"),
                                     "-CAfile", str(tmp / "ca.pem"), "-noout")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"verify OK", out.stderr + out.stdout)
