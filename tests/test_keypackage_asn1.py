"""pki.asn1.rfc5958 / rfc7191: the published samples read by ours, ours read
by pyasn1-alt-modules (no trailing bytes, byte-exact re-encoding)."""
from __future__ import annotations

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pyasn1.codec.der import encoder
from pyasn1_alt_modules import rfc5280, rfc5652, rfc5958, rfc7191
from twisted.trial import unittest

from estappliance.pki.asn1 import rfc5958 as akp
from estappliance.pki.asn1 import rfc7191 as kpr

from .support import ExactDecoding
from .support import pyasn1alt_vector as vector

ALICE = "C=US,ST=VA,L=Herndon,O=Example,CN=Alice"


def pkcs8(key) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class AsymmetricKeyPackageTests(ExactDecoding, unittest.TestCase):
    def test_published_rfc5958_samples(self):
        der = vector("rfc5958_priv_key_pem_text.b64")
        key = akp.OneAsymmetricKey.load(der)
        self.assertEqual(key["version"].native, "v2")
        self.assertEqual(key["private_key_algorithm"]["algorithm"].native, "ed25519")
        self.assertEqual(len(key["public_key"].native), 32)
        self.assertEqual(key.dump(force=True), der)
        loaded = serialization.load_der_private_key(key.to_pkcs8(), None)
        self.assertIsInstance(loaded, ed25519.Ed25519PrivateKey)
        self.assertEqual(loaded.public_key().public_bytes_raw(), key["public_key"].native)

        der = vector("rfc5958_asymmetric_key_pkg_pem_text.b64")
        info = cms.ContentInfo.load(der)
        self.assertEqual(info["content_type"].native, akp.CONTENT_TYPE)
        package = info["content"]
        self.assertEqual(len(package), 1)
        self.assertEqual(package[0]["attributes"].native[0]["values"], ["Curdle Chairs"])
        self.assertEqual(info.dump(force=True), der)

    def test_ours_decode_independently(self):
        keys = [ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(public_exponent=65537,
                                                                                    key_size=2048)]
        package = akp.AsymmetricKeyPackage([akp.OneAsymmetricKey.from_pkcs8(pkcs8(k)) for k in keys])
        info = cms.ContentInfo({"content_type": akp.CONTENT_TYPE, "content": package}).dump()
        ci = self.decode(info, rfc5652.ContentInfo())
        self.assertEqual(ci["contentType"], rfc5958.id_ct_KP_aKeyPackage)
        decoded = self.decode(bytes(ci["content"]), rfc5958.AsymmetricKeyPackage())
        self.assertEqual(len(decoded), 2)
        for one, key in zip(decoded, keys):
            self.assertEqual(int(one["version"]), 0)  # v1: no public key field
            self.assertEqual(encoder.encode(one), pkcs8(key))
        for one, key in zip(cms.ContentInfo.load(info)["content"], keys):
            self.assertEqual(one.to_pkcs8(), pkcs8(key))

    def test_malformed_pkcs8_fails_at_load(self):
        self.assertRaises(ValueError, akp.OneAsymmetricKey.from_pkcs8, b"\x30\x03\x02\x01\x00")


class ReceiptTests(ExactDecoding, unittest.TestCase):
    def test_published_rfc7191_samples(self):
        request = cms.ContentInfo.load(vector("rfc7191_message1_pem_text.b64"))
        attrs = {a["type"].native: a["values"] for a in request["content"]["signer_infos"][0]["signed_attrs"]}
        req = attrs[kpr.RECEIPT_REQUEST][0]
        pkg_id = bytes.fromhex("27b89c563b1622519d17871c79bfac886ddff83d")
        self.assertEqual(req["pkg_id"].native, pkg_id)
        self.assertFalse(req["receipt_req"]["encrypt_receipt"].native)
        self.assertIn("CN=Alice", x509.Name.from_rfc4514_string(ALICE).rfc4514_string())
        senders = [s.name() for s in req["receipt_req"]["receipts_from"]]
        self.assertEqual([n.native["common_name"] for n in senders], ["Alice", "Bob"])
        self.assertEqual(req["receipt_req"]["receipts_to"][0].name().native["common_name"], "kta.example.com")
        self.assertEqual(attrs["content_identifier"][0].native, pkg_id)

        receipt = cms.ContentInfo.load(vector("rfc7191_message2_pem_text.b64"))["content"]["encap_content_info"]
        self.assertEqual(receipt["content_type"].native, kpr.RECEIPT)
        parsed = receipt["content"].parsed
        self.assertEqual(parsed["version"].native, "v2")
        self.assertEqual(parsed["receipt_of"].name, "pkg_id")
        self.assertEqual(parsed["receipt_of"].chosen.native, pkg_id)
        self.assertEqual(parsed["received_by"].name().native["common_name"], "Alice")

        error = cms.ContentInfo.load(vector("rfc7191_message3_pem_text.b64"))["content"]["encap_content_info"]
        self.assertEqual(error["content_type"].native, kpr.ERROR)
        parsed = error["content"].parsed
        self.assertEqual(parsed["error_of"].chosen.native, pkg_id)
        self.assertEqual(kpr.error_code_name(parsed["error_code"]), "noTrustAnchor")
        self.assertEqual(parsed["error_by"].name().native["common_name"], "Bob")

    def test_ours_decode_independently(self):
        name = asn1_x509.Name.build({"common_name": "device-9"})
        pkg_id = bytes(range(16))
        receipt = kpr.KeyPackageReceipt({"receipt_of": kpr.KeyPkgIdentifier(name="pkg_id", value=pkg_id),
                                         "received_by": kpr.SIREntityName.for_name(name)}).dump()
        decoded = self.decode(receipt, rfc7191.KeyPackageReceipt())
        self.assertEqual(int(decoded["version"]), 2)
        self.assertEqual(bytes(decoded["receiptOf"]["pkgID"]), pkg_id)
        self.assertEqual(decoded["receivedBy"]["sirenType"], rfc7191.id_dn)
        self.decode(bytes(decoded["receivedBy"]["sirenValue"]), rfc5280.Name())

        error = kpr.KeyPackageError({"error_of": kpr.KeyPkgIdentifier(name="pkg_id", value=pkg_id),
                                     "error_by": kpr.SIREntityName.for_name(name),
                                     "error_code": kpr.ErrorCodeChoice(name="enum", value="decryptFailure")}).dump()
        decoded = self.decode(error, rfc7191.KeyPackageError())
        self.assertEqual(int(decoded["errorCode"]["enum"]), 71)
        self.assertEqual(bytes(decoded["errorOf"]["pkgID"]), pkg_id)

        request = kpr.KeyPkgIdentifierAndReceiptReq({"pkg_id": pkg_id, "receipt_req": {
            "receipts_to": [kpr.SIREntityName.for_name(name)]}}).dump()
        decoded = self.decode(request, rfc7191.KeyPkgIdentifierAndReceiptReq())
        self.assertFalse(decoded["receiptReq"]["receiptsFrom"].isValue)
        self.assertEqual(len(decoded["receiptReq"]["receiptsTo"]), 1)

    def test_unknown_error_codes_and_oid_codes_are_named(self):
        error = kpr.KeyPackageError({"error_by": kpr.SIREntityName.for_name(asn1_x509.Name.build({})),
                                     "error_code": kpr.ErrorCodeChoice(name="oid", value="1.2.3.4")})
        self.assertEqual(kpr.error_code_name(error["error_code"]), "1.2.3.4")
        self.assertIsNone(error["error_of"].native)
        raw = kpr.KeyPackageError({"error_by": kpr.SIREntityName.for_name(asn1_x509.Name.build({})),
                                   "error_code": kpr.ErrorCodeChoice(name="enum", value="other")}).dump()
        odd = kpr.KeyPackageError.load(raw.replace(b"\x0a\x01\x7f", b"\x0a\x01\x63"))
        self.assertEqual(kpr.error_code_name(odd["error_code"]), "99")
