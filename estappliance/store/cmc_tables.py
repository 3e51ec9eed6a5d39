"""What /fullcmc keeps: which clients have an identity-proof shared secret
(the secret itself lives in the token, never here). Its requests waiting for
approval are in the one ``pending`` table, with their kind."""
from __future__ import annotations

import datetime

from .audit_tables import insert_audit
from .tables import Repository, now_text



class CmcTables(Repository):
    def set_cmc_secret(self, client: str) -> None:
        with self._writing():
            self._db.execute("INSERT INTO cmc_secrets (client, set_at) VALUES (?, ?)"
                             " ON CONFLICT (client) DO UPDATE SET set_at=excluded.set_at", (client, now_text()))
            insert_audit(self._db, "cmc-secret", "set", client=client, at=now_text())

    def remove_cmc_secret(self, client: str) -> bool:
        with self._writing():
            removed = self._db.execute("DELETE FROM cmc_secrets WHERE client=?", (client,)).rowcount == 1
            if removed:
                insert_audit(self._db, "cmc-secret", "removed", client=client, at=now_text())
        return removed

    def has_cmc_secret(self, client: str) -> bool:
        return self._db.execute("SELECT 1 FROM cmc_secrets WHERE client=?", (client,)).fetchone() is not None

    def cmc_secret_clients(self) -> list[tuple[str, str]]:
        """(client, set_at) of every client with a shared secret."""
        return list(self._db.execute("SELECT client, set_at FROM cmc_secrets ORDER BY client"))
