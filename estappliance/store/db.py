"""What must survive a restart: clients, issued certificates, the audit trail.

SQLite in WAL mode with ``synchronous=FULL``: a commit is on disk before it
returns, so a certificate recorded here is durable before the response that
carries it is sent. The class is blocking; the service calls it on the store
thread (``worker.on_store_thread``).
"""
from __future__ import annotations

import contextlib
import datetime
import itertools
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .. import metrics
from .crls import CrlTables
from .cmc_tables import CmcTables
from .generations import GenerationTables
from .nonces import NonceCountTables
from .package_tables import PackageTables
from .returns import ReturnLookups
from .keygen_tables import ServerKeygenTables
from .secret_tables import SecretTables
from .tamp import TampTables
from .writelock import WriterLock

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    labels TEXT NOT NULL,
    created_at TEXT NOT NULL,
    digest_ha1_sha256 TEXT,
    digest_ha1_md5 TEXT
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
    revocation_reason TEXT,
    replaces TEXT
);
CREATE INDEX IF NOT EXISTS certificates_client_expiry ON certificates(client, not_after);
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    client TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    subject TEXT NOT NULL,
    operation TEXT NOT NULL,
    csr BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    created_at TEXT NOT NULL,
    decided_at TEXT,
    serial TEXT,
    kind TEXT NOT NULL DEFAULT 'pkcs10',
    replaces TEXT
);
CREATE INDEX IF NOT EXISTS pending_lookup ON pending(label, client, key_hash);
-- Digest nonce counts (store/nonces.py): the last count accepted per nonce, for every worker.
CREATE TABLE IF NOT EXISTS digest_nonce_counts (nonce TEXT PRIMARY KEY, nc INTEGER NOT NULL, used_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS digest_nonce_counts_used ON digest_nonce_counts(used_at);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    client TEXT,
    label TEXT,
    operation TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT
);
-- CA generations (issue 14, store/generations.py): one row per CA key and
-- certificate; state next -> current -> retiring -> retired (or aborted).
CREATE TABLE IF NOT EXISTS ca_generations (
    id INTEGER PRIMARY KEY,
    key_label TEXT NOT NULL,
    key_type TEXT NOT NULL,
    state TEXT NOT NULL,
    cert BLOB,
    chain BLOB,
    csr BLOB,
    new_with_old BLOB,
    old_with_new BLOB,
    created_at TEXT NOT NULL,
    switched_at TEXT,
    retired_at TEXT
);
"""
SCHEMA_VERSION = "3"
# Columns added since version 1, added in place when an older file is opened.
INDEXES = """
DROP INDEX IF EXISTS certificates_client;  -- version 1's, replaced by certificates_client_expiry
CREATE INDEX IF NOT EXISTS certificates_replaces ON certificates(replaces) WHERE replaces IS NOT NULL;
"""
MIGRATIONS = [
    ("clients", "digest_ha1_sha256", "TEXT"),
    ("clients", "digest_ha1_md5", "TEXT"),
    ("certificates", "replaces", "TEXT"),
    ("pending", "kind", "TEXT NOT NULL DEFAULT 'pkcs10'"),
    ("pending", "replaces", "TEXT"),
]
# Version 3: /fullcmc's requests waiting for approval kept their kind and the
# certificate they renew in a table of their own; one pending table holds all.
MERGE_CMC_PENDING = """
UPDATE pending SET kind = (SELECT kind FROM cmc_pending WHERE pending_id = pending.id),
                   replaces = (SELECT replaces FROM cmc_pending WHERE pending_id = pending.id)
 WHERE id IN (SELECT pending_id FROM cmc_pending);
DROP TABLE cmc_pending;
"""


class DuplicateSerial(Exception):
    """A serial number is already taken (the caller re-signs with a new one)."""


class AlreadyIssued(Exception):
    """The approved request was fulfilled meanwhile (by a concurrent repeat)."""


class DuplicateClient(Exception):
    """A client of that name already exists."""


@dataclass(frozen=True)
class ClientRecord:
    name: str
    password_hash: str | None
    labels: tuple[str, ...]
    created_at: str
    digest_ha1: dict[str, str] = field(default_factory=dict)  # algorithm -> H(user:realm:password)

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
    replaces: int | None = None

    @property
    def revoked(self) -> bool:
        return self.status == "revoked"


@dataclass(frozen=True)
class PendingRequest:
    """A request waiting for (or decided by) an operator, of any operation."""

    id: int
    label: str
    client: str
    key_hash: str
    subject: str
    operation: str  # simpleenroll | simplereenroll | serverkeygen | fullcmc
    request: bytes  # DER, read as ``kind`` says
    state: str  # pending | approved | rejected | issued
    created_at: str
    decided_at: str | None
    serial: int | None
    kind: str = "pkcs10"  # pkcs10 (a CSR) | crmf (a CertReqMsg)
    replaces: int | None = None  # serial of the certificate it renews


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


class Store(CrlTables, PackageTables, ServerKeygenTables, CmcTables, TampTables, ReturnLookups, GenerationTables,
            NonceCountTables, SecretTables):
    def __init__(self, path: str | Path, *, read_only: bool = False):
        """``read_only``: a second connection for lookups, used from its own
        thread so that reads never queue behind a commit's fsync (WAL lets
        them run side by side). It creates nothing."""
        self.path = Path(path)
        self._write_lock: WriterLock | None = None
        if read_only:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                       isolation_level=None, timeout=30)
            self._db.execute("PRAGMA cache_size=-16000")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = WriterLock(self.path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA cache_size=-32000")  # 32 MB: the serial index of a big store stays in memory
        self._db.executescript(SCHEMA)
        # Feature tables live in their own modules as mixins with a TABLES script.
        for cls in reversed(type(self).__mro__):
            tables = cls.__dict__.get("TABLES")
            if tables:
                self._db.executescript(tables)
        self._migrate()

    def _migrate(self) -> None:
        with self._writing():
            for table, column, kind in MIGRATIONS:
                have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='cmc_pending'").fetchone():
                for statement in MERGE_CMC_PENDING.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        self._db.executescript(INDEXES)  # after the migrations: they may index new columns

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT), taken in turn
        with the other processes' writers (writelock.py)."""
        started = time.perf_counter()
        if self._write_lock is None:
            raise sqlite3.OperationalError("a read-only store connection does not write")
        with self._write_lock.held(), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            yield
        metrics.observe_commit(time.perf_counter() - started)

    def close(self) -> None:
        self._db.close()
        if self._write_lock is not None:
            self._write_lock.close()

    def reader(self) -> Store:
        """A read-only connection to the same file (see __init__)."""
        return type(self)(self.path, read_only=True)

    # -- clients -------------------------------------------------------------

    def add_client(self, name: str, password_hash: str | None, labels: Iterable[str],
                   digest_ha1: dict[str, str] | None = None) -> None:
        ha1 = digest_ha1 or {}
        try:
            self._db.execute("INSERT INTO clients (name, password_hash, labels, created_at, digest_ha1_sha256,"
                             " digest_ha1_md5) VALUES (?, ?, ?, ?, ?, ?)",
                             (name, password_hash, ",".join(labels), _now(), ha1.get("SHA-256"), ha1.get("MD5")))
        except sqlite3.IntegrityError:
            raise DuplicateClient(name) from None

    def set_client_password(self, name: str, password_hash: str, digest_ha1: dict[str, str] | None = None) -> bool:
        ha1 = digest_ha1 or {}
        cur = self._db.execute("UPDATE clients SET password_hash=?, digest_ha1_sha256=?, digest_ha1_md5=?"
                               " WHERE name=?", (password_hash, ha1.get("SHA-256"), ha1.get("MD5"), name))
        return cur.rowcount == 1

    def remove_client(self, name: str) -> bool:
        return self._db.execute("DELETE FROM clients WHERE name=?", (name,)).rowcount == 1

    def client(self, name: str) -> ClientRecord | None:
        row = self._db.execute(_CLIENT_SELECT + " WHERE name=?", (name,)).fetchone()
        return None if row is None else _client(row)

    def clients(self) -> list[ClientRecord]:
        return [_client(r) for r in self._db.execute(_CLIENT_SELECT + " ORDER BY name")]

    # -- certificates --------------------------------------------------------

    def record_certificate(self, *, serial: int, subject: str, not_before: datetime.datetime,
                           not_after: datetime.datetime, label: str, client: str | None, der: bytes,
                           audit_detail: str | None = None, replaces: int | None = None,
                           pending_id: int | None = None) -> None:
        """Record an issued certificate and its audit event in one durable commit
        (and, for an approved request, mark it issued in the same commit)."""
        outcome = self.record_certificates([dict(
            serial=serial, subject=subject, not_before=not_before, not_after=not_after, label=label,
            client=client, der=der, audit_detail=audit_detail, replaces=replaces, pending_id=pending_id)])[0]
        if outcome is not None:
            raise outcome

    def record_certificates(self, items: list[dict[str, Any]]) -> list[Exception | None]:
        """Record several issued certificates in ONE durable commit (one fsync).

        Each item has record_certificate's keyword arguments and stands or
        falls alone: the result per item is None, or the DuplicateSerial /
        AlreadyIssued that kept it out.
        """
        now = _now()
        if not any(item.get("pending_id") is not None for item in items):
            try:
                with self._writing():
                    self._insert_all(now, items)
                return [None] * len(items)
            except sqlite3.IntegrityError:
                pass  # a serial taken: find which, item by item
        results: list[Exception | None] = []
        with self._writing():
            for item in items:
                self._db.execute("SAVEPOINT one")
                try:
                    self._insert_certificate(now, **item)
                except (sqlite3.IntegrityError, AlreadyIssued) as e:
                    self._db.execute("ROLLBACK TO one")
                    results.append(DuplicateSerial(item["serial"]) if isinstance(e, sqlite3.IntegrityError) else e)
                else:
                    results.append(None)
                self._db.execute("RELEASE one")
        return results

    def import_certificates(self, records: Iterable[CertificateRecord], batch: int = 50_000) -> int:
        """Bulk-load certificates issued elsewhere (a migration; the benchmark's
        prefilled store): ``batch`` rows and one 'import' audit event per
        durable commit, then the WAL is checkpointed so that the rows are in
        the database file. Returns how many were imported; a serial already
        present raises DuplicateSerial and leaves out its whole batch."""
        columns = ("serial, subject, not_before, not_after, label, client, issued_at, der, status, revoked_at,"
                   " revocation_reason, replaces")
        sql = f"INSERT INTO certificates ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        rows = ((serial_key(r.serial), r.subject, r.not_before, r.not_after, r.label, r.client, r.issued_at, r.der,
                 r.status, r.revoked_at, r.revocation_reason, None if r.replaces is None else serial_key(r.replaces))
                for r in records)
        done = 0
        while chunk := list(itertools.islice(rows, batch)):
            try:
                with self._writing():
                    self._db.executemany(sql, chunk)
                    self._db.execute("INSERT INTO audit (at, operation, outcome, detail) VALUES (?, 'import', 'ok', ?)",
                                     (_now(), f"{len(chunk)} certificates"))
            except sqlite3.IntegrityError:
                seen: set[str] = set()  # the serial taken, in the store or earlier in the batch
                for key, *_ in chunk:
                    if key in seen or self.certificate(int(key, 16)) is not None:
                        raise DuplicateSerial(int(key, 16)) from None
                    seen.add(key)
                raise
            done += len(chunk)
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return done

    def _insert_all(self, now: str, items: list[dict[str, Any]]) -> None:
        """The whole batch in a few multi-row statements. Each SQLite call
        lets the reactor thread take the GIL, and getting it back is what made
        large commits slow under load: two calls per hundred items instead of
        five per item (100 rows x 9 values stays under SQLite's oldest
        999-variable limit)."""
        for start in range(0, len(items), 100):
            chunk = items[start:start + 100]
            certs: list[object] = []
            audits: list[object] = []
            for i in chunk:
                certs += (serial_key(i["serial"]), i["subject"], i["not_before"].isoformat(),
                          i["not_after"].isoformat(), i["label"], i["client"], now, i["der"],
                          None if i.get("replaces") is None else serial_key(i["replaces"]))
                audits += (now, i["client"], i["label"], i.get("audit_detail"))
            self._db.execute("INSERT INTO certificates (serial, subject, not_before, not_after, label, client,"
                             " issued_at, der, replaces) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                             certs)
            self._db.execute("INSERT INTO audit (at, client, label, operation, outcome, detail) VALUES "
                             + ", ".join(["(?, ?, ?, 'issue', 'ok', ?)"] * len(chunk)), audits)

    def _insert_certificate(self, now: str, *, serial: int, subject: str, not_before: datetime.datetime,
                            not_after: datetime.datetime, label: str, client: str | None, der: bytes,
                            audit_detail: str | None = None, replaces: int | None = None,
                            pending_id: int | None = None) -> None:
        self._db.execute(
            "INSERT INTO certificates (serial, subject, not_before, not_after, label, client, issued_at, der,"
            " replaces) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (serial_key(serial), subject, not_before.isoformat(), not_after.isoformat(), label, client,
             now, der, None if replaces is None else serial_key(replaces)))
        self._db.execute("INSERT INTO audit (at, client, label, operation, outcome, detail)"
                         " VALUES (?, ?, ?, 'issue', 'ok', ?)", (now, client, label, audit_detail))
        if pending_id is not None:
            cur = self._db.execute("UPDATE pending SET state='issued', serial=? WHERE id=? AND state='approved'",
                                   (serial_key(serial), pending_id))
            if cur.rowcount != 1:
                # Another repeat of the same request won: this certificate is never recorded.
                raise AlreadyIssued(pending_id)

    def revoke(self, serial: int, reason: str) -> CertificateRecord | None:
        """Mark a certificate revoked; returns the record as it was (None if unknown)."""
        record = self.certificate(serial)
        if record is None:
            return None
        if not record.revoked:
            with self._writing():
                self._db.execute("UPDATE certificates SET status='revoked', revoked_at=?, revocation_reason=?"
                                 " WHERE serial=?", (_now(), reason, serial_key(serial)))
                self._db.execute("INSERT INTO audit (at, client, label, operation, outcome, detail)"
                                 " VALUES (?, ?, ?, 'revoke', 'ok', ?)",
                                 (_now(), record.client, record.label, f"serial {serial_key(serial)}: {reason}"))
        return record

    def certificate_and_enroller(self, serial: int) -> tuple[CertificateRecord | None, ClientRecord | None]:
        """A certificate's record and the client that enrolled it (if any), in one call."""
        record = self.certificate(serial)
        return record, (self.client(record.client) if record is not None and record.client else None)

    def certificate(self, serial: int) -> CertificateRecord | None:
        row = self._db.execute(_CERT_SELECT + " WHERE serial=?", (serial_key(serial),)).fetchone()
        return None if row is None else _certificate(row)

    def certificates(self, client: str | None = None) -> list[CertificateRecord]:
        if client is None:
            rows = self._db.execute(_CERT_SELECT + " ORDER BY issued_at")
        else:
            rows = self._db.execute(_CERT_SELECT + " WHERE client=? ORDER BY issued_at", (client,))
        return [_certificate(r) for r in rows]

    def expiring_certificates(self, client: str, label: str, now: datetime.datetime,
                              horizon: datetime.datetime) -> list[CertificateRecord]:
        """The client's valid, unrenewed certificates under ``label`` whose
        notAfter falls between ``now`` and ``horizon`` (indexed: cheap even
        for a client with a million certificates)."""
        rows = self._db.execute(
            _CERT_SELECT + " WHERE client=? AND not_after>? AND not_after<=? AND label=? AND status='valid'"
            " AND NOT EXISTS (SELECT 1 FROM certificates AS newer WHERE newer.replaces=certificates.serial)"
            " ORDER BY not_after", (client, now.isoformat(), horizon.isoformat(), label))
        return [_certificate(r) for r in rows]

    def latest_valid_certificates(self, client: str, now: datetime.datetime,
                                  limit: int = 20) -> list[CertificateRecord]:
        """The client's unexpired, unrevoked certificates, latest notAfter first (indexed)."""
        rows = self._db.execute(_CERT_SELECT + " WHERE client=? AND not_after>? AND status='valid'"
                                " ORDER BY not_after DESC LIMIT ?", (client, now.isoformat(), limit))
        return [_certificate(r) for r in rows]

    def count_certificates(self) -> int:
        count: int = self._db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0]
        return count

    # -- requests waiting for an operator (RFC 7030 4.2.3) ---------------------

    def add_pending(self, *, label: str, client: str, key_hash: str, subject: str, operation: str,
                    request: bytes, kind: str = "pkcs10", replaces: int | None = None) -> PendingRequest:
        """A request for the operator (``estctl pending``), audited, in one durable commit."""
        with self._writing():
            cur = self._db.execute(
                "INSERT INTO pending (label, client, key_hash, subject, operation, csr, kind, replaces, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (label, client, key_hash, subject, operation, request, kind,
                 None if replaces is None else serial_key(replaces), _now()))
            self._db.execute("INSERT INTO audit (at, client, label, operation, outcome, detail)"
                             " VALUES (?, ?, ?, ?, 'pending', ?)",
                             (_now(), client, label, operation, f"request {cur.lastrowid}: {subject}"))
        request_id = cur.lastrowid
        added = self.pending(request_id) if request_id is not None else None
        if added is None:
            raise sqlite3.DatabaseError("the pending request just added is not there")
        return added

    def pending(self, request_id: int) -> PendingRequest | None:
        row = self._db.execute(_PENDING_SELECT + " WHERE id=?", (request_id,)).fetchone()
        return None if row is None else _pending(row)

    def find_pending(self, label: str, client: str, key_hash: str, subject: str,
                     operation: str) -> PendingRequest | None:
        """The newest request of this client, under this label, for this key,
        subject and operation (the same request asked again)."""
        row = self._db.execute(_PENDING_SELECT + " WHERE label=? AND client=? AND key_hash=? AND subject=?"
                               " AND operation=? ORDER BY id DESC LIMIT 1",
                               (label, client, key_hash, subject, operation)).fetchone()
        return None if row is None else _pending(row)

    def client_requests(self, label: str, client: str, operation: str | None = None) -> list[PendingRequest]:
        """This client's approval requests under ``label``, oldest first."""
        sql = _PENDING_SELECT + " WHERE label=? AND client=?"
        args: list[object] = [label, client]
        if operation is not None:
            sql += " AND operation=?"
            args.append(operation)
        return [_pending(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def pending_requests(self, state: str | None = "pending") -> list[PendingRequest]:
        if state is None:
            rows = self._db.execute(_PENDING_SELECT + " ORDER BY id")
        else:
            rows = self._db.execute(_PENDING_SELECT + " WHERE state=? ORDER BY id", (state,))
        return [_pending(r) for r in rows]

    def decide_pending(self, request_id: int, approve: bool) -> PendingRequest | None:
        """Approve or reject a pending request; None if there is no such pending request."""
        state = "approved" if approve else "rejected"
        with self._writing():
            cur = self._db.execute("UPDATE pending SET state=?, decided_at=? WHERE id=? AND state='pending'",
                                   (state, _now(), request_id))
            if cur.rowcount != 1:
                return None
            row = self._db.execute(_PENDING_SELECT + " WHERE id=?", (request_id,)).fetchone()
            self._db.execute("INSERT INTO audit (at, client, label, operation, outcome, detail)"
                             " VALUES (?, ?, ?, 'approval', ?, ?)", (_now(), row[2], row[1], state,
                                                                     f"request {request_id}"))
        return _pending(row)

    # -- operations (estappliance.ops) -----------------------------------------

    def probe_commit(self) -> None:
        """One durable write transaction, for the readiness probe: the store commits."""
        with self._writing():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('health_probe', ?)", (_now(),))

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
                " revoked_at, revocation_reason, replaces FROM certificates")
_CLIENT_SELECT = "SELECT name, password_hash, labels, created_at, digest_ha1_sha256, digest_ha1_md5 FROM clients"
_PENDING_SELECT = ("SELECT id, label, client, key_hash, subject, operation, csr, state, created_at, decided_at,"
                   " serial, kind, replaces FROM pending")


# Rows are sqlite3 result tuples: their columns are what the SELECT above names.
def _client(row: Any) -> ClientRecord:
    labels = tuple(x for x in row[2].split(",") if x)
    ha1 = {alg: v for alg, v in (("SHA-256", row[4]), ("MD5", row[5])) if v}
    return ClientRecord(name=row[0], password_hash=row[1], labels=labels, created_at=row[3], digest_ha1=ha1)


def _certificate(row: Any) -> CertificateRecord:
    replaces = None if row[11] is None else int(row[11], 16)
    return CertificateRecord(int(row[0], 16), subject=row[1], not_before=row[2], not_after=row[3], label=row[4],
                             client=row[5], issued_at=row[6], der=row[7], status=row[8], revoked_at=row[9],
                             revocation_reason=row[10], replaces=replaces)


def _pending(row: Any) -> PendingRequest:
    serial = None if row[10] is None else int(row[10], 16)
    replaces = None if row[12] is None else int(row[12], 16)
    return PendingRequest(id=row[0], label=row[1], client=row[2], key_hash=row[3], subject=row[4], operation=row[5],
                          request=row[6], state=row[7], created_at=row[8], decided_at=row[9], serial=serial,
                          kind=row[11], replaces=replaces)
