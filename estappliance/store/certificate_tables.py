"""Issued certificates and the requests waiting for an operator (RFC 7030
4.2.3), which become certificates in the same commit that records them.

Each commit is durable before it returns, so a certificate recorded here is
on disk before the response that carries it is sent.
"""
from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass
from typing import Any, Iterable

from .database import ConstraintViolation
from .audit_tables import AuditRow, insert_audit, insert_audits
from .tables import Repository, now_text, present


class DuplicateSerial(Exception):
    """A serial number is already taken (the caller re-signs with a new one)."""


class AlreadyIssued(Exception):
    """The approved request was fulfilled meanwhile (by a concurrent repeat)."""


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


def serial_key(serial: int) -> str:
    """Serials are stored as lower-case hex without leading zeros."""
    return format(serial, "x")


class CertificateTables(Repository):

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
        now = now_text()
        if not any(item.get("pending_id") is not None for item in items):
            try:
                with self._writing():
                    self._insert_all(now, items)
                return [None] * len(items)
            except ConstraintViolation:
                pass  # a serial taken: find which, item by item
        results: list[Exception | None] = []
        with self._writing():
            for item in items:
                try:
                    with self._db.savepoint():
                        self._insert_certificate(now, **item)
                except (ConstraintViolation, AlreadyIssued) as e:
                    results.append(DuplicateSerial(item["serial"]) if isinstance(e, ConstraintViolation) else e)
                else:
                    results.append(None)
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
                    insert_audit(self._db, "import", "ok", detail=f"{len(chunk)} certificates", at=now_text())
            except ConstraintViolation:
                seen: set[str] = set()  # the serial taken, in the store or earlier in the batch
                for key, *_ in chunk:
                    if key in seen or self.certificate(int(key, 16)) is not None:
                        raise DuplicateSerial(int(key, 16)) from None
                    seen.add(key)
                raise
            done += len(chunk)
        self._db.compact()
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
            audits: list[AuditRow] = []
            for i in chunk:
                certs += (serial_key(i["serial"]), i["subject"], i["not_before"].isoformat(),
                          i["not_after"].isoformat(), i["label"], i["client"], now, i["der"],
                          None if i.get("replaces") is None else serial_key(i["replaces"]))
                audits.append((now, i["client"], i["label"], "issue", "ok", i.get("audit_detail")))
            self._db.execute("INSERT INTO certificates (serial, subject, not_before, not_after, label, client,"
                             " issued_at, der, replaces) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                             certs)
            insert_audits(self._db, audits)

    def _insert_certificate(self, now: str, *, serial: int, subject: str, not_before: datetime.datetime,
                            not_after: datetime.datetime, label: str, client: str | None, der: bytes,
                            audit_detail: str | None = None, replaces: int | None = None,
                            pending_id: int | None = None) -> None:
        self._db.execute(
            "INSERT INTO certificates (serial, subject, not_before, not_after, label, client, issued_at, der,"
            " replaces) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (serial_key(serial), subject, not_before.isoformat(), not_after.isoformat(), label, client,
             now, der, None if replaces is None else serial_key(replaces)))
        insert_audit(self._db, "issue", "ok", client=client, label=label, detail=audit_detail, at=now)
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
                                 " WHERE serial=?", (now_text(), reason, serial_key(serial)))
                insert_audit(self._db, "revoke", "ok", client=record.client, label=record.label,
                             detail=f"serial {serial_key(serial)}: {reason}", at=now_text())
        return record

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
            request_id = self._db.insert(
                "INSERT INTO pending (label, client, key_hash, subject, operation, csr, kind, replaces, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (label, client, key_hash, subject, operation, request, kind,
                 None if replaces is None else serial_key(replaces), now_text()))
            insert_audit(self._db, operation, "pending", client=client, label=label,
                         detail=f"request {request_id}: {subject}", at=now_text())
        return present(self.pending(request_id), f"pending request {request_id}")

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
                                   (state, now_text(), request_id))
            if cur.rowcount != 1:
                return None
            row = self._db.execute(_PENDING_SELECT + " WHERE id=?", (request_id,)).fetchone()
            insert_audit(self._db, "approval", state, client=row[2], label=row[1], detail=f"request {request_id}",
                         at=now_text())
        return _pending(row)


_CERT_SELECT = ("SELECT serial, subject, not_before, not_after, label, client, issued_at, der, status,"
                " revoked_at, revocation_reason, replaces FROM certificates")
_PENDING_SELECT = ("SELECT id, label, client, key_hash, subject, operation, csr, state, created_at, decided_at,"
                   " serial, kind, replaces FROM pending")


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
