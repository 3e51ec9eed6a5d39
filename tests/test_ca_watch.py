"""The CA watch (ca/generations.CaWatch) while the store is away: one
warning per outage, no traceback every few seconds, a note when it is back."""
from __future__ import annotations

from types import SimpleNamespace

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.trial import unittest

from estappliance.ca import generations
from estappliance.errors import StoreUnavailable


class StoreAwayTests(unittest.TestCase):
    def setUp(self):
        self.events = []
        self.patch(generations, "_log", Logger(observer=self.events.append))
        self.away = True

        def stamp():
            if self.away:
                raise StoreUnavailable("the store database is unreachable: connection refused")
            return ("same",)
        store = SimpleNamespace(generations=SimpleNamespace(generations_stamp=stamp))
        config = SimpleNamespace(server=SimpleNamespace(tls_cert=None), ca=SimpleNamespace(signer_cert_file=None))
        self.watch = generations.CaWatch(config, None, store, lambda gens: None)
        self.watch.stamp = (("same",), (None, None))

    def levels(self):
        return [(e["log_level"], e["log_format"]) for e in self.events]

    @defer.inlineCallbacks
    def test_one_warning_per_outage_and_a_note_when_back(self):
        for _ in range(3):
            changed = yield self.watch.check()
            self.assertFalse(changed)
        self.assertEqual([level for level, _ in self.levels()], [LogLevel.warn])
        self.assertIn("store is unavailable", self.levels()[0][1])
        self.assertNotIn("log_failure", self.events[0])
        self.away = False
        changed = yield self.watch.check()
        self.assertFalse(changed)
        self.assertEqual([level for level, _ in self.levels()], [LogLevel.warn, LogLevel.info])
        self.away = True
        yield self.watch.check()
        self.assertEqual([level for level, _ in self.levels()], [LogLevel.warn, LogLevel.info, LogLevel.warn])


class FollowTests(unittest.TestCase):
    """The primary's follow (this node's files after a ceremony step): run at
    the first check and after each change of the generations; a busy or
    failing follow is tried again at the next check, a failure said once."""

    def setUp(self):
        self.events = []
        self.patch(generations, "_log", Logger(observer=self.events.append))
        self.generations_stamp = ("gen", 1)
        store = SimpleNamespace(generations=SimpleNamespace(generations_stamp=lambda: self.generations_stamp))
        config = SimpleNamespace(server=SimpleNamespace(tls_cert=None), ca=SimpleNamespace(signer_cert_file=None))
        self.answers = []  # what each follow does: True (done), False (busy), or an exception
        self.follows = 0

        def follow():
            self.follows += 1
            answer = self.answers.pop(0) if self.answers else True
            return defer.fail(answer) if isinstance(answer, Exception) else defer.succeed(answer)
        self.watch = generations.CaWatch(config, None, store, lambda gens: None, follow=follow)
        self.watch.prime()

    def levels(self):
        return [e["log_level"] for e in self.events]

    @defer.inlineCallbacks
    def test_first_check_then_only_after_a_change(self):
        yield self.watch.check()
        yield self.watch.check()
        self.assertEqual(self.follows, 1)
        self.generations_stamp = ("gen", 2)
        self.patch(generations, "records", lambda config, store: [])
        self.patch(generations, "live", lambda found: [])
        self.watch.apply = lambda gens: None
        yield self.watch.check()
        yield self.watch.check()
        self.assertEqual(self.follows, 2)

    @defer.inlineCallbacks
    def test_busy_is_tried_again_and_a_failure_is_said_once(self):
        self.answers = [False, OSError("Permission denied: '/var/lib/est/ca/.ca-files.lock'"),
                        OSError("Permission denied"), True]
        for _ in range(5):
            yield self.watch.check()
        self.assertEqual(self.follows, 4)
        self.assertEqual(self.levels(), [LogLevel.warn, LogLevel.info])
        self.assertIn("Permission denied", self.events[0]["error"].args[0])
        self.assertNotIn("log_failure", self.events[0])
