"""Issued CRLs and ARLs: their numbers (monotonic per kind) and bytes."""
from __future__ import annotations

from dataclasses import dataclass

from .audit_tables import insert_audit
from .tables import Repository


@dataclass(frozen=True)
class CrlRecord:
    kind: str  # "crl" (end entities) or "arl" (CA certificates)
    number: int
    this_update: str
    next_update: str
    der: bytes


class CrlTables(Repository):
    def next_crl_number(self, kind: str) -> int:
        row = self._db.execute("SELECT MAX(number) FROM crls WHERE kind=?", (kind,)).fetchone()
        return (row[0] or 0) + 1

    def record_crl(self, kind: str, number: int, this_update: str, next_update: str, der: bytes) -> None:
        with self._writing():
            self._db.execute("INSERT INTO crls VALUES (?, ?, ?, ?, ?)", (kind, number, this_update, next_update, der))
            insert_audit(self._db, "crl", "ok", detail=f"{kind} number {number}", at=this_update)

    def latest_crl(self, kind: str) -> CrlRecord | None:
        row = self._db.execute("SELECT kind, number, this_update, next_update, der FROM crls WHERE kind=?"
                               " ORDER BY number DESC LIMIT 1", (kind,)).fetchone()
        return None if row is None else CrlRecord(*row)

    def revoked_certificates(self, *, ca_certificates: bool) -> list[tuple[int, str, str]]:
        """(serial, revoked_at, reason) of revoked certificates, end-entity or CA ones."""
        rows = self._db.execute("SELECT serial, revoked_at, revocation_reason, label FROM certificates"
                                " WHERE status='revoked' ORDER BY revoked_at")
        out = []
        for serial, at, reason, label in rows:
            if (label == "(ca)") == ca_certificates:
                out.append((int(serial, 16), at, reason))
        return out
