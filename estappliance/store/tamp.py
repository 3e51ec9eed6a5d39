"""What the appliance knows of each client's trust anchor store (RFC 5934),
and the TAMP manager's sequence numbers.

A client's record is what its TAMP answers said: a status response replaces
it, a confirmed update adds and removes anchors, a confirmed apex update
replaces the apex, a confirmed community update changes the communities.
Anchors a terse answer names only by key identifier are kept without DER.
"""
from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass

from .audit_tables import insert_audit
from .tables import Repository, now_text

# (key identifier, TrustAnchorChoice DER or None when only the key id is known, title)
AnchorRow = tuple[bytes, bytes | None, str | None]


@dataclass(frozen=True)
class ClientAnchor:
    client: str
    key_id: bytes
    der: bytes | None  # the TrustAnchorChoice, when the client told us the whole anchor
    title: str | None
    apex: bool
    updated_at: str
    source: str  # what last moved it, e.g. "status response to package 7"


@dataclass(frozen=True)
class ClientTampState:
    client: str
    communities: tuple[str, ...] | None  # None: never reported
    updated_at: str
    source: str



class TampTables(Repository):
    # -- the manager's sequence numbers ----------------------------------------------

    def next_tamp_seq_num(self, key_id: bytes, floor: int = 0) -> int:
        """A sequence number larger than any this signer used before (and at
        least ``floor``, e.g. the time, so a re-installed appliance still
        counts upwards), recorded before it is used."""
        with self._writing():
            row = self._db.execute("SELECT last FROM tamp_sequence WHERE key_id=?", (key_id,)).fetchone()
            value = max((row[0] + 1) if row else 1, floor)
            self._db.execute("INSERT INTO tamp_sequence VALUES (?, ?) ON CONFLICT (key_id) DO UPDATE SET"
                             " last=excluded.last", (key_id, value))
        return value

    def last_tamp_seq_num(self, key_id: bytes) -> int | None:
        row = self._db.execute("SELECT last FROM tamp_sequence WHERE key_id=?", (key_id,)).fetchone()
        return None if row is None else row[0]

    # -- each client's trust anchor store ----------------------------------------------

    def client_anchors(self, client: str) -> list[ClientAnchor]:
        rows = self._db.execute("SELECT client, key_id, der, title, apex, updated_at, source FROM tamp_anchors"
                                " WHERE client=? ORDER BY apex DESC, title, key_id", (client,))
        return [ClientAnchor(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6]) for r in rows]

    def client_tamp_state(self, client: str) -> ClientTampState | None:
        row = self._db.execute("SELECT client, communities, updated_at, source FROM tamp_clients WHERE client=?",
                               (client,)).fetchone()
        if row is None:
            return None
        communities = None if row[1] is None else tuple(json.loads(row[1]))
        return ClientTampState(row[0], communities, row[2], row[3])

    def move_client_anchors(self, client: str, source: str, *,
                            replace: Sequence[AnchorRow] | None = None, add: Sequence[AnchorRow] = (),
                            remove: Sequence[bytes] = (), apex: AnchorRow | None = None,
                            clear: bool = False, communities: list[str] | None = None,
                            add_communities: Sequence[str] = (), remove_communities: Sequence[str] = (),
                            audit_detail: str | None = None) -> None:
        """Apply what a confirmed TAMP message did to ``client``'s record, in
        one durable commit. Anchors are (key_id, TrustAnchorChoice DER or
        None, title). ``replace`` is the whole store as the client reported
        it; ``clear`` drops every anchor but the new ``apex``."""
        now = now_text()
        with self._writing():
            if replace is not None:
                known = {r[0]: (r[1], r[2], r[3]) for r in self._db.execute(
                    "SELECT key_id, der, title, apex FROM tamp_anchors WHERE client=?", (client,))}
                self._db.execute("DELETE FROM tamp_anchors WHERE client=?", (client,))
                for key_id, der, title in replace:
                    old = known.get(key_id, (None, None, 0))
                    self._db.execute("INSERT INTO tamp_anchors VALUES (?, ?, ?, ?, ?, ?, ?)",
                                     (client, key_id, der or old[0], title or old[1], old[2], now, source))
            if clear:
                self._db.execute("DELETE FROM tamp_anchors WHERE client=?", (client,))
            for key_id, der, title in add:
                self._db.execute("INSERT INTO tamp_anchors VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (client, key_id)"
                                 " DO UPDATE SET der=COALESCE(excluded.der, tamp_anchors.der),"
                                 " title=COALESCE(excluded.title, tamp_anchors.title),"
                                 " updated_at=excluded.updated_at, source=excluded.source",
                                 (client, key_id, der, title, now, source))
            for key_id in remove:
                self._db.execute("DELETE FROM tamp_anchors WHERE client=? AND key_id=?", (client, key_id))
            if apex is not None:
                self._db.execute("UPDATE tamp_anchors SET apex=0 WHERE client=?", (client,))
                key_id, der, title = apex
                self._db.execute("INSERT INTO tamp_anchors VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (client, key_id)"
                                 " DO UPDATE SET der=COALESCE(excluded.der, tamp_anchors.der),"
                                 " title=COALESCE(excluded.title, tamp_anchors.title),"
                                 " apex=1, updated_at=excluded.updated_at, source=excluded.source",
                                 (client, key_id, der, title, now, source))
            if communities is not None or add_communities or remove_communities:
                row = self._db.execute("SELECT communities FROM tamp_clients WHERE client=?", (client,)).fetchone()
                current = json.loads(row[0]) if row and row[0] is not None else []
                if communities is not None:
                    current = list(communities)
                current = [c for c in current if c not in set(remove_communities)]
                current += [c for c in add_communities if c not in current]
                self._db.execute("INSERT INTO tamp_clients VALUES (?, ?, ?, ?) ON CONFLICT (client) DO UPDATE SET"
                                 " communities=excluded.communities, updated_at=excluded.updated_at,"
                                 " source=excluded.source", (client, json.dumps(current), now, source))
            else:
                self._db.execute("INSERT INTO tamp_clients (client, communities, updated_at, source)"
                                 " VALUES (?, NULL, ?, ?) ON CONFLICT (client) DO UPDATE SET"
                                 " updated_at=excluded.updated_at, source=excluded.source", (client, now, source))
            insert_audit(self._db, "tamp", "ok", client=client, detail=audit_detail or source, at=now)


__all__ = ["ClientAnchor", "ClientTampState", "TampTables"]
