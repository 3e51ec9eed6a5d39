"""What /fullcmc keeps: which clients have an identity-proof shared secret
(the secret itself lives in the token, never here). Its requests waiting for
approval are in the one ``pending`` table, with their kind."""
from __future__ import annotations

import datetime

from .tables import Tables


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class CmcTables(Tables):
    TABLES = """
    CREATE TABLE IF NOT EXISTS cmc_secrets (
        client TEXT PRIMARY KEY,
        set_at TEXT NOT NULL
    );
    """

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
