"""estappliance.pki.csr: parse PKCS#10, check proof of possession, read what
the request asks for (key type, subjectAltName, challengePassword)."""
from __future__ import annotations

import datetime
import ipaddress
import unittest as pyunittest
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from twisted.trial import unittest

from estappliance.pki import csr as csrs
from estappliance.pki.csr import BadCSR, challenge_password, key_type, load_csr, requested_san, signature_ok
from estappliance.pki.encoding import decode_body

VECTORS = Path("/work/shared/spec/vectors")


def vector_der(name: str) -> bytes:
    if not VECTORS.is_dir():
        raise pyunittest.SkipTest(f"{VECTORS} is missing")
    return decode_body((VECTORS / name).read_bytes())


def build_csr(key, subject="CN=device-1", san=None, password=None, algorithm=None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name.from_rfc4514_string(subject))
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if password is not None:
        builder = builder.add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, password)
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        algorithm = None
    else:
        algorithm = algorithm or hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def flip_signature_bit(der: bytes) -> bytes:
    """The outer SEQUENCE ends with the signature BIT STRING: flip a bit in its last byte."""
    out = bytearray(der)
    out[-1] ^= 0x01
    return bytes(out)


class RFC7030VectorTests(unittest.TestCase):
    """The RFC 7030 Appendix A.3 /simpleenroll request."""

    def setUp(self):
        self.der = vector_der("rfc7030_A3_simpleenroll_req.b64")
        self.csr = load_csr(self.der)

    def test_subject(self):
        self.assertEqual(self.csr.subject.rfc4514_string(), "CN=demostep4 1368141352")
        cn = self.csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        self.assertEqual([a.value for a in cn], ["demostep4 1368141352"])

    def test_rsa_2048(self):
        self.assertEqual(key_type(self.csr.public_key()), "rsa2048")

    def test_challenge_password(self):
        self.assertEqual(challenge_password(self.csr), b"+rrCir/7+EYu50T4")

    def test_no_san_requested(self):
        self.assertIsNone(requested_san(self.csr))

    def test_signature_verifies_by_hand(self):
        """The vector's sha1WithRSAEncryption signature is mathematically good."""
        self.assertIsInstance(self.csr.signature_hash_algorithm, hashes.SHA1)
        self.csr.public_key().verify(self.csr.signature, self.csr.tbs_certrequest_bytes, padding.PKCS1v15(),
                                     hashes.SHA1())

    def test_signature_ok(self):
        """RFC 7030's own example request has a valid proof of possession."""
        self.assertTrue(signature_ok(self.csr))

    def test_flipped_signature_bit_is_not_ok(self):
        bad = load_csr(flip_signature_bit(self.der))
        self.assertEqual(bad.subject, self.csr.subject)
        self.assertNotEqual(bad.signature, self.csr.signature)
        self.assertRaises(InvalidSignature, bad.public_key().verify, bad.signature, bad.tbs_certrequest_bytes,
                          padding.PKCS1v15(), hashes.SHA1())
        self.assertFalse(signature_ok(bad))


class SignatureTests(unittest.TestCase):
    def test_fresh_csrs_verify(self):
        for key in (ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
                    rsa.generate_private_key(65537, 2048), ed25519.Ed25519PrivateKey.generate()):
            self.assertTrue(signature_ok(load_csr(build_csr(key))), key)

    def test_flipped_bit_in_ec_signature(self):
        der = build_csr(ec.generate_private_key(ec.SECP256R1()))
        csr = load_csr(flip_signature_bit(der))
        self.assertFalse(signature_ok(csr))

    def test_flipped_bit_in_rsa_signature(self):
        der = build_csr(rsa.generate_private_key(65537, 2048))
        self.assertFalse(signature_ok(load_csr(flip_signature_bit(der))))

    def test_changed_subject_is_not_ok(self):
        der = build_csr(ec.generate_private_key(ec.SECP256R1()), subject="CN=device-A")
        tampered = der.replace(b"device-A", b"device-B")
        self.assertNotEqual(tampered, der)
        csr = load_csr(tampered)
        self.assertEqual(csr.subject.rfc4514_string(), "CN=device-B")
        self.assertFalse(signature_ok(csr))

    def test_signed_by_another_key_is_not_ok(self):
        ours = ec.generate_private_key(ec.SECP256R1())
        other = ec.generate_private_key(ec.SECP256R1())
        good = load_csr(build_csr(ours))
        forged_sig = other.sign(good.tbs_certrequest_bytes, ec.ECDSA(hashes.SHA256()))
        # Put another key's signature over the same request info.
        from pyasn1.codec.der import decoder, encoder
        from pyasn1.type import univ
        from pyasn1_alt_modules import rfc2986
        req, _ = decoder.decode(good.public_bytes(serialization.Encoding.DER),
                                asn1Spec=rfc2986.CertificationRequest())
        req["signature"] = univ.BitString.fromOctetString(forged_sig)
        forged = load_csr(encoder.encode(req))
        self.assertFalse(signature_ok(forged))


class KeyTypeTests(unittest.TestCase):
    def test_ec_curves(self):
        for curve, name in ((ec.SECP256R1(), "ec-p256"), (ec.SECP384R1(), "ec-p384"),
                            (ec.SECP521R1(), "ec-p521")):
            key = ec.generate_private_key(curve)
            self.assertEqual(key_type(key.public_key()), name)
            self.assertEqual(key_type(load_csr(build_csr(key)).public_key()), name)

    def test_other_curve_is_described(self):
        key = ec.generate_private_key(ec.SECP256K1())
        self.assertEqual(key_type(key.public_key()), "ec-secp256k1")

    def test_rsa_sizes(self):
        # Public keys of any size, without the cost of generating them.
        for bits in (2048, 3072, 4096):
            n = (1 << (bits - 1)) | 0xC5  # odd modulus of exactly `bits` bits
            public = rsa.RSAPublicNumbers(65537, n).public_key()
            self.assertEqual(key_type(public), f"rsa{bits}")
        key = rsa.generate_private_key(65537, 2048)
        self.assertEqual(key_type(load_csr(build_csr(key)).public_key()), "rsa2048")

    def test_ed25519_and_ed448(self):
        key = ed25519.Ed25519PrivateKey.generate()
        self.assertEqual(key_type(key.public_key()), "ed25519")
        self.assertEqual(key_type(load_csr(build_csr(key)).public_key()), "ed25519")
        self.assertEqual(key_type(ed448.Ed448PrivateKey.generate().public_key()), "ed448")

    def test_names_are_profile_names(self):
        """The names key_type gives for supported keys are the config's KEY_TYPES."""
        from estappliance.config import KEY_TYPES
        names = {key_type(ec.generate_private_key(c).public_key())
                 for c in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1())}
        names |= {key_type(rsa.RSAPublicNumbers(65537, (1 << (b - 1)) | 1).public_key())
                  for b in (2048, 3072, 4096)}
        self.assertEqual(names, set(KEY_TYPES))


class SanTests(unittest.TestCase):
    def test_requested_san(self):
        san = [x509.DNSName("device-1.example"), x509.DNSName("alt.example"),
               x509.IPAddress(ipaddress.ip_address("192.0.2.7")), x509.RFC822Name("ops@example.com"),
               x509.UniformResourceIdentifier("urn:dev:ops:1")]
        csr = load_csr(build_csr(ec.generate_private_key(ec.SECP256R1()), san=san))
        got = requested_san(csr)
        self.assertIsInstance(got, x509.SubjectAlternativeName)
        self.assertEqual(got.get_values_for_type(x509.DNSName), ["device-1.example", "alt.example"])
        self.assertEqual(got.get_values_for_type(x509.IPAddress), [ipaddress.ip_address("192.0.2.7")])
        self.assertEqual(got.get_values_for_type(x509.RFC822Name), ["ops@example.com"])
        self.assertEqual(list(got), san)

    def test_no_san(self):
        csr = load_csr(build_csr(ec.generate_private_key(ec.SECP256R1())))
        self.assertIsNone(requested_san(csr))

    def test_challenge_password_absent_and_present(self):
        key = ec.generate_private_key(ec.SECP256R1())
        self.assertIsNone(challenge_password(load_csr(build_csr(key))))
        self.assertEqual(challenge_password(load_csr(build_csr(key, password=b"s3cret"))), b"s3cret")


class BadCSRTests(unittest.TestCase):
    def test_garbage(self):
        for junk in (b"", b"garbage", b"\x30\x03\x02\x01\x01", bytes(64), b"\x30\x82\xff\xff"):
            err = self.assertRaises(BadCSR, load_csr, junk)
            self.assertIn("not a PKCS#10 request", str(err))

    def test_truncated(self):
        der = build_csr(ec.generate_private_key(ec.SECP256R1()))
        self.assertRaises(BadCSR, load_csr, der[:-10])
        self.assertRaises(BadCSR, load_csr, der + b"\x00")

    def test_certificate_der(self):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name.from_rfc4514_string("CN=not a request")
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
        self.assertRaises(BadCSR, load_csr, cert.public_bytes(serialization.Encoding.DER))

    def test_rfc7030_certs_only_response_is_not_a_csr(self):
        self.assertRaises(BadCSR, load_csr, vector_der("rfc7030_A3_simpleenroll_resp.b64"))

    def test_pem_is_not_accepted_as_der(self):
        pem = x509.load_der_x509_csr(build_csr(ec.generate_private_key(ec.SECP256R1()))).public_bytes(
            serialization.Encoding.PEM)
        self.assertRaises(BadCSR, load_csr, pem)

    def test_bad_csr_is_a_value_error(self):
        self.assertTrue(issubclass(BadCSR, ValueError))
        self.assertIs(csrs.BadCSR, BadCSR)
