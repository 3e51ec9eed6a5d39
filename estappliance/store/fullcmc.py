"""What /fullcmc keeps: the CMC side of requests waiting for approval, and
which clients have an identity-proof shared secret (the secret itself lives
in the token, never here)."""
from __future__ import annotations

import datetime
from dataclasses import dataclass


@dataclass(frozen=True)
class CmcPending:
    """A row of ``pending`` (operation 'fullcmc') with what CMC needs to
    finish it: the kind of request kept in ``pending.csr`` (a PKCS#10, or a
    CRMF CertReqMsg) and the certificate it renews, if any."""

    id: int
    label: str
    client: str
    key_hash: str
    subject: str
    request: bytes
    state: str  # pending | approved | rejected | issued
    serial: int | None
    kind: str  # pkcs10 | crmf
    replaces: int | None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class CmcTables:
    TABLES = """
    CREATE TABLE IF NOT EXISTS cmc_pending (
        pending_id INTEGER PRIMARY KEY REFERENCES pending(id),
        kind TEXT NOT NULL,
        replaces TEXT
    );
    CREATE TABLE IF NOT EXISTS cmc_secrets (
        client TEXT PRIMARY KEY,
        set_at TEXT NOT NULL
    );
    """

    def add_cmc_pending(self, *, label: str, client: str, key_hash: str, subject: str, kind: str, request: bytes,
                        replaces: int | None) -> CmcPending:
        """A request for the operator (``estctl pending``), in one durable commit."""
        now = _now()
        with self._writing():
            cur = self._db.execute(
                "INSERT INTO pending (label, client, key_hash, subject, operation, csr, created_at)"
                " VALUES (?, ?, ?, ?, 'fullcmc', ?, ?)", (label, client, key_hash, subject, request, now))
            self._db.execute("INSERT INTO cmc_pending (pending_id, kind, replaces) VALUES (?, ?, ?)",
                             (cur.lastrowid, kind, None if replaces is None else format(replaces, "x")))
            self._db.execute("INSERT INTO audit (at, client, label, operation, outcome, detail)"
                             " VALUES (?, ?, ?, 'fullcmc', 'pending', ?)",
                             (now, client, label, f"request {cur.lastrowid}: {subject}"))
        return self.cmc_pending(cur.lastrowid)

    def cmc_pending(self, pending_id: int) -> CmcPending | None:
        row = self._db.execute(_CMC_PENDING_SELECT + " WHERE p.id=?", (pending_id,)).fetchone()
        return None if row is None else _cmc_pending(row)

    def find_cmc_pending(self, label: str, client: str, key_hash: str, subject: str) -> CmcPending | None:
        """The newest /fullcmc request of this client, label, key and subject
        (the same request sent again)."""
        row = self._db.execute(_CMC_PENDING_SELECT + " WHERE p.label=? AND p.client=? AND p.key_hash=?"
                               " AND p.subject=? ORDER BY p.id DESC LIMIT 1",
                               (label, client, key_hash, subject)).fetchone()
        return None if row is None else _cmc_pending(row)

    def set_cmc_secret(self, client: str) -> None:
        with self._writing():
            self._db.execute("INSERT OR REPLACE INTO cmc_secrets (client, set_at) VALUES (?, ?)", (client, _now()))
            self._db.execute("INSERT INTO audit (at, client, operation, outcome, detail)"
                             " VALUES (?, ?, 'cmc-secret', 'set', NULL)", (_now(), client))

    def remove_cmc_secret(self, client: str) -> bool:
        with self._writing():
            removed = self._db.execute("DELETE FROM cmc_secrets WHERE client=?", (client,)).rowcount == 1
            if removed:
                self._db.execute("INSERT INTO audit (at, client, operation, outcome, detail)"
                                 " VALUES (?, ?, 'cmc-secret', 'removed', NULL)", (_now(), client))
        return removed

    def has_cmc_secret(self, client: str) -> bool:
        return self._db.execute("SELECT 1 FROM cmc_secrets WHERE client=?", (client,)).fetchone() is not None

    def cmc_secret_clients(self) -> list[tuple[str, str]]:
        """(client, set_at) of every client with a shared secret."""
        return list(self._db.execute("SELECT client, set_at FROM cmc_secrets ORDER BY client"))


_CMC_PENDING_SELECT = ("SELECT p.id, p.label, p.client, p.key_hash, p.subject, p.csr, p.state, p.serial, c.kind,"
                       " c.replaces FROM pending p JOIN cmc_pending c ON c.pending_id = p.id")


def _cmc_pending(row) -> CmcPending:
    serial = None if row[7] is None else int(row[7], 16)
    replaces = None if row[9] is None else int(row[9], 16)
    return CmcPending(*row[:7], serial=serial, kind=row[8], replaces=replaces)
