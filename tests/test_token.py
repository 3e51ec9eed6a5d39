"""The token layer against a real SoftHSM2 token: key generation, attributes,
signing through cryptography's builders, and recovery after the token goes away."""
from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.hazmat.primitives.asymmetric import ec, padding
from twisted.internet import defer
from twisted.trial import unittest

from pkcs11 import Mechanism

from estappliance.errors import TokenUnavailable
from estappliance.token import KEY_SPECS, Token, on_token_thread, signature_hash, token_private_key

from . import support


def _self_signed(key, name="CN=token test"):
    subject = x509.Name.from_rfc4514_string(name)
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)))


class TokenTests(support.TokenLabels, unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_generated_ca_key_is_sensitive_and_never_extractable(self):
        label = self.new_label()
        yield on_token_thread(self.token.generate_keypair, label, KEY_SPECS["ec-p256"])
        attrs = yield on_token_thread(self.token.private_key_attributes, label)
        self.assertEqual(attrs, {"sensitive": True, "extractable": False, "always_sensitive": True,
                                 "never_extractable": True})

    @defer.inlineCallbacks
    def test_generating_over_an_existing_label_is_refused(self):
        label = self.new_label()
        yield on_token_thread(self.token.generate_keypair, label, KEY_SPECS["ec-p256"])
        yield self.assertFailure(on_token_thread(self.token.generate_keypair, label, KEY_SPECS["ec-p256"]),
                                 ValueError)

    @defer.inlineCallbacks
    def test_builders_sign_in_the_token_for_every_key_type(self):
        """Pins the undocumented use of cryptography: a subclassed private key
        whose sign() runs in the token signs certificates the library verifies."""
        for name in ("ec-p256", "ec-p384", "ec-p521", "rsa2048"):
            label = self.new_label()
            spki = yield on_token_thread(self.token.generate_keypair, label, KEY_SPECS[name])

            def sign():
                key = token_private_key(self.token, label)
                return key, _self_signed(key).sign(key, signature_hash(key.public_key()))
            key, cert = yield on_token_thread(sign)
            cert.verify_directly_issued_by(cert)
            self.assertEqual(cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo), spki)
            self.assertEqual(key.key_size, cert.public_key().key_size, name)

    @defer.inlineCallbacks
    def test_ecdsa_signature_is_der_and_verifies(self):
        label = self.new_label()
        yield on_token_thread(self.token.generate_keypair, label, KEY_SPECS["ec-p256"])
        key = yield on_token_thread(token_private_key, self.token, label)
        sig = yield on_token_thread(key.sign, b"message", ec.ECDSA(hashes.SHA256()))
        self.assertEqual(sig[0], 0x30)
        key.public_key().verify(sig, b"message", ec.ECDSA(hashes.SHA256()))

    @defer.inlineCallbacks
    def test_rsa_signature_verifies(self):
        label = self.new_label()
        yield on_token_thread(self.token.generate_keypair, label, KEY_SPECS["rsa2048"])
        key = yield on_token_thread(token_private_key, self.token, label)
        sig = yield on_token_thread(key.sign, b"message", padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(sig, b"message", padding.PKCS1v15(), hashes.SHA256())
        self.assertRaises(TypeError, key.sign, b"m", padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                          hashes.SHA256())

    def test_private_key_material_never_leaves(self):
        label = self.new_label()
        on = on_token_thread(self.token.generate_keypair, label, KEY_SPECS["ec-p256"])
        on.addCallback(lambda _: on_token_thread(token_private_key, self.token, label))

        def check(key):
            self.assertRaises(TypeError, key.private_numbers)
            self.assertRaises(TypeError, key.private_bytes, None, None, None)
        return on.addCallback(check)

    @defer.inlineCallbacks
    def test_token_gone_then_back(self):
        """A vanished token raises TokenUnavailable; once it is back, the same
        Token object signs again without a restart."""
        label = self.new_label()
        yield on_token_thread(self.token.generate_keypair, label, KEY_SPECS["ec-p256"])
        tokens = support.hsm_dir() / "tokens"
        hidden = support.hsm_dir() / "tokens.away"
        os.rename(tokens, hidden)
        try:
            yield self.assertFailure(on_token_thread(self.token.sign, label, b"\0" * 32, Mechanism.ECDSA),
                                     TokenUnavailable)
            yield self.assertFailure(on_token_thread(self.token.sign, label, b"\0" * 32, Mechanism.ECDSA),
                                     TokenUnavailable)
        finally:
            os.rename(hidden, tokens)
        sig = yield on_token_thread(self.token.sign, label, b"\0" * 32, Mechanism.ECDSA)
        self.assertEqual(len(sig), 64)

    @defer.inlineCallbacks
    def test_unknown_token_is_unavailable_not_a_crash(self):
        bad = Token(support.SOFTHSM_LIB, "no-such-token", lambda: "0000")
        yield self.assertFailure(on_token_thread(bad.public_key_der, "x"), TokenUnavailable)

