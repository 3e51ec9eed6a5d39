"""Groups of clients: plain names, managed with ``estctl group``; a package
may target a group (package_tables.py)."""
from __future__ import annotations

from typing import Iterable

from .tables import Repository, now_text


class GroupTables(Repository):
    def add_to_group(self, group: str, clients: Iterable[str]) -> int:
        now = now_text()
        added = 0
        with self._writing():
            for client in clients:
                added += self._db.execute("INSERT INTO client_groups (grp, client, added_at) VALUES (?, ?, ?)"
                                          " ON CONFLICT (grp, client) DO NOTHING", (group, client, now)).rowcount
        return added

    def remove_from_group(self, group: str, clients: Iterable[str] | None = None) -> int:
        """Remove members (all of them, i.e. the group, when ``clients`` is None)."""
        with self._writing():
            if clients is None:
                return self._db.execute("DELETE FROM client_groups WHERE grp=?", (group,)).rowcount
            return sum(self._db.execute("DELETE FROM client_groups WHERE grp=? AND client=?",
                                        (group, c)).rowcount for c in clients)

    def group_members(self, group: str) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT client FROM client_groups WHERE grp=? ORDER BY client",
                                               (group,))]

    def groups_of(self, client: str) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT grp FROM client_groups WHERE client=? ORDER BY grp",
                                               (client,))]

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for grp, client in self._db.execute("SELECT grp, client FROM client_groups ORDER BY grp, client"):
            out.setdefault(grp, []).append(client)
        return out
