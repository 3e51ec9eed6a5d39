"""Server-generated keys (/serverkeygen): what was made for whom, and the
keys the operator registered to protect them on the way.

* ``skg_packages``: one row per key made for a client. It is written before
  the key is generated (state ``generating``, with the token label the key
  will have), so a key left behind by a crash or a token failure can always
  be found and destroyed. ``delivered`` is written, durably, before the
  response that carries the key is sent; receipts and errors (RFC 7191) come
  back against the package identifier (``confirmed`` / ``error``).
* ``skg_returns``: every receipt or error message received, as received.
* ``skg_keks``: symmetric key-encryption keys (RFC 7030 DecryptKeyIdentifier):
  the identifier octets, the client they belong to and the token label of the
  key (the key itself never leaves the token).
* ``skg_recipients``: certificates the operator registered for a client's
  encryption key (AsymmetricDecryptKeyIdentifier), by subject key identifier.
* ``skg_pkcs12_passwords``: per-client PKCS#12 passwords set by the operator,
  sealed by a token key (AES-GCM); the store never holds them in clear.

Blocking, like the rest of the store: the service calls it on the store thread.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from .database import ConstraintViolation
from .audit_tables import insert_audit
from .tables import Repository, now_text

STATES = ("generating", "delivered", "failed", "confirmed", "error")


@dataclass(frozen=True)
class KeyPackageRecord:
    pkg_id: bytes
    client: str
    label: str
    key_label: str  # the token label of the generated key
    form: str  # pkcs8 | enveloped | encrypted-key-package | pkcs12
    state: str  # see STATES
    serial: int | None  # the certificate issued for the key
    escrowed: bool
    key_destroyed: bool
    receipt_requested: bool
    created_at: str
    delivered_at: str | None
    returned_at: str | None
    error_code: str | None
    detail: str | None


@dataclass(frozen=True)
class KekRecord:
    key_id: bytes
    client: str
    token_label: str
    size: int  # octets
    created_at: str


@dataclass(frozen=True)
class RecipientRecord:
    ski: bytes
    client: str
    der: bytes
    subject: str
    not_after: str
    created_at: str



class DuplicateKek(Exception):
    """A KEK with that identifier is already registered."""


_PACKAGE_SELECT = ("SELECT pkg_id, client, label, key_label, form, state, serial, escrowed, key_destroyed,"
                   " receipt_requested, created_at, delivered_at, returned_at, error_code, detail FROM skg_packages")


def _package(row: Any) -> KeyPackageRecord:  # a sqlite3 row of _SELECT's columns
    return KeyPackageRecord(bytes.fromhex(row[0]), row[1], row[2], row[3], row[4], row[5],
                            None if row[6] is None else int(row[6], 16), bool(row[7]), bool(row[8]), bool(row[9]),
                            *row[10:])


class ServerKeygenTables(Repository):
    # -- key packages ----------------------------------------------------------

    def key_package_started(self, *, pkg_id: bytes, client: str, label: str, key_label: str, form: str,
                            receipt_requested: bool) -> None:
        """Durably note a key about to be generated (before the token makes it)."""
        with self._writing():
            self._db.execute("INSERT INTO skg_packages (pkg_id, client, label, key_label, form, state,"
                             " receipt_requested, created_at) VALUES (?, ?, ?, ?, ?, 'generating', ?, ?)",
                             (pkg_id.hex(), client, label, key_label, form, int(receipt_requested), now_text()))

    def key_package_certified(self, pkg_id: bytes, serial: int) -> None:
        with self._writing():
            self._db.execute("UPDATE skg_packages SET serial=? WHERE pkg_id=?", (format(serial, "x"), pkg_id.hex()))

    def key_package_delivered(self, pkg_id: bytes, *, escrowed: bool) -> None:
        """Durable before the response carrying the key is sent."""
        now = now_text()
        with self._writing():
            row = self._db.execute("SELECT client, label, form, serial FROM skg_packages WHERE pkg_id=?",
                                   (pkg_id.hex(),)).fetchone()
            self._db.execute("UPDATE skg_packages SET state='delivered', delivered_at=?, escrowed=?,"
                             " key_destroyed=? WHERE pkg_id=?", (now, int(escrowed), int(not escrowed), pkg_id.hex()))
            insert_audit(self._db, "serverkeygen", "delivered", client=row[0], label=row[1],
                         detail=f"key package {pkg_id.hex()} ({row[2]}), certificate {row[3]}"
                         + (", key escrowed in the token" if escrowed else ""),
                         at=now)

    def key_package_failed(self, pkg_id: bytes, reason: str, *, key_destroyed: bool) -> None:
        now = now_text()
        with self._writing():
            row = self._db.execute("SELECT client, label FROM skg_packages WHERE pkg_id=?",
                                   (pkg_id.hex(),)).fetchone()
            self._db.execute("UPDATE skg_packages SET state='failed', detail=?, key_destroyed=? WHERE pkg_id=?",
                             (reason, int(key_destroyed), pkg_id.hex()))
            if row is not None:
                insert_audit(self._db, "serverkeygen", "failed", client=row[0], label=row[1],
                             detail=f"key package {pkg_id.hex()}: {reason}", at=now)

    def key_package_destroyed(self, pkg_id: bytes) -> None:
        self._db.execute("UPDATE skg_packages SET key_destroyed=1 WHERE pkg_id=?", (pkg_id.hex(),))

    def key_package(self, pkg_id: bytes) -> KeyPackageRecord | None:
        row = self._db.execute(_PACKAGE_SELECT + " WHERE pkg_id=?", (pkg_id.hex(),)).fetchone()
        return None if row is None else _package(row)

    def key_packages(self, client: str | None = None) -> list[KeyPackageRecord]:
        if client is None:
            rows = self._db.execute(_PACKAGE_SELECT + " ORDER BY created_at")
        else:
            rows = self._db.execute(_PACKAGE_SELECT + " WHERE client=? ORDER BY created_at", (client,))
        return [_package(r) for r in rows]

    def orphan_key_packages(self, older_than: str) -> list[KeyPackageRecord]:
        """Keys that may still be in the token although nobody will get them:
        failed ones, and ones still 'generating' since before ``older_than``
        (a crash mid-request; in-flight requests are younger)."""
        rows = self._db.execute(_PACKAGE_SELECT + " WHERE key_destroyed=0 AND (state='failed' OR"
                                " (state='generating' AND created_at < ?))", (older_than,))
        return [_package(r) for r in rows]

    def key_package_returned(self, pkg_id: bytes | None, *, client: str, kind: str, der: bytes,
                             error_code: str | None = None, signer: str | None = None) -> None:
        """Record a receipt or error (and move the package's state) in one commit."""
        now = now_text()
        with self._writing():
            self._db.execute("INSERT INTO skg_returns (pkg_id, client, kind, error_code, signer, received_at, der)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (None if pkg_id is None else pkg_id.hex(), client, kind, error_code, signer, now, der))
            detail = f"{kind} for key package {pkg_id.hex() if pkg_id else '(unnamed)'}" + \
                (f": {error_code}" if error_code else "")
            label = None
            if pkg_id is not None:
                state = "confirmed" if kind == "receipt" else "error"
                self._db.execute("UPDATE skg_packages SET state=?, returned_at=?, error_code=? WHERE pkg_id=?",
                                 (state, now, error_code, pkg_id.hex()))
                row = self._db.execute("SELECT label FROM skg_packages WHERE pkg_id=?", (pkg_id.hex(),)).fetchone()
                label = row[0] if row else None
            insert_audit(self._db, "serverkeygen/return", kind, client=client, label=label, detail=detail, at=now)

    def key_package_returns(self, pkg_id: bytes | None = None
                            ) -> list[tuple[str, str, str, int | None, str | None, str]]:
        """(pkg_id hex, client, kind, error_code, signer, received_at) rows, oldest first."""
        sql = "SELECT pkg_id, client, kind, error_code, signer, received_at FROM skg_returns"
        if pkg_id is None:
            return list(self._db.execute(sql + " ORDER BY id"))
        return list(self._db.execute(sql + " WHERE pkg_id=? ORDER BY id", (pkg_id.hex(),)))

    # -- KEKs (DecryptKeyIdentifier) -------------------------------------------

    def add_kek(self, key_id: bytes, client: str, token_label: str, size: int) -> None:
        try:
            with self._writing():
                self._db.execute("INSERT INTO skg_keks VALUES (?, ?, ?, ?, ?)",
                                 (key_id.hex(), client, token_label, size, now_text()))
                insert_audit(self._db, "kek", "added", client=client, detail=f"KEK {key_id.hex()}", at=now_text())
        except ConstraintViolation:
            raise DuplicateKek(key_id.hex()) from None

    def kek(self, key_id: bytes) -> KekRecord | None:
        row = self._db.execute("SELECT key_id, client, token_label, size, created_at FROM skg_keks WHERE key_id=?",
                               (key_id.hex(),)).fetchone()
        return None if row is None else KekRecord(bytes.fromhex(row[0]), *row[1:])

    def keks(self) -> list[KekRecord]:
        rows = self._db.execute("SELECT key_id, client, token_label, size, created_at FROM skg_keks ORDER BY client")
        return [KekRecord(bytes.fromhex(r[0]), *r[1:]) for r in rows]

    def remove_kek(self, key_id: bytes) -> KekRecord | None:
        record = self.kek(key_id)
        if record is not None:
            self._db.execute("DELETE FROM skg_keks WHERE key_id=?", (key_id.hex(),))
        return record

    # -- registered encryption certificates (AsymmetricDecryptKeyIdentifier) --

    def add_recipient(self, ski: bytes, client: str, der: bytes, subject: str, not_after: str) -> None:
        with self._writing():
            self._db.execute("INSERT INTO skg_recipients (ski, client, der, subject, not_after, created_at)"
                             " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (ski) DO UPDATE SET client=excluded.client,"
                             " der=excluded.der, subject=excluded.subject, not_after=excluded.not_after,"
                             " created_at=excluded.created_at",
                             (ski.hex(), client, der, subject, not_after, now_text()))

    def recipient(self, ski: bytes) -> RecipientRecord | None:
        row = self._db.execute("SELECT ski, client, der, subject, not_after, created_at FROM skg_recipients"
                               " WHERE ski=?", (ski.hex(),)).fetchone()
        return None if row is None else RecipientRecord(bytes.fromhex(row[0]), *row[1:])

    def recipients(self) -> list[RecipientRecord]:
        rows = self._db.execute("SELECT ski, client, der, subject, not_after, created_at FROM skg_recipients"
                                " ORDER BY client")
        return [RecipientRecord(bytes.fromhex(r[0]), *r[1:]) for r in rows]

    def remove_recipient(self, ski: bytes) -> bool:
        return self._db.execute("DELETE FROM skg_recipients WHERE ski=?", (ski.hex(),)).rowcount == 1

    # -- PKCS#12 passwords (sealed by a token key) ------------------------------

    def set_pkcs12_password(self, client: str, sealed: bytes) -> None:
        with self._writing():
            self._db.execute("INSERT INTO skg_pkcs12_passwords (client, sealed, set_at) VALUES (?, ?, ?)"
                             " ON CONFLICT (client) DO UPDATE SET sealed=excluded.sealed, set_at=excluded.set_at",
                             (client, sealed, now_text()))
            insert_audit(self._db, "pkcs12-password", "set", client=client, at=now_text())

    def pkcs12_password(self, client: str) -> bytes | None:
        row = self._db.execute("SELECT sealed FROM skg_pkcs12_passwords WHERE client=?", (client,)).fetchone()
        return None if row is None else row[0]

    def clear_pkcs12_password(self, client: str) -> bool:
        return self._db.execute("DELETE FROM skg_pkcs12_passwords WHERE client=?", (client,)).rowcount == 1
