"""Read-only lookups over the package tables for returns (RFC 8295 5.2, 6.2,
7.2): which packages a client was actually offered. Nothing here records an
offer: a return may only name what the client has already been shown."""
from __future__ import annotations

from typing import Iterable

from .package_tables import _DELIVERY_COLUMNS, _P_COLUMNS, Offer, _delivery, _package
from .tables import Tables


class ReturnLookups(Tables):
    def offered_packages(self, client: str, label: str, pal_types: Iterable[str]) -> list[Offer]:
        """Packages of these types offered to ``client`` under ``label``,
        newest first (withdrawn ones too: a late return is still a return)."""
        codes = tuple(pal_types)
        if not codes:
            return []
        d_columns = ", ".join("d." + c.strip() for c in _DELIVERY_COLUMNS.split(","))
        rows = self._db.execute(
            f"SELECT {_P_COLUMNS}, {d_columns} FROM packages p JOIN deliveries d ON d.package_id = p.id"
            f" WHERE d.client=? AND p.label=? AND d.offered_at IS NOT NULL"
            f" AND p.pal_type IN ({', '.join('?' * len(codes))}) ORDER BY p.id DESC",
            (client, label, *codes)).fetchall()
        width = len(_P_COLUMNS.split(","))
        return [Offer(_package(r[:width]), _delivery(r[width:])) for r in rows]


__all__ = ["ReturnLookups"]
