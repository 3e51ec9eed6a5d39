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
