"""RFC 4108 firmware packages (pki.firmware, pki.asn1.rfc4108): what we sign
decodes with pyasn1-alt-modules and openssl and carries the RFC 4108
attributes; the check refuses tampering, untrusted signers and packages
missing what RFC 4108 requires; load receipts and errors, signed or not."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from asn1crypto import cms
from cryptography.hazmat.primitives import serialization
from pyasn1_alt_modules import rfc4108 as p4108
from pyasn1_alt_modules import rfc5035, rfc5652
from twisted.trial import unittest

from estappliance.pki import firmware, signeddata, trust
from estappliance.pki.asn1 import rfc4108

from .distribution_support import Asn1Check, certificate, vector

IMAGE = bytes(range(256)) * 9
HW_TYPE = "1.3.6.1.4.1.99999.2.1"
NAME = firmware.PackageName(oid="1.3.6.1.4.1.99999.1.7", version=12)


class FirmwareTests(Asn1Check, unittest.TestCase):
    def setUp(self):
        self.root = certificate("CN=Vendor Root", ca=True)
        self.signer = certificate("CN=Vendor Firmware Signer", issuer=self.root)

    def sign(self, **kw):
        key, cert = self.signer
        kw.setdefault("certificates", [cert, self.root[1]])
        return firmware.sign(IMAGE, key, cert, name=NAME, targets=[HW_TYPE], **kw)

    def test_signed_package_decodes_independently_with_rfc4108_attributes(self):
        der = self.sign(description="widget firmware 12", stale_version=10,
                        dependencies=[firmware.PackageName(oid="1.3.6.1.4.1.99999.1.8", version=3)])
        sd, content = self.signed_content(der, p4108.id_ct_firmwarePackage, None)
        self.assertEqual(content, IMAGE)  # the eContent is the image itself
        self.assertEqual(len(sd["digestAlgorithms"]), 1)
        self.assertEqual(len(sd["signerInfos"]), 1)
        si = sd["signerInfos"][0]
        self.assertEqual(int(si["version"]), 3)
        self.assertTrue(si["sid"]["subjectKeyIdentifier"].isValue)
        attrs = {a["attrType"]: a["attrValues"] for a in si["signedAttrs"]}
        for oid in (rfc5652.id_contentType, rfc5652.id_messageDigest, p4108.id_aa_firmwarePackageID,
                    p4108.id_aa_targetHardwareIDs, p4108.id_aa_fwPkgMessageDigest, p4108.id_aa_firmwarePackageInfo):
            self.assertIn(oid, attrs)
            self.assertEqual(len(attrs[oid]), 1)
        package_id = self.pyasn1(bytes(attrs[p4108.id_aa_firmwarePackageID][0]), p4108.FirmwarePackageIdentifier())
        self.assertEqual(str(package_id["name"]["preferred"]["fwPkgID"]), NAME.oid)
        self.assertEqual(int(package_id["name"]["preferred"]["verNum"]), 12)
        self.assertEqual(int(package_id["stale"]["preferredStaleVerNum"]), 10)
        targets = self.pyasn1(bytes(attrs[p4108.id_aa_targetHardwareIDs][0]), p4108.TargetHardwareIdentifiers())
        self.assertEqual([str(t) for t in targets], [HW_TYPE])
        digest = self.pyasn1(bytes(attrs[p4108.id_aa_fwPkgMessageDigest][0]), p4108.FirmwarePackageMessageDigest())
        self.assertEqual(bytes(digest["msgDigest"]), hashlib.sha256(IMAGE).digest())
        signing_cert = self.pyasn1(bytes(attrs[rfc5035.id_aa_signingCertificateV2][0]), rfc5035.SigningCertificateV2())
        cert_der = self.signer[1].public_bytes(serialization.Encoding.DER)
        self.assertEqual(bytes(signing_cert["certs"][0]["certHash"]), hashlib.sha256(cert_der).digest())
        self.assertEqual(int(signing_cert["certs"][0]["issuerSerial"]["serialNumber"]), self.signer[1].serial_number)

    def test_openssl_verifies_the_package(self):
        der = self.sign()
        tmp = Path(self.mktemp())
        tmp.mkdir()
        (tmp / "fw.der").write_bytes(der)
        (tmp / "root.pem").write_bytes(self.root[1].public_bytes(serialization.Encoding.PEM))
        out = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", str(tmp / "fw.der"),
                              "-CAfile", str(tmp / "root.pem"), "-binary", "-purpose", "any",
                              "-out", str(tmp / "image")], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual((tmp / "image").read_bytes(), IMAGE)

    def test_check_reads_what_was_signed(self):
        der = self.sign(description="widget firmware 12")
        package = firmware.check(der, [self.root[1]])
        self.assertEqual((package.name, package.targets, package.image), (NAME, (HW_TYPE,), IMAGE))
        self.assertEqual(package.anchor, self.root[1])
        self.assertEqual(package.description, "widget firmware 12")
        self.assertEqual(package.signer, self.signer[1])

    def test_a_trust_anchor_may_sign_directly(self):
        key, cert = self.root
        der = firmware.sign(IMAGE, key, cert, name=NAME, targets=[HW_TYPE], certificates=[])
        self.assertEqual(firmware.check(der, [cert]).anchor, cert)

    def test_untrusted_signer_refused(self):
        other_root = certificate("CN=Someone Else", ca=True)
        err = self.assertRaises(firmware.BadFirmware, firmware.check, self.sign(), [other_root[1]])
        self.assertIn("trusted", str(err))

    def test_tampered_image_refused(self):
        der = bytearray(self.sign())
        i = der.find(IMAGE[:32])
        der[i + 100] ^= 0xFF
        self.assertRaises(firmware.BadFirmware, firmware.check, bytes(der), [self.root[1]])

    def test_missing_rfc4108_attributes_refused(self):
        key, cert = self.signer
        plain = signeddata.sign(firmware.FIRMWARE, IMAGE, key, cert, certificates=[cert])
        err = self.assertRaises(firmware.BadFirmware, firmware.check, plain, [self.root[1]])
        self.assertIn("firmware-package-identifier", str(err))
        not_firmware = signeddata.sign("data", IMAGE, key, cert)
        self.assertRaises(firmware.BadFirmware, firmware.check, not_firmware, [self.root[1]])
        self.assertRaises(firmware.BadFirmware, firmware.check, b"\x30\x03\x02\x01\x00", [self.root[1]])
        self.assertRaises(ValueError, firmware.sign, IMAGE, key, cert, name=NAME, targets=[])

    def test_the_published_rfc4108_sample(self):
        der = vector("rfc4108_pem_text.b64")
        info = cms.ContentInfo.load(der)
        self.assertEqual(info.dump(force=True), der)
        attrs = {a["type"].native: a["values"][0] for a in info["content"]["signer_infos"][0]["signed_attrs"]}
        self.assertEqual(attrs["target_hardware_ids"].native,
                         ["1.3.6.1.4.1.221121.1.1.42", "1.3.6.1.4.1.221121.1.1.48"])
        self.assertEqual(attrs["firmware_package_message_digest"]["algorithm"]["algorithm"].native, "sha256")
        # It lacks firmware-package-identifier and is SignedData v1: a strict
        # RFC 4108 check refuses it (and it names no certificate anyway).
        self.assertRaises(firmware.BadFirmware, firmware.check, der, None)

    def test_package_names(self):
        legacy = firmware.PackageName(legacy=b"widget-2.1")
        self.assertEqual(firmware.PackageName.from_asn1(legacy.asn1()), legacy)
        self.assertNotEqual(legacy.key(), NAME.key())
        self.assertRaises(ValueError, firmware.PackageName, oid="1.2.3")
        self.assertRaises(ValueError, firmware.PackageName)


class ReportTests(Asn1Check, unittest.TestCase):
    def test_unsigned_receipt_and_error_decode_independently(self):
        receipt = firmware.unsigned(firmware.RECEIPT, firmware.receipt(HW_TYPE, b"SN-1", NAME))
        ci = self.pyasn1(receipt, rfc5652.ContentInfo())
        self.assertEqual(ci["contentType"], p4108.id_ct_firmwareLoadReceipt)
        value = self.pyasn1(bytes(ci["content"]), p4108.FirmwarePackageLoadReceipt())
        self.assertEqual(bytes(value["hwSerialNum"]), b"SN-1")
        error = firmware.unsigned(firmware.ERROR, firmware.load_error(HW_TYPE, b"SN-1", 27, NAME, vendor_code=4))
        ci = self.pyasn1(error, rfc5652.ContentInfo())
        value = self.pyasn1(bytes(ci["content"]), p4108.FirmwarePackageLoadError())
        self.assertEqual(int(value["errorCode"]), 27)
        report = firmware.read_report(error)
        self.assertEqual((report.kind, report.error_code, report.error_name, report.name, report.vendor_error_code),
                         (firmware.ERROR, 27, "wrongHardware", NAME, 4))
        self.assertIsNone(report.signer)

    def test_signed_receipt(self):
        key, cert = certificate("CN=device-1")
        der = signeddata.sign(firmware.RECEIPT, firmware.receipt(HW_TYPE, b"SN-1", NAME), key, cert)
        report = firmware.read_report(der)
        self.assertEqual((report.kind, report.name, report.hw_type, report.signer), (firmware.RECEIPT, NAME,
                                                                                      HW_TYPE, cert))

    def test_error_codes_outside_the_list_are_kept(self):
        error = firmware.unsigned(firmware.ERROR, firmware.load_error(HW_TYPE, b"SN-1", 27))
        odd = error.replace(b"\x0a\x01\x1b", b"\x0a\x01\x32")
        self.assertEqual(firmware.read_report(odd).error_code, 50)
        self.assertIsNone(firmware.read_report(odd).name)

    def test_garbage_refused(self):
        for bad in (b"", b"\x30\x03\x02\x01\x00", firmware.unsigned(firmware.RECEIPT, firmware.receipt(
                HW_TYPE, b"x", NAME))[:-3]):
            self.assertRaises(firmware.BadFirmwareReport, firmware.read_report, bad)
        key, cert = certificate("CN=device-1")
        not_a_report = signeddata.sign("data", b"hello", key, cert)
        self.assertRaises(firmware.BadFirmwareReport, firmware.read_report, not_a_report)


class TrustTests(unittest.TestCase):
    def test_chain_through_intermediates(self):
        root = certificate("CN=root", ca=True)
        mid = certificate("CN=mid", issuer=root, ca=True)
        leaf = certificate("CN=leaf", issuer=mid)
        self.assertEqual(trust.chain_to_anchor(leaf[1], [root[1]], [mid[1]]), root[1])
        self.assertRaises(trust.Untrusted, trust.chain_to_anchor, leaf[1], [root[1]], [])
        # a leaf certificate cannot act as an intermediate
        fake = certificate("CN=fake", issuer=leaf)
        self.assertRaises(trust.Untrusted, trust.chain_to_anchor, fake[1], [root[1]], [mid[1], leaf[1]])

    def test_expired_certificate_refused(self):
        import datetime
        root = certificate("CN=root", ca=True)
        old = certificate("CN=old", issuer=root, days=1,
                          not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
        err = self.assertRaises(trust.Untrusted, trust.chain_to_anchor, old[1], [root[1]])
        self.assertIn("validity", str(err))

    def test_asn1_module_registers_names(self):
        self.assertEqual(cms.ContentType(rfc4108.OIDS["id-ct-firmwareLoadError"]).native, "firmware_load_error")
