"""Digest nonce counts, kept where every worker (and every node sharing the
store) sees them, so a captured ``Authorization: Digest`` header is good for
one request only, whichever process it is replayed to and across restarts.

A count is accepted only if it is higher than the last one accepted for its
nonce: one atomic upsert per claim (``ON CONFLICT ... DO UPDATE ... WHERE
excluded.nc > nc``) whose row count says whether it won. Rows outlive their
nonce's lifetime by a margin, then are deleted.
"""
from __future__ import annotations

from typing import Iterable

from .tables import Repository

# The upsert changes a row only for a higher count; SQLite reports 0 rows otherwise.
_CLAIM = ("INSERT INTO digest_nonce_counts (nonce, nc, used_at) VALUES (?, ?, ?)"
          " ON CONFLICT(nonce) DO UPDATE SET nc=excluded.nc, used_at=excluded.used_at"
          " WHERE excluded.nc > digest_nonce_counts.nc")


class NonceCountTables(Repository):
    def claim_nonce_counts(self, claims: Iterable[tuple[str, int]], now: float,
                           forget_before: float | None = None) -> list[bool]:
        """For each (nonce, count): True if the count is higher than any
        accepted before for that nonce (and is now the last one), False for a
        replay. All in ONE durable commit; ``forget_before`` also deletes the
        counts of nonces last used before then (expired nonces)."""
        results = []
        with self._writing():
            for nonce, count in claims:
                results.append(self._db.execute(_CLAIM, (nonce, count, now)).rowcount == 1)
            if forget_before is not None:
                self._db.execute("DELETE FROM digest_nonce_counts WHERE used_at < ?", (forget_before,))
        return results

    def nonce_count(self, nonce: str) -> int | None:
        row = self._db.execute("SELECT nc FROM digest_nonce_counts WHERE nonce=?", (nonce,)).fetchone()
        return None if row is None else row[0]


__all__ = ["NonceCountTables"]
