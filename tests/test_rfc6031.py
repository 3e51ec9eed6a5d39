"""RFC 6031 symmetric key packages as RFC 8295 5.1 delivers them
(pki.symkeys, pki.asn1.rfc6031): SignedData -> EnvelopedData (or RFC 6032
EncryptedKeyPackage) -> SignedData -> SymmetricKeyPackage, decoded layer by
layer with pyasn1-alt-modules; opened by the recipient (EC and RSA); RFC 7191
receipts and errors; the published samples."""
from __future__ import annotations

import datetime
import os

from asn1crypto import cms, core
from cryptography.hazmat.primitives.asymmetric import rsa
from pyasn1_alt_modules import rfc5652, rfc6019, rfc6031 as p6031, rfc6032 as p6032, rfc7191 as p7191
from twisted.trial import unittest

from estappliance.pki import envelope, signeddata, symkeys
from estappliance.pki.asn1 import rfc6031, rfc7191

from .distribution_support import Asn1Check, NOW, certificate, vector

KEY = bytes(range(32))


class KeyPackageTests(Asn1Check, unittest.TestCase):
    def setUp(self):
        self.ca = certificate("CN=Test CA", ca=True)
        self.signer = certificate("CN=content signer", issuer=self.ca)
        self.device = certificate("CN=device-1", issuer=self.ca)

    def package(self, **kw):
        return symkeys.key_package(KEY, algorithm="aes256", key_id="group-key-1", issuer="CN=Test CA",
                                   friendly_name="fleet key", usages=("Encrypt", "Decrypt"),
                                   expires=NOW + datetime.timedelta(days=30), **kw)

    def deliver(self, device=None, form="enveloped"):
        key, cert = self.signer
        device = device or self.device
        inner = symkeys.sign_key_package(self.package(), key, cert, pkg_id=b"pkg-0001",
                                         receipts_to=self.ca[1].subject, certificates=[cert, self.ca[1]])
        content_type, layer = symkeys.encrypt_for(inner, [envelope.recipient_for_certificate(device[1])], form=form)
        return signeddata.sign(content_type, layer, key, cert, certificates=[cert, self.ca[1]])

    def test_layers_decode_independently(self):
        der = self.deliver()
        _sd, enveloped = self.signed_content(der, rfc5652.id_envelopedData, rfc5652.EnvelopedData())
        self.assertEqual(enveloped["encryptedContentInfo"]["contentType"], rfc5652.id_signedData)
        self.assertEqual(enveloped["recipientInfos"][0].getName(), "kari")  # EC device: ECDH

    def test_encrypted_key_package_form_decodes_independently(self):
        der = self.deliver(form="encrypted-key-package")
        _sd, ekp = self.signed_content(der, p6032.id_ct_KP_encryptedKeyPkg, p6032.EncryptedKeyPackage())
        self.assertEqual(ekp.getName(), "enveloped")
        self.assertEqual(ekp["enveloped"]["encryptedContentInfo"]["contentType"], rfc5652.id_signedData)

    def test_inner_package_and_receipt_request_decode_independently(self):
        key, cert = self.signer
        inner = symkeys.sign_key_package(self.package(manufacturer="Example"), key, cert, pkg_id=b"pkg-0001",
                                         receipts_to=self.ca[1].subject)
        sd, package = self.signed_content(inner, p6031.id_ct_KP_sKeyPackage, p6031.SymmetricKeyPackage())
        self.assertEqual(bytes(package["sKeys"][0]["sKey"]), KEY)
        attr_types = [str(a["attrType"]) for a in package["sKeys"][0]["sKeyAttrs"]]
        self.assertIn(str(p6031.id_pskc_algorithm), attr_types)
        self.assertIn(str(p6031.id_pskc_keyUsages), attr_types)
        self.assertEqual(str(package["sKeyPkgAttrs"][0]["attrType"]), str(p6031.id_pskc_manufacturer))
        attrs = {a["attrType"]: a["attrValues"] for a in sd["signerInfos"][0]["signedAttrs"]}
        request = self.pyasn1(bytes(attrs[p7191.id_aa_KP_keyPkgIdAndReceiptReq][0]),
                              p7191.KeyPkgIdentifierAndReceiptReq())
        self.assertEqual(bytes(request["pkgID"]), b"pkg-0001")
        self.assertTrue(request["receiptReq"]["receiptsTo"][0]["sirenValue"].isValue)
        self.assertEqual(symkeys.pkg_id_of(inner), b"pkg-0001")

    def test_recipient_opens_it_ec_and_rsa(self):
        rsa_device = certificate("CN=device-rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                 issuer=self.ca)
        for device in (self.device, rsa_device):
            for form in symkeys.LAYERS:
                opened = symkeys.open_package(self.deliver(device, form),
                                              envelope.RecipientKey.for_certificate(*device))
                self.assertEqual(opened.keys[0].key, KEY)
                self.assertEqual(opened.keys[0].attributes["key_id"], "group-key-1")
                self.assertEqual(opened.keys[0].attributes["algorithm"],
                                 "http://www.w3.org/2001/04/xmlenc#aes256-cbc")
                self.assertEqual((opened.pkg_id, opened.receipt_requested), (b"pkg-0001", True))
                self.assertEqual((opened.outer_signer, opened.inner_signer), (self.signer[1], self.signer[1]))

    def test_other_key_cannot_open_it(self):
        other = certificate("CN=device-2", issuer=self.ca)
        self.assertRaises(symkeys.BadSymmetricKeyPackage, symkeys.open_package, self.deliver(),
                          envelope.RecipientKey.for_certificate(*other))

    def test_key_package_validation(self):
        self.assertRaises(ValueError, symkeys.key_package, KEY[:16], algorithm="aes256", key_id="k")
        self.assertRaises(ValueError, symkeys.key_package, KEY, algorithm="des", key_id="k")
        self.assertRaises(ValueError, symkeys.key_package, KEY, algorithm="aes256", key_id="k", usages=("Fly",))

    def test_media_type(self):
        self.assertEqual(symkeys.media_type("encrypted-key-package"),
                         'application/cms; encapsulatingContent="signedData, encryptedKeyPkg, signedData";'
                         ' innerContent=sKeyPackage')


class ReturnTests(Asn1Check, unittest.TestCase):
    def setUp(self):
        self.device = certificate("CN=device-1")

    def test_signed_receipt_decodes_independently(self):
        key, cert = self.device
        der = symkeys.sign_return(rfc7191.RECEIPT, symkeys.receipt(b"pkg-0001", cert.subject), key, cert)
        sd, receipt = self.signed_content(der, p7191.id_ct_KP_keyPackageReceipt, p7191.KeyPackageReceipt())
        self.assertEqual(bytes(receipt["receiptOf"]["pkgID"]), b"pkg-0001")
        self.assertIn(rfc6019.id_aa_binarySigningTime, self.signed_attr_types(sd))
        read = symkeys.read_return(der)
        self.assertEqual((read.kind, read.pkg_id, read.signer), (rfc7191.RECEIPT, b"pkg-0001", cert))

    def test_unsigned_error_decodes_independently(self):
        key, cert = self.device
        der = symkeys.unsigned_return(rfc7191.ERROR, symkeys.error(b"pkg-0001", cert.subject, 61))
        ci = self.pyasn1(der, rfc5652.ContentInfo())
        value = self.pyasn1(bytes(ci["content"]), p7191.KeyPackageError())
        self.assertEqual(int(value["errorCode"]["enum"]), 61)
        read = symkeys.read_return(der)
        self.assertEqual((read.pkg_id, read.error_code, read.error_name, read.signer),
                         (b"pkg-0001", 61, "noDecryptKey", None))
        anonymous = symkeys.read_return(symkeys.unsigned_return(rfc7191.ERROR, symkeys.error(None, cert.subject, 84)))
        self.assertIsNone(anonymous.pkg_id)

    def test_unsigned_receipt_refused(self):
        key, cert = self.device
        der = symkeys.unsigned_return(rfc7191.RECEIPT, symkeys.receipt(b"pkg-0001", cert.subject))
        err = self.assertRaises(symkeys.BadSymmetricKeyReturn, symkeys.read_return, der)
        self.assertIn("signed", str(err))
        for bad in (b"", b"\x30\x03\x02\x01\x00", der[:-2], signeddata.sign("data", b"x", key, cert)):
            self.assertRaises(symkeys.BadSymmetricKeyReturn, symkeys.read_return, bad)

    def test_published_rfc7191_samples(self):
        receipt = symkeys.read_return(vector("rfc7191_message2_pem_text.b64"))
        self.assertEqual(receipt.pkg_id, bytes.fromhex("27b89c563b1622519d17871c79bfac886ddff83d"))
        error = symkeys.read_return(vector("rfc7191_message3_pem_text.b64"))
        self.assertEqual((error.pkg_id, error.error_code, error.error_name),
                         (receipt.pkg_id, 10, "noTrustAnchor"))
        # message 1 is a signed symmetric key package whose signature does not verify
        self.assertRaises(symkeys.BadSymmetricKeyPackage, symkeys.open_package, vector("rfc7191_message1_pem_text.b64"),
                          envelope.RecipientKey())
        self.assertEqual(symkeys.pkg_id_of(vector("rfc7191_message1_pem_text.b64")), receipt.pkg_id)

    def test_published_rfc6031_sample(self):
        der = vector("rfc6031_key_pkg_pem_text.b64")
        info = cms.ContentInfo.load(der, strict=True)
        self.assertEqual(info["content_type"].native, "symmetric_key_package")
        package = info["content"]
        self.assertEqual(package["s_keys"][0]["s_key"].native, b"1234")
        attrs = {a["type"].native: a["values"][0].native for a in package["s_keys"][0]["s_key_attrs"]}
        self.assertEqual(attrs, {"key_user_id": "exampleID1", "algorithm": "HOTP", "issuer": "kta.example.com"})
        self.assertEqual([a["values"][0].native for a in package["s_key_pkg_attrs"]],
                         ["Vigil Security LLC", "Pretend 048A"])
        self.assertEqual(info.dump(force=True), der)
        self.assertIsInstance(package, rfc6031.SymmetricKeyPackage)

    def test_unknown_attributes_are_carried(self):
        value = rfc6031.SymmetricKeyPackage({"s_keys": [{"s_key_attrs": [
            {"type": "1.2.3.4.5", "values": [core.UTF8String("opaque")]}], "s_key": os.urandom(16)}]})
        again = rfc6031.SymmetricKeyPackage.load(value.dump())
        self.assertEqual(again["s_keys"][0]["s_key_attrs"][0]["type"].native, "1.2.3.4.5")
