"""Group commit: many certificates, one fsync; each caller hears only of its own row."""
from __future__ import annotations

import datetime
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from estappliance.store import AlreadyIssued, DuplicateSerial, Store, on_store_thread
from estappliance.store.group import GroupCommitter
from tests.store_backends import StoreBackend, on_postgres

NOW = datetime.datetime.now(datetime.timezone.utc)


def item(serial, **kw):
    return dict(serial=serial, subject=f"CN={serial}", not_before=NOW, not_after=NOW, label="default",
                client="alice", der=b"\x30\x00", **kw)


class GroupCommitTests(StoreBackend, unittest.TestCase):
    def setUp(self):
        self.store = Store(self.store_location())
        self.addCleanup(lambda: on_store_thread(self.store.close))

    def test_batch_items_stand_alone(self):
        self.store.certificates.record_certificate(**item(1))
        results = self.store.certificates.record_certificates([item(2), item(1), item(3), item(4, pending_id=999)])
        self.assertIsNone(results[0])
        self.assertIsInstance(results[1], DuplicateSerial)
        self.assertIsNone(results[2])
        self.assertIsInstance(results[3], AlreadyIssued)
        self.assertEqual(self.store.certificates.count_certificates(), 3)
        self.assertEqual(self.store.certificates.certificate(1).subject, "CN=1")
        self.assertIsNone(self.store.certificates.certificate(4))
        issued = [e for e in self.store.audit.events(10) if e.operation == "issue"]
        self.assertEqual(len(issued), 3)  # no audit line for the rows kept out

    @defer.inlineCallbacks
    def test_concurrent_records_share_commits(self):
        batches = []
        original = self.store.certificates.record_certificates

        def spy(items):
            batches.append(len(items))
            return original(items)
        self.store.certificates.record_certificates = spy
        group = GroupCommitter(self.store)
        outcomes = yield defer.DeferredList([group.record_certificate(**item(100 + i)) for i in range(50)]
                                            + [group.record_certificate(**item(100))], consumeErrors=True)
        self.assertEqual(sum(batches), 51)
        self.assertLessEqual(len(batches), 3)  # the first alone, then the rest together
        self.assertTrue(all(ok for ok, _ in outcomes[:50]))
        ok, failure = outcomes[50]
        self.assertFalse(ok)
        self.assertIsInstance(failure.value, DuplicateSerial)
        count = yield on_store_thread(self.store.certificates.count_certificates)
        self.assertEqual(count, 50)

    @defer.inlineCallbacks
    def test_a_failed_commit_reaches_every_caller(self):
        def broken(items):
            raise OSError("disk full")
        self.store.certificates.record_certificates = broken
        group = GroupCommitter(self.store)
        outcomes = yield defer.DeferredList([group.record_certificate(**item(i)) for i in range(3)],
                                            consumeErrors=True)
        self.assertEqual([f.type for _, f in outcomes], [OSError] * 3)

    def test_a_large_batch_is_recorded_whole_and_audited(self):
        results = self.store.certificates.record_certificates([item(1000 + i) for i in range(256)])
        self.assertEqual(results, [None] * 256)
        self.assertEqual(self.store.certificates.count_certificates(), 256)
        self.assertEqual(self.store.certificates.certificate(1000 + 255).subject, f"CN={1000 + 255}")
        issued = [e for e in self.store.audit.events(300) if e.operation == "issue"]
        self.assertEqual(len(issued), 256)

    def test_a_serial_twice_in_one_batch_keeps_the_first(self):
        results = self.store.certificates.record_certificates([item(7), item(8), item(7)])
        self.assertEqual(results[:2], [None, None])
        self.assertIsInstance(results[2], DuplicateSerial)
        self.assertEqual(self.store.certificates.count_certificates(), 2)
        self.assertEqual(len([e for e in self.store.audit.events(10) if e.operation == "issue"]), 2)


GroupCommitTestsOnPostgres = on_postgres(GroupCommitTests)
