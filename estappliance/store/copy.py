"""Copy a store into another database and verify the copy (``estctl store
copy``): a SQLite appliance moving to PostgreSQL, or back into a file.

The source may be serving meanwhile. It is read in ONE read transaction
(a snapshot: SQLite's WAL, PostgreSQL's repeatable read), so the copy is the
store as it was when the copy began, whatever is written while it runs. The
target is written in ONE write transaction: it holds the whole snapshot or,
when anything fails, stays as it was. It must be empty, or hold this
release's schema with no rows; anything else is refused before a change.

Then the copy is verified, from a new connection to the target, against
the snapshot: the rows of every table are counted on both sides, and a
SHA-256 is taken over every certificate's (serial, DER) on both sides, in
the order of the serials' stored hex text compared byte by byte.

Blocking; no reactor.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

from ..errors import StoreUnavailable
from ..progress import Progress
from .database import Database, SchemaMismatch
from .schema import SCHEMA_VERSION, TABLES, prepare, version

BATCH = 5000  # rows per fetch from the source (and per executemany)
# Tables whose rows the target's own schema already holds some of: the key to update them on.
KEPT_ROWS = {"meta": "key"}  # schema_version (the same value: both are at SCHEMA_VERSION)


class Task(Protocol):
    """A progress bar (``Progress.task``)."""

    def advance(self, amount: float = 1) -> None: ...

    def update(self, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None: ...


class CopyError(Exception):
    """The copy failed; the message says how the target was left."""


class CopyRefused(CopyError):
    """The copy cannot be made; the target was not changed."""


class CopyUnverified(CopyError):
    """The copy was made, but reading it back for the verification failed."""


@dataclass(frozen=True)
class TableCount:
    table: str
    source: int
    copy: int


@dataclass(frozen=True)
class CopyReport:
    counts: list[TableCount]
    source_digest: str  # SHA-256 over the certificates' (serial, DER) in the snapshot
    copy_digest: str  # the same over the target after the copy
    copy_seconds: float
    verify_seconds: float

    @property
    def rows(self) -> int:
        return sum(c.source for c in self.counts)

    @property
    def differences(self) -> list[str]:
        """What differs between the snapshot and the copy; empty: verified."""
        found = [f"{c.table} ({c.source} rows in the store, {c.copy} in the copy)"
                 for c in self.counts if c.source != c.copy]
        if self.source_digest != self.copy_digest:
            found.append("certificates (their SHA-256 differs)")
        return found


def schema_tables() -> list[str]:
    """Every table of the schema, in its order (a referenced table before the tables referring to it)."""
    return re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", TABLES)


def copy_store(source: Database, target: Database, progress: Progress, *, batch: int = BATCH) -> CopyReport:
    """Copy every table of ``source`` (best a read-only connection:
    ``open_database(..., read_only=True)``) into ``target``, then verify.
    Raises CopyRefused (the target unchanged) when it cannot, CopyUnverified
    when the copy was made but could not be read back."""
    started = time.perf_counter()
    try:
        counts, source_digest = _copy(source, target, progress, batch)
    except (sqlite3.Error, psycopg.Error) as e:
        # What the store's own errors do not cover (a file that is no database, a missing privilege).
        raise CopyRefused(f"{_first_line(e)}; the target was not changed") from None
    copied = time.perf_counter()
    try:
        copy_counts, copy_digest = _read_back(target, list(counts), progress, batch)
    except (sqlite3.Error, psycopg.Error, StoreUnavailable) as e:
        raise CopyUnverified(f"the copy was made but could not be verified: {_first_line(e)}") from None
    return CopyReport([TableCount(t, counts[t], copy_counts[t]) for t in counts], source_digest, copy_digest,
                      copied - started, time.perf_counter() - copied)


def _copy(source: Database, target: Database, progress: Progress, batch: int) -> tuple[dict[str, int], str]:
    """The snapshot's row counts per table and certificates' digest, once copied and committed."""
    _check_target(target)
    started = time.perf_counter()
    with snapshot(source):
        found = version(source)
        if found != SCHEMA_VERSION:
            raise CopyRefused(f"the store {source.url} is at schema version {found}, not {SCHEMA_VERSION}:"
                              " run 'estctl store migrate' first")
        tables = schema_tables()
        counts = {table: _count(source, table) for table in tables}
        task = progress.task("copying", total=sum(counts.values()))
        try:
            prepare(target)  # an empty database gets the schema (its own transaction)
        except SchemaMismatch as e:
            raise CopyRefused(str(e)) from None
        with target.writing():
            _check_empty(target, tables)  # in the write transaction: no one fills it meanwhile
            source_digest = ""
            for table in tables:
                digest = _copy_table(source, target, table, batch, task)
                source_digest = digest or source_digest
            for table, column in _identities(target):
                target.execute(str(target.dialect.follow_identity(table, column)))
    return counts, source_digest


def _read_back(target: Database, tables: list[str], progress: Progress, batch: int) -> tuple[dict[str, int], str]:
    """The copy's row counts and certificates' digest, through a new connection."""
    check = target.reader()
    try:
        with snapshot(check):
            copy_counts = {table: _count(check, table) for table in tables}
            verify = progress.task("verifying", total=copy_counts["certificates"])
            return copy_counts, _digest(check, batch, verify)
    finally:
        check.close()


@contextlib.contextmanager
def snapshot(db: Database) -> Iterator[None]:
    """One read transaction: every read inside sees the database as it was at the first."""
    db.execute(db.dialect.begin_snapshot)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _check_target(target: Database) -> None:
    found = version(target)
    if found is None and target.tables():
        raise CopyRefused(f"{target.url} holds other tables ({', '.join(sorted(target.tables())[:5])}):"
                          " copy into an empty database")
    if found is not None and found != SCHEMA_VERSION:
        raise CopyRefused(f"{target.url} holds a store at schema version {found}: copy into an empty database")


def _check_empty(target: Database, tables: list[str]) -> None:
    for table in tables:
        if table not in KEPT_ROWS and target.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            raise CopyRefused(f"{target.url} is not empty (table {table} has rows): copy into an empty database"
                              " or one holding an empty schema")


def _count(db: Database, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _columns(source: Database, target: Database, table: str) -> list[str]:
    columns = target.columns(table)
    if source.columns(table) != columns:
        raise CopyRefused(f"table {table} has other columns in {source.url} than this release's schema")
    return sorted(columns)


def _copy_table(source: Database, target: Database, table: str, batch: int, task: Task) -> str | None:
    """Copy one table in batches; for the certificates, return their digest
    (taken while copying them, in the verification's order)."""
    task.update(description=f"copying {table}")
    columns = _columns(source, target, table)
    names = ", ".join(columns)
    insert = f"INSERT INTO {table} ({names}) VALUES "
    conflict = ""
    if table in KEPT_ROWS:
        key = KEPT_ROWS[table]
        conflict = f" ON CONFLICT ({key}) DO UPDATE SET " + ", ".join(
            f"{c} = excluded.{c}" for c in columns if c != key)
    query = f"SELECT {names} FROM {table}"
    digest = None
    if table == "certificates":
        digest = hashlib.sha256()
        query = _certificates_query(source, names)
        serial, der = columns.index("serial"), columns.index("der")
    for rows in scan(source, query, batch):
        _insert(target, insert, conflict, len(columns), rows)
        if digest is not None:
            _hash(digest, ((row[serial], row[der]) for row in rows))
        task.advance(len(rows))
    return None if digest is None else digest.hexdigest()


def _insert(target: Database, insert: str, conflict: str, width: int, rows: list[Any]) -> None:
    """``rows`` by executemany, several in each INSERT where the database gains by it."""
    per = max(1, target.dialect.bulk_insert_variables // width)
    values = "(" + ", ".join("?" * width) + ")"
    full = len(rows) // per * per
    if full:
        target.executemany(insert + ", ".join([values] * per) + conflict,
                           [[v for row in rows[i:i + per] for v in row] for i in range(0, full, per)])
    if full < len(rows):
        target.execute(insert + ", ".join([values] * (len(rows) - full)) + conflict,
                       [v for row in rows[full:] for v in row])


def _certificates_query(db: Database, columns: str) -> str:
    return f"SELECT {columns} FROM certificates ORDER BY serial{db.dialect.bytewise}"


def _digest(db: Database, batch: int, task: Task) -> str:
    digest = hashlib.sha256()
    for rows in scan(db, _certificates_query(db, "serial, der"), batch):
        _hash(digest, rows)
        task.advance(len(rows))
    return digest.hexdigest()


def _hash(digest: Any, rows: Any) -> None:
    """Each (serial, DER) length-prefixed, so that no two lists hash alike."""
    for serial, der in rows:
        key = serial.encode()
        digest.update(len(key).to_bytes(2, "big") + key + len(der).to_bytes(4, "big") + der)


_cursor_names = itertools.count()


def scan(db: Database, query: str, batch: int) -> Iterator[list[Any]]:
    """A query's rows, ``batch`` at a time, without holding them all (inside
    ``snapshot``: PostgreSQL's cursor lives in its transaction)."""
    if db.dialect.declare_cursor is None or db.dialect.fetch_cursor is None:
        cursor = db.execute(query)
        while rows := list(itertools.islice(cursor, batch)):
            yield rows
        return
    name = f"copy_scan_{next(_cursor_names)}"
    db.execute(db.dialect.declare_cursor.format(name=name, query=query))
    while rows := db.execute(db.dialect.fetch_cursor.format(count=batch, name=name)).fetchall():
        yield rows


def _identities(db: Database) -> list[tuple[str, str]]:
    if db.dialect.identity_columns is None:
        return []
    return [(str(table), str(column)) for table, column in db.execute(db.dialect.identity_columns)]


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
