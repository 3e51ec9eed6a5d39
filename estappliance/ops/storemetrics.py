"""Figures the store holds, read when /metrics is scraped (a custom
prometheus_client collector): pending approvals, packages waiting and
delivered by PAL type, the current CRL's age and time to nextUpdate,
certificates issued and expiring within 30 days (unrevoked).

The queries run off the reactor (the scrape's thread) over a read-only connection, and their
answer is kept ``cache_seconds`` (counting a million certificates takes a
while; a scrape every few seconds should not repeat it).
"""
from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from ..config import StoreConfig
from ..errors import StoreUnavailable
from ..store.database import Database
from ..store.db import open_database


EXPIRY_HORIZON = datetime.timedelta(days=30)


def read_figures(db: Database) -> dict:
    """Blocking: one pass over the store."""
    now = datetime.datetime.now(datetime.timezone.utc)
    figures: dict = {}
    figures["pending"] = db.execute("SELECT COUNT(*) FROM pending WHERE state='pending'").fetchone()[0]
    # Both counts read indexes only (a million rows: the covering serial and
    # client/expiry indexes, then the few revoked ones), never the table.
    figures["issued"] = db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0]
    horizon = (now.isoformat(), (now + EXPIRY_HORIZON).isoformat())
    ending = db.execute("SELECT COUNT(*) FROM certificates WHERE not_after > ? AND not_after <= ?",
                        horizon).fetchone()[0]
    revoked = db.execute("SELECT COUNT(*) FROM certificates WHERE status='revoked' AND not_after > ?"
                         " AND not_after <= ?", horizon).fetchone()[0]
    figures["expiring"] = ending - revoked
    waiting = dict(db.execute(
        "SELECT p.pal_type, COUNT(*) FROM deliveries d JOIN packages p ON p.id = d.package_id"
        " WHERE d.downloaded_at IS NULL AND p.withdrawn_at IS NULL GROUP BY p.pal_type"))
    # A package queued for one client waits before it is ever offered (no delivery row yet).
    for pal_type, n in db.execute(
            "SELECT pal_type, COUNT(*) FROM packages p WHERE target_kind='client' AND withdrawn_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.package_id = p.id) GROUP BY pal_type"):
        waiting[pal_type] = waiting.get(pal_type, 0) + n
    figures["waiting"] = waiting
    figures["delivered"] = dict(db.execute(
        "SELECT p.pal_type, COUNT(*) FROM deliveries d JOIN packages p ON p.id = d.package_id"
        " WHERE d.downloaded_at IS NOT NULL GROUP BY p.pal_type"))
    crls = {}
    for kind in ("crl", "arl"):
        row = db.execute("SELECT this_update, next_update FROM crls WHERE kind=? ORDER BY number DESC LIMIT 1",
                         (kind,)).fetchone()
        if row is not None:
            crls[kind] = ((now - datetime.datetime.fromisoformat(row[0])).total_seconds(),
                          (datetime.datetime.fromisoformat(row[1]) - now).total_seconds())
    figures["crls"] = crls
    return figures


class StoreCollector:
    """A prometheus_client collector over the store at ``where``."""

    def __init__(self, where: StoreConfig, cache_seconds: float = 15.0):
        self.where = where
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()  # scrapes may come from several threads
        self._figures: dict | None = None
        self._at = 0.0

    def figures(self) -> dict | None:
        with self._lock:
            if self._figures is None or time.monotonic() - self._at >= self.cache_seconds:
                if self.where.url is None and not self.where.path.exists():
                    return None
                try:
                    db = open_database(self.where, read_only=True)
                    try:
                        self._figures = read_figures(db)
                    finally:
                        db.close()
                except StoreUnavailable:
                    return self._figures  # the last figures read, if any: /metrics still answers
                self._at = time.monotonic()
            return self._figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        f = self.figures()
        if f is None:
            return
        yield GaugeMetricFamily("est_pending_approvals", "Enrollment requests waiting for an operator",
                                value=f["pending"])
        yield GaugeMetricFamily("est_certificates_recorded", "Certificates this CA issued, in the store",
                                value=f["issued"])
        yield GaugeMetricFamily("est_certificates_expiring_30d",
                                "Valid certificates whose notAfter falls within 30 days", value=f["expiring"])
        for name, key, doc in (("est_packages_waiting", "waiting", "Packages queued and not yet downloaded"),
                               ("est_packages_delivered", "delivered", "Package deliveries downloaded")):
            g = GaugeMetricFamily(name, doc, labels=["type"])
            for pal_type, n in sorted(f[key].items()):
                g.add_metric([pal_type], n)
            yield g
        age = GaugeMetricFamily("est_crl_age_seconds", "Seconds since the current CRL's thisUpdate", labels=["kind"])
        left = GaugeMetricFamily("est_crl_next_update_seconds", "Seconds until the current CRL's nextUpdate",
                                 labels=["kind"])
        for kind, (a, l) in sorted(f["crls"].items()):
            age.add_metric([kind], a)
            left.add_metric([kind], l)
        yield age
        yield left
