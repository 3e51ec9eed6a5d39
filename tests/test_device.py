"""The device side of RFC 8295 (client.device), without a server: signatures
checked against the device's trust anchors, TAMP sequence numbers, targets and
trust anchor store changes, key packages decrypted and kept, firmware for
other hardware refused; every refusal answered with the right error code."""
from __future__ import annotations

import json
import os
from pathlib import Path

from twisted.trial import unittest

from estappliance.client.device import Device
from estappliance.pki import envelope, firmware, signeddata, symkeys, tamp
from estappliance.pki.asn1 import rfc7191

from .distribution_support import certificate

HW = "1.3.6.1.4.1.99999.2.1"


class DeviceCase(unittest.TestCase):
    def setUp(self):
        self.ca = certificate("CN=CA", ca=True)
        self.manager = certificate("CN=CA TAMP manager", issuer=self.ca)
        self.me = certificate("CN=device-1", issuer=self.ca)
        self.state = Path(self.mktemp())
        self.device = Device(self.state, [self.ca[1]], key=self.me[0], cert=self.me[1], hw_type=HW,
                             hw_serial=b"SN-1")

    def tamp_message(self, kind, value, signer=None):
        key, cert = signer or self.manager
        return tamp.sign(kind, value, key, cert, certificates=[cert])


class TampDeviceTests(DeviceCase):
    def ref(self, seq, target=None):
        return tamp.MsgRef(target or tamp.Target(), seq)

    def test_update_adds_and_removes_then_status_reports_them(self):
        partner = tamp.TrustAnchor.from_cert(certificate("CN=Partner", ca=True)[1])
        outcome = self.device.handle("tamp", self.tamp_message("tamp_update", tamp.update(
            self.ref(10), [tamp.Change("add", partner)])))
        self.assertTrue(outcome.ok, outcome.summary)
        confirm = tamp.read(outcome.answer)
        self.assertEqual((confirm.kind, confirm.statuses, confirm.signer), ("tamp_update_confirm", (0,), self.me[1]))
        self.assertEqual(outcome.answer_type, "application/tamp-update-confirm")
        self.assertIn(partner.key_id, [a.key_id for a in self.device.anchors()])
        # Adding it twice is an improper addition; removing an unknown key: not found.
        stranger = tamp.TrustAnchor.from_cert(certificate("CN=Stranger", ca=True)[1])
        outcome = self.device.handle("tamp", self.tamp_message("tamp_update", tamp.update(
            self.ref(11), [tamp.Change("add", partner), tamp.Change("remove", stranger),
                           tamp.Change("remove", partner)])))
        self.assertFalse(outcome.ok)
        self.assertEqual(tamp.read(outcome.answer).statuses, (20, 25, 0))
        self.assertNotIn(partner.key_id, [a.key_id for a in self.device.anchors()])
        outcome = self.device.handle("tamp", self.tamp_message("tamp_status_query", tamp.status_query(self.ref(12))))
        response = tamp.read(outcome.answer)
        self.assertEqual([a.key_id for a in response.anchors], [tamp.key_id_of_cert(self.ca[1])])

    def test_replay_and_the_same_message_twice(self):
        message = self.tamp_message("tamp_status_query", tamp.status_query(self.ref(100)))
        first = self.device.handle("tamp", message)
        self.assertTrue(first.ok)
        again = self.device.handle("tamp", message)  # delivered twice: the same answer
        self.assertEqual(again.answer, first.answer)
        older = self.device.handle("tamp", self.tamp_message("tamp_status_query", tamp.status_query(self.ref(99))))
        error = tamp.read(older.answer)
        self.assertEqual((error.kind, error.statuses, error.failed_type), ("tamp_error", (21,), "tamp_status_query"))

    def test_signer_target_and_signature(self):
        rogue = certificate("CN=Rogue Manager")
        outcome = self.device.handle("tamp", self.tamp_message("tamp_status_query", tamp.status_query(self.ref(5)),
                                                                signer=rogue))
        self.assertEqual(tamp.read(outcome.answer).statuses, (10,))
        elsewhere = tamp.Target("hw_modules", hw_type=HW, hw_serials=(b"SN-2",))
        outcome = self.device.handle("tamp", self.tamp_message("tamp_status_query", tamp.status_query(
            self.ref(6, elsewhere))))
        self.assertEqual(tamp.read(outcome.answer).statuses, (23,))
        unsigned = tamp.unsigned("tamp_status_query", tamp.status_query(self.ref(7)))
        outcome = self.device.handle("tamp", unsigned, "application/tamp-status-query")
        self.assertEqual(tamp.read(outcome.answer).statuses, (29,))

    def test_apex_and_community_updates(self):
        apex = tamp.TrustAnchor.from_cert(certificate("CN=Apex", ca=True)[1])
        outcome = self.device.handle("tamp", self.tamp_message("tamp_community_update", tamp.community_update(
            self.ref(1), add=["1.2.3.4", "1.2.3.5"])))
        self.assertEqual(tamp.read(outcome.answer).communities, ("1.2.3.4", "1.2.3.5"))
        # now a message for a community reaches us
        outcome = self.device.handle("tamp", self.tamp_message("tamp_community_update", tamp.community_update(
            self.ref(2, tamp.Target("communities", communities=("1.2.3.5",))), remove=["1.2.3.4"])))
        self.assertTrue(outcome.ok, outcome.summary)
        self.assertEqual(self.device.communities(), ("1.2.3.5",))
        outcome = self.device.handle("tamp", self.tamp_message("tamp_apex_update", tamp.apex_update(
            self.ref(3), apex, clear_trust_anchors=True, clear_communities=True)))
        self.assertTrue(outcome.ok)
        self.assertEqual([a.key_id for a in self.device.anchors()], [apex.key_id])
        self.assertEqual(self.device.communities(), ())
        state = json.loads((self.state / "tamp.json").read_text())
        self.assertEqual(state["apex"], apex.key_id.hex())


class KeyAndFirmwareTests(DeviceCase):
    def key_package(self, signer, recipient_cert):
        key, cert = signer
        inner = symkeys.sign_key_package(symkeys.key_package(os.urandom(32), algorithm="aes256", key_id="k-1"),
                                         key, cert, pkg_id=b"pkg-9", receipts_to=self.ca[1].subject)
        content_type, layer = symkeys.encrypt_for(inner, [envelope.recipient_for_certificate(recipient_cert)])
        return signeddata.sign(content_type, layer, key, cert)

    def test_key_kept_and_receipt_signed(self):
        signer = certificate("CN=CA content signer", issuer=self.ca)
        outcome = self.device.handle("symmetrickeys", self.key_package(signer, self.me[1]))
        self.assertTrue(outcome.ok, outcome.summary)
        self.assertEqual(len((self.state / "keys" / "k-1.key").read_bytes()), 32)
        self.assertEqual(oct((self.state / "keys" / "k-1.key").stat().st_mode & 0o777), "0o600")
        receipt = symkeys.read_return(outcome.answer)
        self.assertEqual((receipt.kind, receipt.pkg_id, receipt.signer), (rfc7191.RECEIPT, b"pkg-9", self.me[1]))
        self.assertEqual(outcome.answer_type,
                         "application/cms; encapsulatingContent=signedData; innerContent=keyPackageReceipt")

    def test_untrusted_signer_and_foreign_key_give_errors(self):
        rogue = certificate("CN=Rogue")
        outcome = self.device.handle("symmetrickeys", self.key_package(rogue, self.me[1]))
        error = symkeys.read_return(outcome.answer)
        self.assertEqual((outcome.ok, error.error_code, error.pkg_id), (False, 10, b"pkg-9"))
        other = certificate("CN=device-2", issuer=self.ca)
        outcome = self.device.handle("symmetrickeys", self.key_package(certificate("CN=s", issuer=self.ca),
                                                                       other[1]))
        error = symkeys.read_return(outcome.answer)
        self.assertEqual((error.error_code, error.pkg_id), (61, None))
        self.assertFalse((self.state / "keys").exists())

    def test_firmware_checks(self):
        vendor = certificate("CN=Vendor", issuer=self.ca)
        name = firmware.PackageName(oid="1.3.6.1.4.1.99999.1.1", version=2)
        mine = firmware.sign(b"\x7fELF" * 100, *vendor, name=name, targets=[HW])
        outcome = self.device.handle("firmware", mine)
        report = firmware.read_report(outcome.answer)
        self.assertEqual((report.kind, report.name, report.hw_type, report.hw_serial, report.signer),
                         (firmware.RECEIPT, name, HW, b"SN-1", self.me[1]))
        other_hw = firmware.sign(b"x" * 10, *vendor, name=name, targets=["1.2.3.4"])
        report = firmware.read_report(self.device.handle("firmware", other_hw).answer)
        self.assertEqual((report.kind, report.error_code, report.name), (firmware.ERROR, 27, name))
        rogue = firmware.sign(b"x" * 10, *certificate("CN=Rogue"), name=name, targets=[HW])
        report = firmware.read_report(self.device.handle("firmware", rogue).answer)
        self.assertEqual((report.error_code, report.name), (10, name))
        # without a key of its own, the device still answers, unsigned
        bare = Device(Path(self.mktemp()), [self.ca[1]])
        outcome = bare.handle("firmware", mine)
        report = firmware.read_report(outcome.answer)
        self.assertEqual((report.kind, report.signer, report.hw_type), (firmware.RECEIPT, None, HW))
        self.assertEqual(outcome.answer_type, "application/cms; innerContent=firmwareLoadReceipt")
