"""Writers of one store, in turn: the file lock that orders them (store/writelock.py)."""
from __future__ import annotations

import datetime
import stat
import threading
from pathlib import Path

from twisted.trial import unittest

from estappliance.store import Store
from estappliance.store.writelock import WriterLock

NOW = datetime.datetime.now(datetime.timezone.utc)


class WriterLockTests(unittest.TestCase):
    def test_the_second_writer_waits_until_the_first_is_done(self):
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        first, second = WriterLock(path), WriterLock(path)  # two opens: like two processes
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        got = threading.Event()

        def take():
            with second.held():
                got.set()
        with first.held():
            t = threading.Thread(target=take)
            t.start()
            self.assertFalse(got.wait(0.3))
        self.assertTrue(got.wait(10))
        t.join()

    def test_the_lock_file_is_private_and_next_to_the_store(self):
        db = Path(self.mktemp()) / "est.sqlite"
        store = Store(db)
        self.addCleanup(store.close)
        lock = db.with_name("est.sqlite-writer.lock")
        self.assertTrue(lock.exists())
        self.assertEqual(stat.S_IMODE(lock.stat().st_mode) & 0o077, 0)

    def test_two_stores_on_one_file_commit_side_by_side(self):
        db = Path(self.mktemp()) / "est.sqlite"
        stores = [Store(db), Store(db)]
        for s in stores:
            self.addCleanup(s.close)
        errors = []

        def write(store, base):
            try:
                for n in range(50):
                    store.certificates.record_certificates([dict(serial=base + n * 2 + k, subject="CN=x", not_before=NOW,
                                                    not_after=NOW, label="default", client="c", der=b"\x30\x00")
                                               for k in range(2)])
            except Exception as e:  # reported below
                errors.append(e)
        threads = [threading.Thread(target=write, args=(s, 10_000 * (i + 1))) for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(stores[0].certificates.count_certificates(), 200)
