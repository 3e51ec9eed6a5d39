"""token/worker.py's deadline on the one PKCS#11 thread, with plain functions
standing in for token calls: a call past its deadline is answered
TokenUnavailable, a stuck call makes later calls fail at once, queued calls
whose deadline passed are never run, and the recovery hook runs once the
stuck call returns, before anything else."""
from __future__ import annotations

import threading
import time

from twisted.internet import defer
from twisted.trial import unittest

from estappliance.errors import TokenUnavailable
from estappliance.threads import SingleThread
from estappliance.token.call_thread import TokenCalls

from . import support


class TokenCallsTests(unittest.TestCase):
    def setUp(self):
        self.thread = SingleThread("test-token-calls")
        self.addCleanup(self.thread.stop)
        self.ran: list[str] = []
        self.calls = TokenCalls(self.thread, timeout=0.3)
        self.calls.on_recovered = lambda: self.ran.append("recovered")

    def call(self, name: str, seconds: float = 0.0, release: threading.Event | None = None):
        def fn():
            if release is not None:
                release.wait(10)
            time.sleep(seconds)
            self.ran.append(name)
            return name
        fn.__name__ = name
        return self.calls.run(fn)

    @defer.inlineCallbacks
    def test_a_quick_call_is_answered_and_errors_pass_through(self):
        self.assertEqual((yield self.call("quick")), "quick")

        def broken():
            raise ValueError("no")
        yield self.assertFailure(self.calls.run(broken), ValueError)
        self.assertIsNone(self.calls.stuck_since)

    @defer.inlineCallbacks
    def test_a_stuck_call(self):
        release = threading.Event()
        self.addCleanup(release.set)
        start = time.monotonic()
        stuck = self.call("stuck", release=release)
        queued = self.call("queued")  # behind it, asked for before anyone knew
        yield self.assertFailure(stuck, TokenUnavailable)
        yield self.assertFailure(queued, TokenUnavailable)
        self.assertLess(time.monotonic() - start, 1.0)
        self.assertIsNotNone(self.calls.stuck_since)
        # while stuck: refused at once, never queued
        start = time.monotonic()
        yield self.assertFailure(self.call("while-stuck"), TokenUnavailable)
        self.assertLess(time.monotonic() - start, 0.1)
        release.set()
        for _ in range(100):
            if self.calls.stuck_since is None:
                break
            yield support.in_thread(time.sleep, 0.02)
        self.assertIsNone(self.calls.stuck_since)
        self.assertEqual((yield self.call("after")), "after")
        # the queued call was skipped (its caller had its answer), recovery ran before anything new
        self.assertEqual(self.ran, ["stuck", "recovered", "after"])

    @defer.inlineCallbacks
    def test_a_running_call_past_its_deadline_counts_as_stuck_until_it_returns(self):
        slow = self.call("slow", seconds=0.5)
        yield self.assertFailure(slow, TokenUnavailable)  # past its deadline: the request got its 503
        yield support.in_thread(time.sleep, 0.4)
        self.assertEqual(self.ran, ["slow", "recovered"])  # it was running: treated as stuck, then recovered
        self.assertIsNone(self.calls.stuck_since)
