"""store/deadline.py: store calls answered within a deadline (503, not a
hang, when the database holds a query), queued calls skipped once their
caller was answered, and calls resuming when the stuck one returns."""
from __future__ import annotations

import threading
import time

from twisted.internet import defer, task, reactor
from twisted.trial import unittest

from estappliance.errors import StoreUnavailable
from estappliance.store.deadline import StoreCalls
from estappliance.threads import SingleThread


def sleep(seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


class DeadlineTests(unittest.TestCase):
    def setUp(self):
        self.thread = SingleThread("test-store")
        self.addCleanup(self.thread.stop)
        self.calls = StoreCalls(self.thread, timeout=0.3)
        self.release = threading.Event()
        self.addCleanup(self.release.set)
        self.ran = []

    def hung_query(self):
        self.release.wait(30)
        self.ran.append("hung")
        return "late"

    def write(self, name):
        self.ran.append(name)
        return name

    @defer.inlineCallbacks
    def test_an_answer_in_time_is_passed_on(self):
        self.assertEqual((yield self.calls.run(self.write, "a")), "a")
        with self.assertRaises(ZeroDivisionError):
            yield self.calls.run(lambda: 1 / 0)

    @defer.inlineCallbacks
    def test_a_hung_call_is_503_then_new_calls_fail_at_once_and_resume_when_it_returns(self):
        started = time.monotonic()
        hung = self.calls.run(self.hung_query)
        queued = self.calls.run(self.write, "queued-behind")
        with self.assertRaises(StoreUnavailable):
            yield hung
        self.assertLess(time.monotonic() - started, 5)
        with self.assertRaises(StoreUnavailable):
            yield queued
        self.assertIsNotNone(self.calls.stuck_since)
        before = time.monotonic()
        with self.assertRaises(StoreUnavailable) as raised:
            yield self.calls.run(self.write, "while-stuck")
        self.assertLess(time.monotonic() - before, 0.2)  # not queued behind the stuck call
        self.assertIn("has not returned", str(raised.exception))
        self.release.set()
        for _ in range(50):
            if self.calls.stuck_since is None:
                break
            yield sleep(0.05)
        self.assertIsNone(self.calls.stuck_since)
        self.assertEqual((yield self.calls.run(self.write, "after")), "after")
        # The call queued behind the hung one was skipped: its caller had its 503.
        self.assertEqual(self.ran, ["hung", "after"])

    @defer.inlineCallbacks
    def test_no_deadline_without_a_timeout(self):
        calls = StoreCalls(self.thread)
        d = calls.run(self.hung_query)
        yield sleep(0.5)
        self.assertFalse(d.called)
        self.release.set()
        self.assertEqual((yield d), "late")
