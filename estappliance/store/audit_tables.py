"""The audit trail: who did what, when, with what outcome."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .database import Database
from .tables import Repository, now_text

# (at, client, label, operation, outcome, detail): one audit row
AuditRow = tuple[str, str | None, str | None, str, str, str | None]


def watch(db: Database, listener: Callable[[AuditRow], None]) -> None:
    """Call ``listener`` with every audit row written through ``db`` (ops/logs.py sends them to syslog)."""
    db.audit_listener = listener


def insert_audit(db: Database, operation: str, outcome: str, *, client: str | None = None,
                 label: str | None = None, detail: str | None = None, at: str | None = None) -> None:
    """The one writer of audit rows (inside the caller's transaction, if any)."""
    insert_audits(db, [(at or now_text(), client, label, operation, outcome, detail)])


def insert_audits(db: Database, rows: Sequence[AuditRow]) -> None:
    """Several rows in one statement (100 rows x 6 values stays under SQLite's oldest 999-variable limit)."""
    for start in range(0, len(rows), 100):
        chunk = rows[start:start + 100]
        db.execute("INSERT INTO audit (at, client, label, operation, outcome, detail) VALUES "
                   + ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk)), [value for row in chunk for value in row])
    if db.audit_listener is not None:
        for row in rows:
            db.audit_listener(row)


@dataclass(frozen=True)
class AuditEvent:
    at: str
    client: str | None
    label: str | None
    operation: str
    outcome: str
    detail: str | None


class AuditTables(Repository):
    def probe_commit(self) -> None:
        """One durable write transaction, for the readiness probe: the store commits."""
        with self._writing():
            self._db.execute("INSERT INTO meta (key, value) VALUES ('health_probe', ?)"
                             " ON CONFLICT (key) DO UPDATE SET value=excluded.value", (now_text(),))

    def record(self, operation: str, outcome: str, *, client: str | None = None, label: str | None = None,
               detail: str | None = None) -> None:
        insert_audit(self._db, operation, outcome, client=client, label=label, detail=detail, at=now_text())

    def events(self, limit: int = 100) -> list[AuditEvent]:
        rows = self._db.execute("SELECT at, client, label, operation, outcome, detail FROM audit"
                                " ORDER BY id DESC LIMIT ?", (limit,))
        return [AuditEvent(*r) for r in rows]
