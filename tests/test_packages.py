"""The package store (RFC 8295 distribution): queueing for a client, a group
or a label; who sees what; the delivery states (offered, downloaded, receipt,
error); returns naming packages never offered; durability across reopening;
and the PAL package type registry."""
from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from estappliance.distribution import (NotOffered, PackageQueue, UnknownPalType, next_offer, pal_type, types_for)
from estappliance.pki.pal_types import DERIVED, PAL_TYPES
from estappliance.store import Store
from estappliance.store.database import ConstraintViolation
from tests.store_backends import StoreBackend, on_postgres


class RegistryTests(unittest.TestCase):
    def test_all_37_registry_types(self):
        self.assertEqual(sorted(PAL_TYPES), [f"{i:04d}" for i in range(1, 38)])

    def test_lookup_accepts_short_forms(self):
        self.assertEqual(pal_type("24").code, "0024")
        self.assertEqual(pal_type(26).name, "Firmware Package")
        for bad in ("0000", "0038", "abcd", "", "00024"):
            self.assertRaises(UnknownPalType, pal_type, bad)

    def test_receipt_types_point_to_the_return_operations(self):
        for code, t in PAL_TYPES.items():
            if t.receipt_type:
                receipt = PAL_TYPES[t.receipt_type]
                self.assertEqual(receipt.operation, t.operation + "/return", code)
                self.assertTrue(receipt.notification)
        self.assertEqual(PAL_TYPES["0024"].receipt_type, "0025")
        self.assertEqual(PAL_TYPES["0036"].receipt_type, "0037")

    def test_operations(self):
        self.assertEqual(types_for("tamp"), ("0028", "0030", "0032", "0034", "0036"))
        self.assertEqual(types_for("symmetrickeys"), ("0024",))
        self.assertEqual(types_for("eecerts"), ("0003",))
        self.assertEqual(PAL_TYPES["0004"].operation, "crls")
        self.assertEqual(PAL_TYPES["0010"].operation, "simplereenroll")
        self.assertIn("0001", DERIVED)
        self.assertIn("0025", DERIVED)


class StoreCase(StoreBackend, unittest.TestCase):
    def setUp(self):
        self.path = self.store_location()
        self.store = self.open()
        for name, labels in (("alice", ["default"]), ("bob", ["default", "iot"]), ("carol", ["*"]),
                             ("dave", ["iot"])):
            self.store.clients.add_client(name, "x", labels)

    def open(self) -> Store:
        store = Store(self.path)
        self.addCleanup(store.close)
        return store

    def queue(self, target_kind="client", target="alice", label="default", pal_type="0026", **kw):
        kw.setdefault("content", b"\x30\x03\x02\x01\x05")
        return self.store.packages.queue_package(label=label, pal_type=pal_type, target_kind=target_kind, target=target,
                                        **kw)

    def seen_by(self, client, label="default", types=None):
        return [o.package.id for o in self.store.packages.offers(client, label, types)]


class QueueTests(StoreCase):
    def test_queue_records_everything(self):
        p = self.queue(name="fw 1.2", media_type="application/cms", receipt_requested=True,
                       key_package_id=b"\x01\x02", details={"version": "1.2"})
        again = self.store.packages.package(p.id)
        self.assertEqual(again, p)
        self.assertEqual(p.pal_type, "0026")
        self.assertEqual(p.size, 5)
        self.assertEqual(p.content, b"\x30\x03\x02\x01\x05")
        self.assertTrue(p.receipt_requested)
        self.assertEqual(p.key_package_id, b"\x01\x02")
        self.assertEqual(p.details, {"version": "1.2"})
        self.assertIsNone(p.withdrawn_at)
        self.assertRegex(p.created_at, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
        event = self.store.audit.events(1)[0]
        self.assertEqual((event.operation, event.client), ("publish", "alice"))
        self.assertIn(f"package {p.id} type 0026", event.detail)

    def test_per_client_content_needs_a_size(self):
        self.assertRaises(ValueError, self.queue, content=None)
        p = self.queue(content=None, size=300, reference="sym-7")
        self.assertEqual((p.size, p.content, p.reference), (300, None, "sym-7"))

    def test_refusals(self):
        self.assertRaises(UnknownPalType, self.queue, pal_type="0099")
        self.assertRaises(ValueError, self.queue, pal_type="0001")  # derived
        self.assertRaises(ValueError, self.queue, pal_type="0025")  # derived receipt request
        self.assertRaises(ValueError, self.queue, target_kind="everyone")
        self.assertRaises(ValueError, self.queue, target="")
        self.assertEqual(self.store.packages.packages(), [])

    def test_withdraw(self):
        p = self.queue()
        self.assertTrue(self.store.packages.withdraw_package(p.id))
        self.assertFalse(self.store.packages.withdraw_package(p.id))
        self.assertEqual(self.seen_by("alice"), [])
        self.assertEqual(self.store.packages.packages(), [])
        self.assertEqual(len(self.store.packages.packages(include_withdrawn=True)), 1)


class VisibilityTests(StoreCase):
    def test_client_target(self):
        p = self.queue(target="alice")
        self.assertEqual(self.seen_by("alice"), [p.id])
        self.assertEqual(self.seen_by("bob"), [])
        self.assertEqual(self.seen_by("alice", "iot"), [])  # another label's PAL

    def test_group_target(self):
        self.store.groups.add_to_group("field", ["alice", "bob"])
        p = self.queue(target_kind="group", target="field")
        self.assertEqual(self.seen_by("alice"), [p.id])
        self.assertEqual(self.seen_by("bob"), [p.id])
        self.assertEqual(self.seen_by("carol"), [])
        self.store.groups.add_to_group("field", ["carol"])  # a later member gets it too
        self.assertEqual(self.seen_by("carol"), [p.id])
        self.assertEqual(self.store.groups.groups(), {"field": ["alice", "bob", "carol"]})
        self.assertEqual(self.store.groups.groups_of("bob"), ["field"])

    def test_offered_stays_visible_after_leaving_the_group(self):
        self.store.groups.add_to_group("field", ["alice", "bob"])
        p = self.queue(target_kind="group", target="field")
        self.seen_by("alice")
        self.store.groups.remove_from_group("field", ["alice", "bob"])
        self.assertEqual(self.seen_by("alice"), [p.id])  # it was offered: still hers
        self.assertEqual(self.seen_by("bob"), [])  # never offered

    def test_label_target(self):
        p = self.queue(target_kind="label", target="iot", label="iot")
        self.assertEqual(self.seen_by("bob", "iot"), [p.id])
        self.assertEqual(self.seen_by("dave", "iot"), [p.id])
        self.assertEqual(self.seen_by("bob", "default"), [])

    def test_type_filter(self):
        fw = self.queue(pal_type="0026")
        sym = self.queue(pal_type="0024")
        self.assertEqual(self.seen_by("alice", types=types_for("firmware")), [fw.id])
        self.assertEqual(self.seen_by("alice", types=types_for("symmetrickeys")), [sym.id])
        self.assertEqual(self.seen_by("alice", types=()), [])


class DeliveryTests(StoreCase):
    def test_states(self):
        p = self.queue(receipt_requested=True)
        self.assertIsNone(self.store.packages.delivery(p.id, "alice"))
        [offer] = self.store.packages.offers("alice", "default")
        self.assertEqual(offer.delivery.state, "offered")
        self.assertTrue(offer.awaiting_return)
        first_offer = offer.delivery.offered_at
        [offer] = self.store.packages.offers("alice", "default")
        self.assertEqual(offer.delivery.offered_at, first_offer)  # recorded once
        d = self.store.packages.mark_downloaded(p.id, "alice")
        self.assertEqual((d.state, d.downloads), ("downloaded", 1))
        d = self.store.packages.mark_downloaded(p.id, "alice")
        self.assertEqual(d.downloads, 2)
        d = self.store.packages.record_error(p.id, "alice", 10, return_der=b"\x30\x00")
        self.assertEqual((d.state, d.error_code, d.return_der), ("error", 10, b"\x30\x00"))
        d = self.store.packages.record_receipt(p.id, "alice", return_der=b"\x30\x01\x00")
        self.assertEqual(d.state, "receipt")
        self.assertEqual(d.error_code, 10)  # the earlier error stays on record
        [offer] = self.store.packages.offers("alice", "default")
        self.assertFalse(offer.awaiting_return)
        d = self.store.packages.record_error(p.id, "alice", 11)  # the latest return wins, even within a second
        self.assertEqual((d.state, d.error_code), ("error", 11))
        operations = [e.operation for e in reversed(self.store.audit.events(10))]
        self.assertEqual(operations, ["publish", "download", "download", "error", "receipt", "error"])

    def test_returns_for_packages_never_offered_are_refused(self):
        p = self.queue(target="bob")
        self.assertRaises(NotOffered, self.store.packages.record_receipt, p.id, "alice")
        self.assertRaises(NotOffered, self.store.packages.record_error, p.id, "alice", 1)
        self.assertRaises(NotOffered, self.store.packages.mark_downloaded, p.id, "alice")
        # bob has not seen it yet either
        self.assertRaises(NotOffered, self.store.packages.record_receipt, p.id, "bob")
        self.assertRaises(NotOffered, self.store.packages.record_receipt, 9999, "bob")
        self.assertIsNone(self.store.packages.delivery(p.id, "alice"))
        self.assertNotIn("receipt", [e.operation for e in self.store.audit.events()])

    def test_per_client_content(self):
        p = self.queue(target_kind="label", target="default", content=None, size=100,
                       contents={"alice": b"for alice"})
        [a] = self.store.packages.offers("alice", "default")
        [b] = self.store.packages.offers("bob", "default")
        self.assertEqual((a.body, a.size), (b"for alice", 9))
        self.assertEqual((b.body, b.size), (None, 100))
        self.store.packages.mark_downloaded(p.id, "bob", content=b"built for bob", key_package_id=b"kb")
        [b] = self.store.packages.offers("bob", "default")
        self.assertEqual(b.body, b"built for bob")
        self.assertEqual(b.key_package_id, b"kb")

    def test_key_package_id_lookup_never_offers(self):
        p = self.queue(key_package_id=b"pkg-1")
        self.assertIsNone(self.store.packages.offer_by_key_package_id("alice", "default", b"pkg-1"))
        self.store.packages.offers("alice", "default")
        found = self.store.packages.offer_by_key_package_id("alice", "default", b"pkg-1")
        self.assertEqual(found.package.id, p.id)
        self.assertIsNone(self.store.packages.offer_by_key_package_id("bob", "default", b"pkg-1"))
        self.assertIsNone(self.store.packages.offer_by_key_package_id("alice", "default", b"pkg-2"))
        self.assertIsNone(self.store.packages.offer_by_key_package_id("alice", "iot", b"pkg-1"))

    def test_next_offer_order(self):
        first = self.queue(receipt_requested=True)
        second = self.queue()
        offers = self.store.packages.offers("alice", "default")
        self.assertEqual(next_offer(offers).package.id, first.id)
        self.store.packages.mark_downloaded(first.id, "alice")
        self.assertEqual(next_offer(self.store.packages.offers("alice", "default")).package.id, second.id)
        self.store.packages.mark_downloaded(second.id, "alice")
        # both downloaded: the one still waiting for its receipt
        self.assertEqual(next_offer(self.store.packages.offers("alice", "default")).package.id, first.id)
        self.store.packages.record_receipt(first.id, "alice")
        self.assertEqual(next_offer(self.store.packages.offers("alice", "default")).package.id, second.id)
        self.assertIsNone(next_offer([]))

    def test_report_lists_every_targeted_client(self):
        self.store.groups.add_to_group("g", ["alice", "zed"])
        group = self.queue(target_kind="group", target="g")
        label = self.queue(target_kind="label", target="iot", label="iot")
        self.store.packages.offers("alice", "default")
        self.store.packages.mark_downloaded(group.id, "alice")
        report = {r.package.id: r for r in self.store.packages.package_report()}
        states = {c: (d.state if d else "queued") for c, d in report[group.id].deliveries}
        self.assertEqual(states, {"alice": "downloaded", "zed": "queued"})
        self.assertEqual([c for c, _ in report[label.id].deliveries], ["bob", "carol", "dave"])
        only = self.store.packages.package_report(client="zed")
        self.assertEqual([r.package.id for r in only], [group.id])

    def test_durable_across_reopen(self):
        p = self.queue(receipt_requested=True)
        self.store.packages.offers("alice", "default")
        self.store.packages.mark_downloaded(p.id, "alice")
        self.store.packages.record_receipt(p.id, "alice")
        self.store.close()
        reopened = Store(self.path)
        self.addCleanup(reopened.close)
        self.assertEqual(reopened.packages.delivery(p.id, "alice").state, "receipt")
        self.assertEqual(reopened.packages.package(p.id).size, 5)

    def test_standing_downloads_and_results(self):
        self.store.packages.record_standing_downloads("alice", "default", {"crl": "7", "arl": "2"})
        self.store.packages.record_standing_downloads("alice", "default", {"crl": "8"})
        found = self.store.packages.standing_downloads("alice", "default")
        self.assertEqual((found["crl"].version, found["arl"].version), ("8", "2"))
        self.assertEqual(self.store.packages.standing_downloads("alice", "iot"), {})
        self.assertRaises(ValueError, self.store.packages.record_standing_downloads, "alice", "default", {"x": "1"})
        self.store.packages.mark_result_delivered(4)
        self.assertEqual(list(self.store.packages.delivered_results([4, 5])), [4])

    def test_tables_and_constraints(self):
        db = self.store.db
        self.assertTrue({"packages", "deliveries", "client_groups", "standing_downloads",
                         "enrollment_results"} <= db.tables())
        with self.assertRaises(ConstraintViolation):  # the CHECK on target_kind: an integrity error too
            db.execute("INSERT INTO packages (label, pal_type, target_kind, target, size, created_at)"
                       " VALUES ('default', '0026', 'nobody', 'x', 0, 'now')")


class PackageQueueTests(StoreCase):
    """The Deferred API the server uses runs the same calls on the store thread."""

    @defer.inlineCallbacks
    def test_round_trip(self):
        packages = PackageQueue(self.store)
        p = yield packages.queue(label="default", pal_type="0024", target_kind="client", target="alice",
                                 content=b"\x30\x00", receipt_requested=True, key_package_id=b"k")
        offer = yield packages.next_for("alice", "default", types_for("symmetrickeys"))
        self.assertEqual(offer.package.id, p.id)
        nothing = yield packages.next_for("bob", "default", types_for("symmetrickeys"))
        self.assertIsNone(nothing)
        yield packages.mark_downloaded(p.id, "alice")
        found = yield packages.find_by_key_package_id("alice", "default", b"k")
        self.assertEqual(found.package.id, p.id)
        d = yield packages.record_error(p.id, "alice", 3)
        self.assertEqual(d.state, "error")
        with self.assertRaises(NotOffered):
            yield packages.record_receipt(p.id, "bob")


QueueTestsOnPostgres = on_postgres(QueueTests)
VisibilityTestsOnPostgres = on_postgres(VisibilityTests)
DeliveryTestsOnPostgres = on_postgres(DeliveryTests)
PackageQueueTestsOnPostgres = on_postgres(PackageQueueTests)
