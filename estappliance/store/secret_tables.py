"""Secrets every worker and every node shares (e.g. the Digest nonce key),
kept sealed: the store holds only what the token's sealing key made of them
(``ca/shared_secrets.py`` seals and opens; nothing here sees a secret in
clear).

A secret is written once and never replaced: ``add_sealed_secret`` inserts
only if the name is absent and returns what the store then holds, so two
nodes (or workers) that make the same secret at the same moment both end up
with the first writer's.
"""
from __future__ import annotations

from .tables import Repository, now_text, present


class SecretTables(Repository):
    def sealed_secret(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT sealed FROM sealed_secrets WHERE name=?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def add_sealed_secret(self, name: str, sealed: bytes) -> bytes:
        """Keep ``sealed`` under ``name`` unless the name is taken; either
        way, the sealed value the store holds now (one write transaction)."""
        with self._writing():
            self._db.execute("INSERT INTO sealed_secrets (name, sealed, created_at) VALUES (?, ?, ?)"
                             " ON CONFLICT (name) DO NOTHING", (name, sealed, now_text()))
            row = self._db.execute("SELECT sealed FROM sealed_secrets WHERE name=?", (name,)).fetchone()
        return bytes(present(row, f"the sealed secret {name!r}")[0])


__all__ = ["SecretTables"]
