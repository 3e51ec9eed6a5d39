"""Clients of the RA: name, password hash, Digest H(A1)s, the labels they may use."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .database import ConstraintViolation
from .tables import Repository, now_text


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


class ClientTables(Repository):

    def add_client(self, name: str, password_hash: str | None, labels: Iterable[str],
                   digest_ha1: dict[str, str] | None = None) -> None:
        ha1 = digest_ha1 or {}
        try:
            self._db.execute("INSERT INTO clients (name, password_hash, labels, created_at, digest_ha1_sha256,"
                             " digest_ha1_md5) VALUES (?, ?, ?, ?, ?, ?)",
                             (name, password_hash, ",".join(labels), now_text(), ha1.get("SHA-256"), ha1.get("MD5")))
        except ConstraintViolation:
            raise DuplicateClient(name) from None

    def set_client_password(self, name: str, password_hash: str, digest_ha1: dict[str, str] | None = None) -> bool:
        ha1 = digest_ha1 or {}
        cur = self._db.execute("UPDATE clients SET password_hash=?, digest_ha1_sha256=?, digest_ha1_md5=?"
                               " WHERE name=?", (password_hash, ha1.get("SHA-256"), ha1.get("MD5"), name))
        return cur.rowcount == 1

    def set_digest_ha1(self, name: str, digest_ha1: dict[str, str]) -> bool:
        """Replace the stored H(A1)s only (sealing an older version's clear ones)."""
        cur = self._db.execute("UPDATE clients SET digest_ha1_sha256=?, digest_ha1_md5=? WHERE name=?",
                               (digest_ha1.get("SHA-256"), digest_ha1.get("MD5"), name))
        return cur.rowcount == 1

    def remove_client(self, name: str) -> bool:
        return self._db.execute("DELETE FROM clients WHERE name=?", (name,)).rowcount == 1

    def client(self, name: str) -> ClientRecord | None:
        row = self._db.execute(_CLIENT_SELECT + " WHERE name=?", (name,)).fetchone()
        return None if row is None else _client(row)

    def clients(self) -> list[ClientRecord]:
        return [_client(r) for r in self._db.execute(_CLIENT_SELECT + " ORDER BY name")]


_CLIENT_SELECT = "SELECT name, password_hash, labels, created_at, digest_ha1_sha256, digest_ha1_md5 FROM clients"


def _client(row: Any) -> ClientRecord:
    labels = tuple(x for x in row[2].split(",") if x)
    ha1 = {alg: v for alg, v in (("SHA-256", row[4]), ("MD5", row[5])) if v}
    return ClientRecord(name=row[0], password_hash=row[1], labels=labels, created_at=row[3], digest_ha1=ha1)
