"""What must survive a restart: clients, issued certificates, the audit trail.

SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk before it
returns, so a certificate recorded here is durable before the response that
carries it is sent. The class is blocking; the service calls it on the store
thread (``worker.on_store_thread``).
"""
from __future__ import annotations

import datetime
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    labels TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    label TEXT NOT NULL,
    client TEXT,
    issued_at TEXT NOT NULL,
    der BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'valid',
    revoked_at TEXT,
    revocation_reason TEXT
);
CREATE INDEX IF NOT EXISTS certificates_client ON certificates(client);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    client TEXT,
    label TEXT,
    operation TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT
);
"""
SCHEMA_VERSION = "1"


class DuplicateSerial(Exception):
    """A serial number is already taken (the caller re-signs with a new one)."""


class DuplicateClient(Exception):
    """A client of that name already exists."""


@dataclass(frozen=True)
class ClientRecord:
    name: str
    password_hash: str | None
    labels: tuple[str, ...]
    created_at: str

    def may_use(self, label: str) -> bool:
        return "*" in self.labels or label in self.labels


@dataclass(frozen=True)
class CertificateRecord:
    serial: int
    subject: str
    not_before: str
    not_after: str
    label: str
    client: str | None
    issued_at: str
    der: bytes
    status: str
    revoked_at: str | None
    revocation_reason: str | None


@dataclass(frozen=True)
class AuditEvent:
    at: str
    client: str | None
    label: str | None
    operation: str
    outcome: str
    detail: str | None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def serial_key(serial: int) -> str:
    """Serials are stored as lower-case hex without leading zeros."""
    return format(serial, "x")


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        self._db.close()

    # -- clients -------------------------------------------------------------

    def add_client(self, name: str, password_hash: str | None, labels: Iterable[str]) -> None:
        try:
            self._db.execute("INSERT INTO clients VALUES (?, ?, ?, ?)",
                             (name, password_hash, ",".join(labels), _now()))
        except sqlite3.IntegrityError:
            raise DuplicateClient(name) from None

    def set_client_password(self, name: str, password_hash: str) -> bool:
        cur = self._db.execute("UPDATE clients SET password_hash=? WHERE name=?", (password_hash, name))
        return cur.rowcount == 1

    def remove_client(self, name: str) -> bool:
        return self._db.execute("DELETE FROM clients WHERE name=?", (name,)).rowcount == 1

    def client(self, name: str) -> ClientRecord | None:
        row = self._db.execute("SELECT name, password_hash, labels, created_at FROM clients WHERE name=?",
                               (name,)).fetchone()
        return None if row is None else _client(row)

    def clients(self) -> list[ClientRecord]:
        rows = self._db.execute("SELECT name, password_hash, labels, created_at FROM clients ORDER BY name")
        return [_client(r) for r in rows]

    # -- certificates --------------------------------------------------------

    def record_certificate(self, *, serial: int, subject: str, not_before: datetime.datetime,
                           not_after: datetime.datetime, label: str, client: str | None, der: bytes,
                           audit_detail: str | None = None) -> None:
        """Record an issued certificate and its audit event in one durable commit."""
        now = _now()
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO certificates (serial, subject, not_before, not_after, label, client, issued_at, der)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (serial_key(serial), subject, not_before.isoformat(), not_after.isoformat(), label, client,
                     now, der))
                self._db.execute("INSERT INTO audit (at, client, label, operation, outcome, detail)"
                                 " VALUES (?, ?, ?, 'issue', 'ok', ?)", (now, client, label, audit_detail))
        except sqlite3.IntegrityError:
            raise DuplicateSerial(serial) from None

    def certificate(self, serial: int) -> CertificateRecord | None:
        row = self._db.execute(_CERT_SELECT + " WHERE serial=?", (serial_key(serial),)).fetchone()
        return None if row is None else _certificate(row)

    def certificates(self, client: str | None = None) -> list[CertificateRecord]:
        if client is None:
            rows = self._db.execute(_CERT_SELECT + " ORDER BY issued_at")
        else:
            rows = self._db.execute(_CERT_SELECT + " WHERE client=? ORDER BY issued_at", (client,))
        return [_certificate(r) for r in rows]

    def count_certificates(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0]

    # -- audit ---------------------------------------------------------------

    def audit(self, operation: str, outcome: str, *, client: str | None = None, label: str | None = None,
              detail: str | None = None) -> None:
        self._db.execute("INSERT INTO audit (at, client, label, operation, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
                         (_now(), client, label, operation, outcome, detail))

    def audit_events(self, limit: int = 100) -> list[AuditEvent]:
        rows = self._db.execute("SELECT at, client, label, operation, outcome, detail FROM audit"
                                " ORDER BY id DESC LIMIT ?", (limit,))
        return [AuditEvent(*r) for r in rows]


_CERT_SELECT = ("SELECT serial, subject, not_before, not_after, label, client, issued_at, der, status,"
                " revoked_at, revocation_reason FROM certificates")


def _client(row) -> ClientRecord:
    labels = tuple(x for x in row[2].split(",") if x)
    return ClientRecord(name=row[0], password_hash=row[1], labels=labels, created_at=row[3])


def _certificate(row) -> CertificateRecord:
    return CertificateRecord(int(row[0], 16), *row[1:])
