"""Queued packages (RFC 8295) and their delivery to each client.

A package is queued under a CA label for one target: a client, a group of
clients, or every client of the label. Its content is either stored once (the
DER served as is, already signed or encrypted) or built per client by the
module that serves it (``content`` None, ``reference`` says what to build
from); a per-client body can be kept on the delivery row so that a second
download gets the same bytes.

A delivery row per (package, client) records the package's life for that
client: offered (first shown in its PAL or served), downloaded (last time, and
how often), receipt or error received (with the error code and the return
message). Rows are created lazily, the first time the client is shown the
package, so a client added to a group or label later still gets it.

Groups of clients are plain names, managed with ``estctl group``.

Blocking, like the rest of the store: the service calls it on the store
thread (``packages.PackageQueue`` does that for you).
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import PolicyRefused
from .group_tables import GroupTables
from .audit_tables import insert_audit
from .tables import Repository, now_text, present

TARGET_KINDS = ("client", "group", "label")
STANDING_ITEMS = ("cacerts", "crl", "arl")


class NotOffered(PolicyRefused):
    """The client was never offered that package (a return naming it is refused)."""


class UnknownPackage(KeyError):
    """No package with that id."""


@dataclass(frozen=True)
class Package:
    id: int
    label: str
    pal_type: str  # "0024" ...
    target_kind: str  # client | group | label
    target: str  # client name, group name or label name
    name: str  # operator-facing description
    media_type: str | None  # the Content-Type it is served with
    content: bytes | None  # DER as served, or None when built per client
    size: int  # bytes of the served DER (what the PAL announces)
    reference: str | None  # what a per-client builder needs (e.g. a token key label)
    receipt_requested: bool
    key_package_id: bytes | None  # RFC 7191 pkgID, to match receipts and errors
    details: dict[str, Any]  # anything else the serving module wants to keep (JSON)
    created_at: str
    withdrawn_at: str | None = None


@dataclass(frozen=True)
class Delivery:
    package_id: int
    client: str
    offered_at: str | None
    downloaded_at: str | None  # the last successful download
    downloads: int
    content: bytes | None  # the body built for this client, if any
    key_package_id: bytes | None  # a per-client pkgID, if the package has one per client
    receipt_at: str | None
    error_at: str | None
    error_code: int | None
    return_der: bytes | None  # the last receipt or error message as received
    last_return: str | None = None  # "receipt" or "error": which came last

    @property
    def state(self) -> str:
        """queued | offered | downloaded | receipt | error (the latest return wins)."""
        if self.last_return:
            return self.last_return
        if self.downloaded_at:
            return "downloaded"
        return "offered" if self.offered_at else "queued"

    @property
    def returned(self) -> bool:
        return bool(self.receipt_at or self.error_at)


@dataclass(frozen=True)
class Offer:
    """A package as one client sees it."""

    package: Package
    delivery: Delivery

    @property
    def body(self) -> bytes | None:
        return self.delivery.content if self.delivery.content is not None else self.package.content

    @property
    def size(self) -> int:
        return len(self.delivery.content) if self.delivery.content is not None else self.package.size

    @property
    def key_package_id(self) -> bytes | None:
        return self.delivery.key_package_id or self.package.key_package_id

    @property
    def awaiting_return(self) -> bool:
        """A receipt or error was asked for and has not come back."""
        return self.package.receipt_requested and not self.delivery.returned


@dataclass(frozen=True)
class StandingDownload:
    """The last download of /cacerts or /crls by a client: which version, when."""

    item: str  # cacerts | crl | arl
    version: str
    downloaded_at: str


@dataclass(frozen=True)
class PackageReport:
    """For ``estctl packages list``: a package and every client it targets."""

    package: Package
    deliveries: list[tuple[str, Delivery | None]] = field(default_factory=list)



_PACKAGE_COLUMNS = ("id, label, pal_type, target_kind, target, name, media_type, content, size, reference,"
                    " receipt_requested, key_package_id, details, created_at, withdrawn_at")
_DELIVERY_COLUMNS = ("package_id, client, offered_at, downloaded_at, downloads, content, key_package_id,"
                     " receipt_at, error_at, error_code, return_der, last_return")
# Packages under :label that :client may see.
_VISIBLE = """
    p.label = :label AND p.withdrawn_at IS NULL AND (
        (p.target_kind = 'client' AND p.target = :client)
        OR (p.target_kind = 'group' AND p.target IN (SELECT grp FROM client_groups WHERE client = :client))
        OR p.target_kind = 'label'
        OR EXISTS (SELECT 1 FROM deliveries d WHERE d.package_id = p.id AND d.client = :client
                   AND d.offered_at IS NOT NULL))
"""
_P_COLUMNS = ", ".join("p." + c.strip() for c in _PACKAGE_COLUMNS.split(","))


# Rows are sqlite3 result tuples: their columns are what the SELECT names.
def _package(row: Any) -> Package:
    values = list(row)
    values[10] = bool(values[10])
    values[12] = json.loads(values[12] or "{}")
    return Package(*values)


def _delivery(row: Any) -> Delivery:
    return Delivery(*row)


class PackageTables(Repository):
    # -- queueing ------------------------------------------------------------------

    def queue_package(self, *, label: str, pal_type: str, target_kind: str, target: str,
                      content: bytes | None = None, size: int | None = None, media_type: str | None = None,
                      name: str = "", reference: str | None = None, receipt_requested: bool = False,
                      key_package_id: bytes | None = None, details: dict[str, Any] | None = None,
                      contents: dict[str, bytes] | None = None) -> Package:
        """Queue a package; one durable commit (with its audit event).

        ``content`` is served to every target client as is; without it, give
        ``size`` (what the PAL announces) and build the body per client
        (``set_delivery_content`` / ``mark_downloaded(content=...)``), or give
        ``contents`` (client name -> body) built now for named clients.
        """
        from ..pki.pal_types import DERIVED, pal_type as lookup
        code = lookup(pal_type).code
        if code in DERIVED:
            raise ValueError(f"type {code} is raised by the server itself and cannot be queued")
        if target_kind not in TARGET_KINDS:
            raise ValueError(f"target kind must be one of {', '.join(TARGET_KINDS)}")
        if not target:
            raise ValueError("a package needs a target")
        if size is None:
            if content is None:
                raise ValueError("give the content, or its size when it is built per client")
            size = len(content)
        now = now_text()
        with self._writing():
            package_id = self._db.insert(
                f"INSERT INTO packages ({_PACKAGE_COLUMNS.removeprefix('id, ')}) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (label, code, target_kind, target, name, media_type, content, size, reference,
                 int(receipt_requested), key_package_id, json.dumps(details or {}, sort_keys=True), now))
            for client, body in (contents or {}).items():
                self._db.execute("INSERT INTO deliveries (package_id, client, content) VALUES (?, ?, ?)",
                                 (package_id, client, body))
            insert_audit(self._db, "publish", "ok", client=target if target_kind == "client" else None, label=label,
                         detail=f"package {package_id} type {code} for {target_kind} {target}: {name}".rstrip(": "),
                         at=now)
        return present(self.package(package_id), f"package {package_id}")

    def package(self, package_id: int) -> Package | None:
        row = self._db.execute(f"SELECT {_PACKAGE_COLUMNS} FROM packages WHERE id=?", (package_id,)).fetchone()
        return None if row is None else _package(row)

    def packages(self, label: str | None = None, *, include_withdrawn: bool = False) -> list[Package]:
        sql = f"SELECT {_PACKAGE_COLUMNS} FROM packages WHERE 1=1"
        args: list[object] = []
        if label is not None:
            sql += " AND label=?"
            args.append(label)
        if not include_withdrawn:
            sql += " AND withdrawn_at IS NULL"
        return [_package(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def withdraw_package(self, package_id: int) -> bool:
        """Stop offering a package (what was delivered stays on record)."""
        now = now_text()
        with self._writing():
            cur = self._db.execute("UPDATE packages SET withdrawn_at=? WHERE id=? AND withdrawn_at IS NULL",
                                   (now, package_id))
            if cur.rowcount == 1:
                insert_audit(self._db, "withdraw", "ok", detail=f"package {package_id}", at=now)
        return cur.rowcount == 1

    # -- what a client sees ----------------------------------------------------------

    def offers(self, client: str, label: str, pal_types: Iterable[str] | None = None) -> list[Offer]:
        """The packages ``client`` may fetch under ``label`` (oldest first),
        recording the first offer of each (one commit, only when new)."""
        args: dict[str, object] = {"label": label, "client": client}
        sql = f"SELECT {_P_COLUMNS} FROM packages p WHERE {_VISIBLE}"
        if pal_types is not None:
            codes = tuple(pal_types)
            if not codes:
                return []
            args.update({f"t{i}": code for i, code in enumerate(codes)})
            sql += f" AND p.pal_type IN ({', '.join(f':t{i}' for i in range(len(codes)))})"
        rows = self._db.execute(sql + " ORDER BY p.id", args).fetchall()
        packages = [_package(r) for r in rows]
        if not packages:
            return []
        deliveries = self._deliveries_of(client, [p.id for p in packages])
        fresh = [p.id for p in packages if deliveries.get(p.id) is None or deliveries[p.id].offered_at is None]
        if fresh:
            now = now_text()
            with self._writing():
                for package_id in fresh:
                    self._db.execute("INSERT INTO deliveries (package_id, client, offered_at) VALUES (?, ?, ?)"
                                     " ON CONFLICT (package_id, client) DO UPDATE SET offered_at=excluded.offered_at"
                                     " WHERE deliveries.offered_at IS NULL", (package_id, client, now))
            deliveries = self._deliveries_of(client, [p.id for p in packages])
        return [Offer(p, deliveries[p.id]) for p in packages]

    def _deliveries_of(self, client: str, package_ids: list[int]) -> dict[int, Delivery]:
        out = {}
        for start in range(0, len(package_ids), 500):
            chunk = package_ids[start:start + 500]
            rows = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE client=? AND package_id IN"
                                    f" ({', '.join('?' * len(chunk))})", (client, *chunk))
            out.update({r[0]: _delivery(r) for r in rows})
        return out

    def delivery(self, package_id: int, client: str) -> Delivery | None:
        row = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE package_id=? AND client=?",
                               (package_id, client)).fetchone()
        return None if row is None else _delivery(row)

    def deliveries(self, package_id: int) -> list[Delivery]:
        rows = self._db.execute(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE package_id=? ORDER BY client",
                                (package_id,))
        return [_delivery(r) for r in rows]

    def offer_by_key_package_id(self, client: str, label: str, key_package_id: bytes) -> Offer | None:
        """The package already offered to ``client`` under ``label`` whose RFC
        7191 pkgID this is (a per-client pkgID first, then the package's own);
        None if none was offered. Never offers anything itself."""
        row = self._db.execute(
            f"SELECT {_P_COLUMNS} FROM packages p JOIN deliveries d ON d.package_id = p.id"
            " WHERE d.client=? AND p.label=? AND d.offered_at IS NOT NULL"
            " AND COALESCE(d.key_package_id, p.key_package_id) = ? ORDER BY p.id DESC LIMIT 1",
            (client, label, key_package_id)).fetchone()
        if row is None:
            return None
        package = _package(row)
        return Offer(package, present(self.delivery(package.id, client), f"delivery of package {package.id}"))

    # -- delivery events -------------------------------------------------------------

    def _offered(self, package_id: int, client: str) -> Delivery:
        found = self.delivery(package_id, client)
        if found is None or found.offered_at is None:
            raise NotOffered(f"package {package_id} was never offered to this client")
        return found

    def set_delivery_content(self, package_id: int, client: str, content: bytes,
                             key_package_id: bytes | None = None) -> None:
        """Keep the body built for one client (before or when it is first served)."""
        if self.package(package_id) is None:
            raise UnknownPackage(package_id)
        with self._writing():
            self._db.execute("INSERT INTO deliveries (package_id, client, content, key_package_id) VALUES (?, ?, ?, ?)"
                             " ON CONFLICT (package_id, client) DO UPDATE SET content=excluded.content,"
                             " key_package_id=COALESCE(excluded.key_package_id, deliveries.key_package_id)",
                             (package_id, client, content, key_package_id))

    def mark_downloaded(self, package_id: int, client: str, *, content: bytes | None = None,
                        key_package_id: bytes | None = None) -> Delivery:
        """Record a download (durably, before the body is sent); ``content``
        keeps the body built for this client so a re-download gets the same."""
        self._offered(package_id, client)
        now = now_text()
        with self._writing():
            self._db.execute("UPDATE deliveries SET downloaded_at=?, downloads=downloads+1,"
                             " content=COALESCE(?, content), key_package_id=COALESCE(?, key_package_id)"
                             " WHERE package_id=? AND client=?", (now, content, key_package_id, package_id, client))
            package = present(self.package(package_id), f"package {package_id}")
            insert_audit(self._db, "download", "ok", client=client, label=package.label,
                         detail=f"package {package_id} type {package.pal_type}", at=now)
        return present(self.delivery(package_id, client), f"delivery of package {package_id}")

    def record_receipt(self, package_id: int, client: str, *, return_der: bytes | None = None) -> Delivery:
        """A receipt (or confirm) for a package this client was offered."""
        return self._record_return(package_id, client, None, return_der)

    def record_error(self, package_id: int, client: str, code: int, *, return_der: bytes | None = None) -> Delivery:
        """An error report (RFC 7191 / RFC 4108 / RFC 5934 code) for a package this client was offered."""
        return self._record_return(package_id, client, int(code), return_der)

    def _record_return(self, package_id: int, client: str, code: int | None, return_der: bytes | None) -> Delivery:
        self._offered(package_id, client)
        now = now_text()
        kind = "receipt" if code is None else "error"
        with self._writing():
            if code is None:
                self._db.execute("UPDATE deliveries SET receipt_at=?, last_return='receipt',"
                                 " return_der=COALESCE(?, return_der)"
                                 " WHERE package_id=? AND client=?", (now, return_der, package_id, client))
            else:
                self._db.execute("UPDATE deliveries SET error_at=?, error_code=?, last_return='error',"
                                 " return_der=COALESCE(?, return_der)"
                                 " WHERE package_id=? AND client=?", (now, code, return_der, package_id, client))
            detail = f"package {package_id}" + ("" if code is None else f" error code {code}")
            package = present(self.package(package_id), f"package {package_id}")
            insert_audit(self._db, kind, "ok", client=client, label=package.label, detail=detail, at=now)
        return present(self.delivery(package_id, client), f"delivery of package {package_id}")

    # -- reporting -----------------------------------------------------------------

    def package_report(self, label: str | None = None, client: str | None = None,
                       include_withdrawn: bool = False) -> list[PackageReport]:
        """Every package with each targeted client's delivery (None: not offered yet)."""
        clients = self._db.execute("SELECT name, labels FROM clients").fetchall()
        out = []
        for package in self.packages(label, include_withdrawn=include_withdrawn):
            if package.target_kind == "client":
                targeted = {package.target}
            elif package.target_kind == "group":
                targeted = set(GroupTables(self._db).group_members(package.target))
            else:
                targeted = {name for name, labels in clients
                            if "*" in labels.split(",") or package.label in labels.split(",")}
            rows = {d.client: d for d in self.deliveries(package.id) if d.offered_at or d.downloaded_at}
            names = sorted(targeted | set(rows))
            if client is not None:
                names = [n for n in names if n == client]
                if not names:
                    continue
            out.append(PackageReport(package, [(n, rows.get(n)) for n in names]))
        return out

    # -- /cacerts and /crls downloads (the PAL's standing entries) --------------------

    def record_standing_downloads(self, client: str, label: str, versions: dict[str, str]) -> None:
        """``client`` fetched these versions of /cacerts or /crls (item -> version), now."""
        unknown = set(versions) - set(STANDING_ITEMS)
        if unknown:
            raise ValueError(f"unknown standing items {sorted(unknown)}")
        now = now_text()
        with self._writing():
            for item, version in versions.items():
                self._db.execute("INSERT INTO standing_downloads VALUES (?, ?, ?, ?, ?)"
                                 " ON CONFLICT (client, label, item)"
                                 " DO UPDATE SET version=excluded.version, downloaded_at=excluded.downloaded_at",
                                 (client, label, item, version, now))

    def standing_downloads(self, client: str, label: str) -> dict[str, StandingDownload]:
        rows = self._db.execute("SELECT item, version, downloaded_at FROM standing_downloads"
                                " WHERE client=? AND label=?", (client, label))
        return {r[0]: StandingDownload(*r) for r in rows}

    # -- enrollment results fetched with GET (RFC 8295 9) ------------------------------

    def mark_result_delivered(self, pending_id: int) -> None:
        with self._writing():
            self._db.execute("INSERT INTO enrollment_results VALUES (?, ?) ON CONFLICT (pending_id)"
                             " DO UPDATE SET delivered_at=excluded.delivered_at", (pending_id, now_text()))

    def delivered_results(self, pending_ids: Iterable[int]) -> dict[int, str]:
        ids = list(pending_ids)
        if not ids:
            return {}
        rows = self._db.execute(f"SELECT pending_id, delivered_at FROM enrollment_results WHERE pending_id IN"
                                f" ({', '.join('?' * len(ids))})", ids)
        return dict(rows.fetchall())

    # -- returns (RFC 8295 5.2, 6.2, 7.2): which packages a client was actually offered ----

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

