"""The store's figures on /metrics (ops/storemetrics.py), from a real store:
pending approvals, packages waiting and delivered by type, expiring
certificates, the current CRL's dates."""
from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

from twisted.trial import unittest

from estappliance.ops.storemetrics import StoreCollector, read_figures
from estappliance.config import StoreConfig
from estappliance.store import Store


class StoreFiguresTests(unittest.TestCase):
    def setUp(self):
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.path = Path(self.mktemp()) / "est.sqlite"
        self.store = Store(self.path)
        self.addCleanup(self.store.close)

    def certificate(self, serial: int, days_left: float) -> None:
        self.store.certificates.record_certificate(serial=serial, subject=f"CN=c{serial}", not_before=self.now,
                                      not_after=self.now + datetime.timedelta(days=days_left), label="default",
                                      client="alice", der=b"\x30\x00")

    def test_figures(self):
        self.store.certificates.add_pending(label="manual", client="alice", key_hash="k", subject="CN=x",
                               operation="simpleenroll", request=b"csr")
        self.certificate(1, 10)
        self.certificate(2, 100)
        self.certificate(3, -1)  # expired: not "expiring"
        self.certificate(4, 20)
        self.store.certificates.revoke(4, "keyCompromise")  # revoked: not "expiring" either
        self.store.packages.queue_package(label="default", pal_type="0024", target_kind="client", target="alice",
                                 content=b"key")
        firmware = self.store.packages.queue_package(label="default", pal_type="0026", target_kind="client", target="bob",
                                            content=b"fw")
        self.store.packages.offers("bob", "default")
        self.store.packages.mark_downloaded(firmware.id, "bob")
        this = (self.now - datetime.timedelta(hours=2)).replace(microsecond=0)
        self.store.crls.record_crl("crl", 1, this.isoformat(), (this + datetime.timedelta(hours=24)).isoformat(), b"")
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        self.addCleanup(db.close)
        f = read_figures(db)
        self.assertEqual((f["pending"], f["issued"], f["expiring"]), (1, 4, 1))
        self.assertEqual((f["waiting"], f["delivered"]), ({"0024": 1}, {"0026": 1}))
        age, left = f["crls"]["crl"]
        self.assertLess(abs(age - 2 * 3600), 60)
        self.assertLess(abs(left - 22 * 3600), 60)
        self.assertNotIn("arl", f["crls"])

    def test_collector_families(self):
        self.certificate(1, 5)
        families = {m.name: m for m in StoreCollector(StoreConfig(self.path), cache_seconds=0).collect()}
        self.assertEqual(families["est_certificates_expiring_30d"].samples[0].value, 1)
        self.assertEqual(families["est_pending_approvals"].samples[0].value, 0)
        self.assertEqual(families["est_packages_waiting"].samples, [])
