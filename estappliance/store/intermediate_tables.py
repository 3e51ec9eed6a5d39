"""CA certificates that clients sent between their own certificate and a
configured trust anchor, kept once a full TLS handshake's chain verified.

A TLS session resumed from a ticket (on any worker or node) carries the
client's certificate alone: OpenSSL's ticket holds the peer's certificate,
not the chain it sent. The RA completes such a path from here. Being here
grants nothing: a path must still end at an anchor (ra/auth.py).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .tables import Repository, now_text


class IntermediateTables(Repository):
    def remember_intermediates(self, certificates: Iterable[tuple[bytes, bytes]]) -> None:
        """(subject DER, certificate DER) pairs; those already kept are left as they are."""
        rows = [(hashlib.sha256(der).hexdigest(), subject, der, now_text()) for subject, der in certificates]
        if not rows:
            return
        with self._writing():
            self._db.executemany("INSERT INTO client_intermediates (fingerprint, subject, der, seen_at)"
                                 " VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING", rows)

    def intermediates_named(self, subject: bytes) -> list[bytes]:
        """The kept certificates (DER) whose subject is ``subject`` (DER)."""
        return [bytes(row[0]) for row in self._db.execute(
            "SELECT der FROM client_intermediates WHERE subject=? ORDER BY fingerprint", (subject,))]


__all__ = ["IntermediateTables"]
