"""Leases: a job that exactly one node may run at a time (the CRL schedule)
is run by whoever holds its lease. The holder renews it well within its
term; when the holder dies, another node takes it once the term has run out."""
from __future__ import annotations

from dataclasses import dataclass

from .tables import Repository


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: float  # seconds since the epoch
    taken_at: float  # when this holder took it (kept while it renews)


class LeaseTables(Repository):
    def take(self, name: str, holder: str, term: float, now: float) -> bool:
        """Take or renew the lease ``name`` for ``term`` seconds: True if
        ``holder`` has it now, False while another holder's term runs."""
        with self._writing():
            row = self._db.execute("SELECT holder, expires_at FROM leases WHERE name=?", (name,)).fetchone()
            if row is not None and row[0] != holder and row[1] > now:
                return False
            taken_at = now if row is None or row[0] != holder else None
            self._db.execute("INSERT INTO leases (name, holder, expires_at, taken_at) VALUES (?, ?, ?, ?)"
                             " ON CONFLICT (name) DO UPDATE SET holder=excluded.holder,"
                             " expires_at=excluded.expires_at,"
                             " taken_at=COALESCE(?, leases.taken_at)", (name, holder, now + term, now, taken_at))
        return True

    def release(self, name: str, holder: str) -> None:
        """Give the lease up at once (a clean shutdown), if ``holder`` has it."""
        with self._writing():
            self._db.execute("DELETE FROM leases WHERE name=? AND holder=?", (name, holder))

    def lease(self, name: str) -> Lease | None:
        row = self._db.execute("SELECT name, holder, expires_at, taken_at FROM leases WHERE name=?",
                               (name,)).fetchone()
        return None if row is None else Lease(*row)
