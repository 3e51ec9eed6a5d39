"""CMS SignedData: ours verified by openssl and pyasn1-alt-modules; the
published RFC 7191/5934 samples verified by ours."""
from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyasn1_alt_modules import rfc5652
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.pki import signeddata
from estappliance.token import KEY_SPECS, on_token_thread, token_private_key

from . import support

NOW = datetime.datetime.now(datetime.timezone.utc)


def self_signed(key, name="CN=signer"):
    n = x509.Name.from_rfc4514_string(name)
    return (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW)
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


vector = support.pyasn1alt_vector


class SignedDataTests(unittest.TestCase):
    def check_independently(self, der):
        obj = support.decode_exact(self, der, rfc5652.ContentInfo())
        return support.decode_exact(self, bytes(obj["content"]), rfc5652.SignedData())

    def openssl_verify(self, der, cert):
        tmp = Path(self.mktemp())
        tmp.mkdir()
        (tmp / "m.der").write_bytes(der)
        (tmp / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(tmp / "m.der"),
                              "-CAfile", str(tmp / "c.pem"), "-binary", "-out", str(tmp / "content")],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        return (tmp / "content").read_bytes()

    def test_round_trip_for_key_types_and_signer_ids(self):
        for key in (ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
                    rsa.generate_private_key(public_exponent=65537, key_size=2048)):
            cert = self_signed(key)
            for use_ski in (True, False):
                der = signeddata.sign("data", b"hello", key, cert, use_ski=use_ski)
                sd = self.check_independently(der)
                self.assertEqual(int(sd["version"]), 3 if use_ski else 1)
                verified = signeddata.verify(der)
                self.assertEqual((verified.content, verified.signer), (b"hello", cert))
                self.assertEqual(self.openssl_verify(der, cert), b"hello")

    def test_tampering_is_detected(self):
        key = ec.generate_private_key(ec.SECP256R1())
        der = bytearray(signeddata.sign("data", b"hello", key, self_signed(key)))
        i = der.find(b"hello")
        der[i] ^= 1
        self.assertRaises(signeddata.BadSignedData, signeddata.verify, bytes(der))
        self.assertRaises(signeddata.BadSignedData, signeddata.verify, b"\x30\x03\x02\x01\x00")
        other = ec.generate_private_key(ec.SECP256R1())
        signed = signeddata.sign("data", b"x", key, self_signed(key), certificates=[])
        err = self.assertRaises(signeddata.BadSignedData, signeddata.verify, signed, [self_signed(other)])
        self.assertIn("not found", str(err))

    def test_published_rfc7191_and_rfc5934_samples(self):
        receipt = signeddata.verify(vector("rfc7191_message2_pem_text.b64"))
        # Names or dotted OIDs, depending on which ASN.1 modules are imported.
        self.assertEqual(cms.ContentType(receipt.content_type).dotted, "2.16.840.1.101.2.1.2.78.3")
        self.assertIn("CN=Alice", receipt.signer.subject.rfc4514_string())
        error = signeddata.verify(vector("rfc7191_message3_pem_text.b64"))
        self.assertEqual(cms.ContentType(error.content_type).dotted, "2.16.840.1.101.2.1.2.78.6")
        status = signeddata.verify(vector("rfc5934_tsr_pem_text.b64"))
        self.assertEqual(cms.ContentType(status.content_type).dotted, "2.16.840.1.101.2.1.2.77.2")
        # The published message 1 carries a signature that does not verify
        # (openssl cms -verify agrees): it must be refused, not trusted.
        self.assertRaises(signeddata.BadSignedData, signeddata.verify, vector("rfc7191_message1_pem_text.b64"))

    @defer.inlineCallbacks
    def test_signed_in_the_token(self):
        token = support.token()
        label = "sd-signer"
        yield on_token_thread(token.generate_keypair, label, KEY_SPECS["ec-p256"])
        self.addCleanup(lambda: on_token_thread(token.destroy_keypair, label))
        key = yield on_token_thread(token_private_key, token, label)
        # a certificate for the token key, signed by a software CA
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = self_signed(ca_key, "CN=sd ca")
        cert = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=token signer"))
                .issuer_name(ca.subject).public_key(key.public_key()).serial_number(5).not_valid_before(NOW)
                .not_valid_after(NOW + datetime.timedelta(days=1))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        der = yield on_token_thread(signeddata.sign, "data", b"from the token", key, cert)
        self.assertEqual(signeddata.verify(der).content, b"from the token")
        self.check_independently(der)
