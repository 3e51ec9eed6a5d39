"""Leases (store/lease_tables.py, ca/lease.py): one node runs the CRL
schedule; another takes over when the holder's term runs out or it stops."""
from __future__ import annotations


from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from estappliance.ca.crl import CrlSchedule
from estappliance.ca.lease import LeaseKeeper
from estappliance.store import Store, on_store_thread
from tests.store_backends import StoreBackend, on_postgres


class LeaseTableTests(StoreBackend, unittest.TestCase):
    def setUp(self):
        self.store = Store(self.store_location())
        self.addCleanup(self.store.close)
        self.leases = self.store.leases

    def test_one_holder_at_a_time_and_takeover_after_the_term(self):
        self.assertTrue(self.leases.take("crl-schedule", "node-a", 45, now=1000.0))
        self.assertFalse(self.leases.take("crl-schedule", "node-b", 45, now=1010.0))
        self.assertTrue(self.leases.take("crl-schedule", "node-a", 45, now=1020.0))  # renewed
        lease = self.leases.lease("crl-schedule")
        self.assertEqual((lease.holder, lease.expires_at, lease.taken_at), ("node-a", 1065.0, 1000.0))
        self.assertFalse(self.leases.take("crl-schedule", "node-b", 45, now=1064.0))
        self.assertTrue(self.leases.take("crl-schedule", "node-b", 45, now=1066.0))  # node-a's term ran out
        lease = self.leases.lease("crl-schedule")
        self.assertEqual((lease.holder, lease.taken_at), ("node-b", 1066.0))
        self.assertFalse(self.leases.take("crl-schedule", "node-a", 45, now=1070.0))

    def test_release_frees_it_at_once_but_only_by_its_holder(self):
        self.assertTrue(self.leases.take("crl-schedule", "node-a", 45, now=1000.0))
        self.leases.release("crl-schedule", "node-b")
        self.assertFalse(self.leases.take("crl-schedule", "node-b", 45, now=1001.0))
        self.leases.release("crl-schedule", "node-a")
        self.assertIsNone(self.leases.lease("crl-schedule"))
        self.assertTrue(self.leases.take("crl-schedule", "node-b", 45, now=1002.0))

    def test_leases_are_independent(self):
        self.assertTrue(self.leases.take("one", "node-a", 45, now=1000.0))
        self.assertTrue(self.leases.take("two", "node-b", 45, now=1000.0))


LeaseTableTestsOnPostgres = on_postgres(LeaseTableTests)


class CountingIssuer:
    """Stands for CaCrls: counts the checks the schedule makes."""

    def __init__(self) -> None:
        self.checks = 0

    def current(self, kind: str, reissue_before: object) -> defer.Deferred[None]:
        self.checks += 1
        return defer.succeed(None)


class KeeperTests(StoreBackend, unittest.TestCase):
    def setUp(self):
        self.store = Store(self.store_location())
        self.addCleanup(lambda: on_store_thread(self.store.close))

    def node(self, name: str, term: float = 45.0) -> tuple[LeaseKeeper, CrlSchedule, CountingIssuer]:
        issuer = CountingIssuer()
        schedule = CrlSchedule(issuer, reissue_before=None, check_minutes=60)  # type: ignore[arg-type]
        keeper = LeaseKeeper(self.store, "crl-schedule", schedule.check, term=term, holder=name)
        schedule.lease = keeper
        return keeper, schedule, issuer

    @defer.inlineCallbacks
    def test_only_the_holder_checks_and_a_clean_stop_hands_over(self):
        keeper_a, schedule_a, issuer_a = self.node("node-a")
        keeper_b, schedule_b, issuer_b = self.node("node-b")
        yield keeper_a.renew()
        yield keeper_b.renew()
        self.assertEqual((keeper_a.holding, keeper_b.holding), (True, False))
        self.assertEqual((issuer_a.checks, issuer_b.checks), (2, 0))  # taking it ran a check (CRL and ARL)
        yield schedule_a.check()
        yield schedule_b.check()
        self.assertEqual((issuer_a.checks, issuer_b.checks), (4, 0))
        keeper_a.startService()
        yield keeper_a.stopService()  # releases
        self.assertFalse(keeper_a.holding)
        yield keeper_b.renew()
        self.assertTrue(keeper_b.holding)
        self.assertEqual(issuer_b.checks, 2)
        yield schedule_a.check()
        self.assertEqual(issuer_a.checks, 4)

    @defer.inlineCallbacks
    def test_a_dead_holder_is_taken_over_after_its_term(self):
        keeper_a, _, _ = self.node("node-a", term=0.3)
        keeper_b, _, issuer_b = self.node("node-b", term=0.3)
        yield keeper_a.renew()
        yield keeper_b.renew()
        self.assertFalse(keeper_b.holding)
        # node-a dies: it renews no more.
        yield deferLater(0.4)
        self.assertFalse(keeper_a.holding)  # its own clock says the term ran out: it stops running the job too
        yield keeper_b.renew()
        self.assertTrue(keeper_b.holding)
        self.assertEqual(issuer_b.checks, 2)

    @defer.inlineCallbacks
    def test_a_store_failure_stops_the_job_until_renewed(self):
        keeper, schedule, issuer = self.node("node-a")
        yield keeper.renew()
        self.assertTrue(keeper.holding)
        working = self.store.leases

        class Away:
            def take(self, *args: object) -> bool:
                raise OSError("database away")
        self.store.leases = Away()  # type: ignore[assignment]
        yield keeper.renew()
        self.assertFalse(keeper.holding)
        yield schedule.check()
        self.assertEqual(issuer.checks, 2)
        self.store.leases = working
        yield keeper.renew()
        self.assertTrue(keeper.holding)
        self.assertEqual(issuer.checks, 4)  # taken again: checked at once


KeeperTestsOnPostgres = on_postgres(KeeperTests)


def deferLater(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


