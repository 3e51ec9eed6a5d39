"""Returns against the store (packages.returns, store.tamp, store.returns):
who may sign a return, which package it names, what is recorded, and how
TAMP answers move a client's trust anchor record. A refused return records
nothing, and matching a return never marks anything offered."""
from __future__ import annotations

import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from twisted.trial import unittest

from estappliance.errors import MalformedRequest, PolicyRefused
from estappliance.distribution import returns
from estappliance.pki import firmware, signeddata, symkeys, tamp
from estappliance.pki.asn1 import rfc7191
from estappliance.store import Store
from estappliance.store.package_tables import NotOffered
from tests.store_backends import StoreBackend, on_postgres

from .distribution_support import certificate

NOW = datetime.datetime.now(datetime.timezone.utc)


class ReturnsCase(StoreBackend, unittest.TestCase):
    def setUp(self):
        self.store = Store(self.store_location())
        self.addCleanup(self.store.close)
        for name in ("alice", "bob"):
            self.store.clients.add_client(name, "x", ["default"])
        self.ca = certificate("CN=CA", ca=True)
        self.manager = certificate("CN=CA TAMP manager", issuer=self.ca)
        self.alice = self.issue("alice")
        self.bob = self.issue("bob")

    def issue(self, client):
        key, cert = certificate(f"CN={client}-device", issuer=self.ca)
        self.store.certificates.record_certificate(serial=cert.serial_number, subject=cert.subject.rfc4514_string(),
                                      not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                                      label="default", client=client, der=cert.public_bytes(serialization.Encoding.DER))
        return key, cert

    def queue(self, pal_type, content, client="alice", **kw):
        return self.store.packages.queue_package(label="default", pal_type=pal_type, target_kind="client", target=client,
                                        content=content, receipt_requested=True, **kw)

    def offer_and_download(self, package, client="alice"):
        self.store.packages.offers(client, "default")
        self.store.packages.mark_downloaded(package.id, client)

    def state(self, package, client="alice"):
        return self.store.packages.delivery(package.id, client)


class SignerTests(ReturnsCase):
    def test_who_may_sign(self):
        returns.check_signer(self.store, "alice", None, None)  # unsigned: nothing to check
        returns.check_signer(self.store, "alice", self.alice[1], None)
        returns.check_signer(self.store, "alice", self.bob[1], self.bob[1])  # the TLS certificate it presented
        self.assertRaises(PolicyRefused, returns.check_signer, self.store, "alice", self.bob[1], None)
        self.assertRaises(PolicyRefused, returns.check_signer, self.store, "alice", certificate("CN=x")[1], None)
        self.store.certificates.revoke(self.alice[1].serial_number, "keyCompromise")
        self.assertRaises(PolicyRefused, returns.check_signer, self.store, "alice", self.alice[1], None)


class KeyPackageReturnTests(ReturnsCase):
    def test_receipt_error_and_matching(self):
        package = self.queue("0024", b"\x30\x00", key_package_id=b"pkg-1")
        receipt = symkeys.read_return(symkeys.sign_return(
            rfc7191.RECEIPT, symkeys.receipt(b"pkg-1", self.alice[1].subject), *self.alice))
        # queued but never offered: refused, and the lookup offers nothing
        self.assertRaises(NotOffered, returns.record_key_package_return, self.store, "alice", "default", receipt,
                          None)
        self.assertIsNone(self.state(package))
        self.offer_and_download(package)
        # bob cannot return alice's receipt: not his signature (nor his package)
        self.assertRaises(PolicyRefused, returns.record_key_package_return, self.store, "bob", "default", receipt,
                          None)
        returns.record_key_package_return(self.store, "alice", "default", receipt, None)
        self.assertEqual(self.state(package).state, "receipt")
        # an error naming no package goes to the one still owed a return
        second = self.queue("0024", b"\x30\x00", key_package_id=b"pkg-2")
        anonymous = symkeys.read_return(symkeys.unsigned_return(rfc7191.ERROR,
                                                                symkeys.error(None, self.alice[1].subject, 61)))
        self.assertRaises(NotOffered, returns.record_key_package_return, self.store, "alice", "default", anonymous,
                          None)
        self.offer_and_download(second)
        returns.record_key_package_return(self.store, "alice", "default", anonymous, None)
        self.assertEqual((self.state(second).state, self.state(second).error_code), ("error", 61))
        self.assertRaises(MalformedRequest, returns.parse_key_package_return, b"\x30\x03\x02\x01\x00")


class FirmwareReportTests(ReturnsCase):
    def test_reports_name_their_package(self):
        name = firmware.PackageName(oid="1.3.6.1.4.1.99999.1.1", version=3)
        package = self.queue("0026", b"\x30\x00", details={"fw_name": name.key()})
        self.offer_and_download(package)
        other = firmware.read_report(firmware.unsigned(firmware.RECEIPT, firmware.receipt(
            "1.2.3", b"s", firmware.PackageName(oid="1.3.6.1.4.1.99999.1.1", version=4))))
        self.assertRaises(NotOffered, returns.record_firmware_report, self.store, "alice", "default", other, None)
        signed_by_bob = firmware.read_report(firmware.unsigned(firmware.RECEIPT, firmware.receipt("1.2.3", b"s", name)))
        signed_by_bob = firmware.FirmwareReport(**{**signed_by_bob.__dict__, "signer": self.bob[1]})
        self.assertRaises(PolicyRefused, returns.record_firmware_report, self.store, "alice", "default",
                          signed_by_bob, None)
        self.assertEqual(self.state(package).state, "downloaded")
        error = firmware.read_report(firmware.unsigned(firmware.ERROR, firmware.load_error("1.2.3", b"s", 28, name)))
        returns.record_firmware_report(self.store, "alice", "default", error, None)
        self.assertEqual((self.state(package).state, self.state(package).error_code), ("error", 28))


class TampAnswerTests(ReturnsCase):
    def publish(self, kind, value, seq):
        der = tamp.sign(kind, value, *self.manager)
        package = self.queue(returns.TAMP_TYPES[kind], der, details={"tamp_kind": kind, "seq_num": seq})
        self.offer_and_download(package)
        return package

    def answer(self, kind, value):
        return tamp.read(tamp.unsigned(kind, value))

    def test_terse_update_confirm_applies_what_succeeded(self):
        old = tamp.TrustAnchor.from_cert(certificate("CN=Old", ca=True)[1])
        new = tamp.TrustAnchor.from_cert(certificate("CN=New", ca=True)[1])
        other = tamp.TrustAnchor.from_cert(certificate("CN=Other", ca=True)[1])
        self.store.tamp.move_client_anchors("alice", "test", replace=[(old.key_id, old.der, old.title)])
        ref = tamp.MsgRef(tamp.Target(), 500)
        package = self.publish("tamp_update", tamp.update(ref, [
            tamp.Change("add", new), tamp.Change("remove", old), tamp.Change("add", other)]), 500)
        returns.record_tamp_answer(self.store, "alice", "default",
                                   self.answer("tamp_update_confirm", tamp.update_confirm(ref, [0, 0, 20])), None)
        self.assertEqual(sorted(a.title for a in self.store.tamp.client_anchors("alice")), ["CN=New"])
        d = self.state(package)
        self.assertEqual((d.state, d.error_code), ("error", 20))  # not every change succeeded

    def test_status_response_replaces_and_error_records(self):
        a = tamp.TrustAnchor.from_cert(certificate("CN=A", ca=True)[1])
        ref = tamp.MsgRef(tamp.Target(), 600)
        package = self.publish("tamp_status_query", tamp.status_query(ref), 600)
        wrong_ref = self.answer("tamp_status_response", tamp.status_response(tamp.MsgRef(tamp.Target(), 601), [a]))
        self.assertRaises(NotOffered, returns.record_tamp_answer, self.store, "alice", "default", wrong_ref, None)
        self.assertEqual(self.store.tamp.client_anchors("alice"), [])
        returns.record_tamp_answer(self.store, "alice", "default", self.answer(
            "tamp_status_response", tamp.status_response(ref, [a], communities=["1.2.3"])), None)
        self.assertEqual([x.key_id for x in self.store.tamp.client_anchors("alice")], [a.key_id])
        self.assertEqual(self.store.tamp.client_tamp_state("alice").communities, ("1.2.3",))
        self.assertEqual(self.state(package).state, "receipt")
        ref2 = tamp.MsgRef(tamp.Target(), 601)
        second = self.publish("tamp_community_update", tamp.community_update(ref2, add=["1.2.4"]), 601)
        returns.record_tamp_answer(self.store, "alice", "default",
                                   self.answer("tamp_error", tamp.error("tamp_community_update", 24)), None)
        self.assertEqual((self.state(second).state, self.state(second).error_code), ("error", 24))
        self.assertEqual(self.store.tamp.client_tamp_state("alice").communities, ("1.2.3",))

    def test_requests_are_not_answers(self):
        query = tamp.unsigned("tamp_status_query", tamp.status_query(tamp.MsgRef(tamp.Target(), 1)))
        self.assertRaises(MalformedRequest, returns.parse_tamp_answer, query, None)
        confirm = tamp.unsigned("tamp_sequence_adjust_confirm",
                                tamp.sequence_adjust_confirm(tamp.MsgRef(tamp.Target(), 1), 0))
        self.assertRaises(MalformedRequest, returns.parse_tamp_answer, confirm, "application/tamp-error")
        self.assertEqual(returns.parse_tamp_answer(confirm, "application/cms").kind, "tamp_sequence_adjust_confirm")

    def test_sequence_numbers(self):
        self.assertEqual(self.store.tamp.next_tamp_seq_num(b"k", floor=1000), 1000)
        self.assertEqual(self.store.tamp.next_tamp_seq_num(b"k", floor=10), 1001)
        self.assertEqual(self.store.tamp.next_tamp_seq_num(b"other"), 1)
        self.assertEqual(self.store.tamp.last_tamp_seq_num(b"k"), 1001)


class DamagedReturnTests(unittest.TestCase):
    """Damaged returns are a 400 with a reason (MalformedRequest), never another exception (a 500)."""

    def test_mutations_of_every_kind_of_return(self):
        import random
        import warnings
        key, cert = certificate("CN=device")
        ta = tamp.TrustAnchor.from_cert(certificate("CN=TA", ca=True)[1])
        ref = tamp.MsgRef(tamp.Target("hw_modules", hw_type="1.2.3", hw_serials=(b"x",)), 5)
        name = firmware.PackageName(oid="1.3.6.1.4.1.99999.1", version=1)
        tamp_answer = lambda der: returns.parse_tamp_answer(der, None)  # noqa: E731
        samples = [
            (returns.parse_key_package_return,
             symkeys.sign_return(rfc7191.RECEIPT, symkeys.receipt(b"p", cert.subject), key, cert)),
            (returns.parse_key_package_return,
             symkeys.unsigned_return(rfc7191.ERROR, symkeys.error(b"p", cert.subject, 3))),
            (returns.parse_firmware_report, firmware.unsigned(firmware.ERROR, firmware.load_error("1.2.3", b"s", 3,
                                                                                                   name))),
            (returns.parse_firmware_report,
             signeddata.sign(firmware.RECEIPT, firmware.receipt("1.2.3", b"s", name), key, cert)),
            (tamp_answer, tamp.unsigned("tamp_status_response", tamp.status_response(ref, [ta], communities=["1.2"]))),
            (tamp_answer, tamp.sign("tamp_update_confirm", tamp.update_confirm(ref, [0], anchors=[ta]), key, cert)),
        ]
        rng = random.Random(20261127)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for parse, der in samples:
                parse(der)  # the undamaged one reads
                for _ in range(1500):
                    damaged = bytearray(der)
                    for _ in range(rng.randint(1, 3)):
                        at = rng.randrange(len(damaged))
                        choice = rng.random()
                        if choice < 0.6:
                            damaged[at] = rng.randrange(256)
                        elif choice < 0.8:
                            del damaged[at]
                        else:
                            damaged.insert(at, rng.randrange(256))
                    try:
                        parse(bytes(damaged))
                    except MalformedRequest:
                        pass


class OfferedNotDownloadedTests(ReturnsCase):
    """A package shown in the PAL but never fetched: the client cannot have a
    receipt or an error for it, so a return naming it is refused (400) and
    nothing is recorded."""

    def offer_only(self, package, client="alice"):
        self.store.packages.offers(client, "default")
        self.assertIsNone(self.state(package, client).downloaded_at)

    def assertNothingRecorded(self, package):
        d = self.state(package)
        self.assertIsNone(d.downloaded_at)
        self.assertNotIn(d.state, ("receipt", "error"))
        self.assertIsNone(d.error_code)

    def test_key_package(self):
        package = self.queue("0024", b"\x30\x00", key_package_id=b"pkg-n")
        self.offer_only(package)
        for ret in (symkeys.sign_return(rfc7191.RECEIPT, symkeys.receipt(b"pkg-n", self.alice[1].subject),
                                        *self.alice),
                    symkeys.unsigned_return(rfc7191.ERROR, symkeys.error(b"pkg-n", self.alice[1].subject, 61)),
                    symkeys.unsigned_return(rfc7191.ERROR, symkeys.error(None, self.alice[1].subject, 61))):
            with self.assertRaises(NotOffered) as caught:
                returns.record_key_package_return(self.store, "alice", "default", symkeys.read_return(ret), None)
            self.assertIsInstance(caught.exception, PolicyRefused)  # a 400
        self.assertNothingRecorded(package)
        self.store.packages.mark_downloaded(package.id, "alice")
        returns.record_key_package_return(self.store, "alice", "default", symkeys.read_return(
            symkeys.sign_return(rfc7191.RECEIPT, symkeys.receipt(b"pkg-n", self.alice[1].subject), *self.alice)),
            None)
        self.assertEqual(self.state(package).state, "receipt")

    def test_firmware(self):
        name = firmware.PackageName(oid="1.3.6.1.4.1.99999.1.7", version=1)
        package = self.queue("0026", b"\x30\x00", details={"fw_name": name.key()})
        self.offer_only(package)
        for report in (firmware.unsigned(firmware.RECEIPT, firmware.receipt("1.2.3", b"s", name)),
                       firmware.unsigned(firmware.ERROR, firmware.load_error("1.2.3", b"s", 28, name))):
            self.assertRaises(NotOffered, returns.record_firmware_report, self.store, "alice", "default",
                              firmware.read_report(report), None)
        self.assertNothingRecorded(package)

    def test_tamp(self):
        a = tamp.TrustAnchor.from_cert(certificate("CN=A", ca=True)[1])
        ref = tamp.MsgRef(tamp.Target(), 700)
        der = tamp.sign("tamp_status_query", tamp.status_query(ref), *self.manager)
        package = self.queue("0028", der, details={"tamp_kind": "tamp_status_query", "seq_num": 700})
        self.offer_only(package)
        for answer in (tamp.unsigned("tamp_status_response", tamp.status_response(ref, [a])),
                       tamp.unsigned("tamp_error", tamp.error("tamp_status_query", 24))):
            self.assertRaises(NotOffered, returns.record_tamp_answer, self.store, "alice", "default",
                              tamp.read(answer), None)
        self.assertNothingRecorded(package)
        self.assertEqual(self.store.tamp.client_anchors("alice"), [])


KeyPackageReturnTestsOnPostgres = on_postgres(KeyPackageReturnTests)
FirmwareReportTestsOnPostgres = on_postgres(FirmwareReportTests)
TampAnswerTestsOnPostgres = on_postgres(TampAnswerTests)
OfferedNotDownloadedTestsOnPostgres = on_postgres(OfferedNotDownloadedTests)
