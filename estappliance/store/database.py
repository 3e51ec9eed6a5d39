"""The store's core: one connection to the database, its write transaction
and what a repository may ask of it, whichever database it is.

Two backends implement it: ``sqlite_database`` (the embedded default, one
file) and ``postgres_database`` (several nodes on one server). Repositories
(the ``*_tables`` modules) write SQL once, with ``?`` placeholders and the
subset both databases accept; what differs lives in ``dialect``.

Writers are serialised: one write transaction at a time across every process
and node on the database (SQLite: a file lock and BEGIN IMMEDIATE;
PostgreSQL: a transaction-level advisory lock). A repository can read, decide
and write inside ``writing()`` as if it were alone, on either database.
"""
from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from .. import metrics
from .dialect import Dialect

Params = Sequence[Any] | Mapping[str, Any]


class Cursor(Protocol):
    """What ``execute`` returns (a DB-API cursor of either driver)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class ConstraintViolation(Exception):
    """A row breaks a constraint: its key exists, a CHECK fails (either driver's IntegrityError)."""


class SchemaMismatch(Exception):
    """The database's schema is not the version this appliance runs."""


class Database(abc.ABC):
    dialect: Dialect
    read_only: bool
    url: str  # where it is, for messages and ``reader()`` (never with a password)
    audit_listener: Callable[[Any], None] | None = None  # see audit_tables.watch

    @abc.abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Cursor:
        """One statement, ``?`` placeholders. Outside ``writing()`` it commits
        by itself (autocommit)."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        """BEGIN, the database-wide writer lock, then COMMIT (ROLLBACK on error)."""

    @abc.abstractmethod
    def reader(self) -> Database:
        """A second, read-only connection to the same database, for lookups
        that must not queue behind a commit."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def compact(self) -> None:
        """After a bulk load: make the rows part of the main database file (SQLite's WAL)."""

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """One durable write transaction, taken in turn with every other writer."""
        started = time.perf_counter()
        with self._transaction():
            yield
        metrics.observe_commit(time.perf_counter() - started)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside ``writing()``: a statement that may fail without failing the
        transaction (PostgreSQL aborts a transaction at its first error)."""
        self.execute("SAVEPOINT one")
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK TO SAVEPOINT one")
            self.execute("RELEASE SAVEPOINT one")
            raise
        self.execute("RELEASE SAVEPOINT one")

    def insert(self, sql: str, params: Params = ()) -> int:
        """An INSERT into a table with an ``id`` key; returns the new row's id."""
        row = self.execute(sql + " RETURNING id", params).fetchone()
        return int(row[0])

    def tables(self) -> set[str]:
        return {row[0] for row in self.execute(self.dialect.list_tables)}

    def columns(self, table: str) -> set[str]:
        return {row[0] for row in self.execute(self.dialect.list_columns, (table,))}
