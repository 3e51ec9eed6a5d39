"""The store on PostgreSQL (psycopg 3), for several nodes sharing one database.

The connection is in autocommit mode; ``writing()`` opens a transaction
and takes a transaction-level advisory lock first, so writers of every node
are serialised exactly as SQLite's are and a repository's read-decide-write
stays correct. A commit returns once the server has it on disk
(``synchronous_commit`` is the server's; its default is on).

A lost connection (the server stopped, restarted or unreachable) raises
``StoreUnavailable`` (503 + Retry-After) and is dropped; the next call
connects again, so service resumes by itself when the server is back. A
connection the server ended while it sat idle (a restart between two calls,
``pg_terminate_backend``) is noticed before it is used and replaced, so the
first call after the server is back is served rather than refused.
"""
from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from ..errors import StoreUnavailable
from .database import Cursor, Database, Params, ConstraintViolation
from .dialect import POSTGRESQL

CONNECT_TIMEOUT = 5  # seconds: a server that does not answer is down


class PostgresDatabase(Database):
    dialect = POSTGRESQL

    def __init__(self, url: str, *, password: str | None = None, read_only: bool = False) -> None:
        self.url = url
        self._password = password
        self.read_only = read_only
        self._conn: psycopg.Connection[Any] | None = None
        self._connection()  # fail now, with the reason, if it cannot connect at all

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and _ended_while_idle(self._conn):
            self._conn.close()
            self._conn = None
        if self._conn is None or self._conn.closed:
            options: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, "application_name": "estappliance",
                       "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 2}
            if self._password is not None:
                options["password"] = self._password
            try:
                self._conn = psycopg.connect(self.url, autocommit=True, **options)
            except psycopg.OperationalError as e:
                raise StoreUnavailable(f"the store database is unreachable: {_first_line(e)}") from None
            for statement in self.dialect.reader_setup if self.read_only else self.dialect.connection_setup:
                self._conn.execute(statement)
        return self._conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.IntegrityError as e:
            raise ConstraintViolation(_first_line(e)) from None
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            # A server going away (shutdown, restart, network) or refusing
            # work for now (admin shutdown, timeouts): retry later.
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self._conn.close()
                self._conn = None
            raise StoreUnavailable(f"the store database failed: {_first_line(e)}") from None

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        with self._errors():
            return self._connection().execute(self.dialect.sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._errors():
            with self._connection().cursor() as cur:
                cur.executemany(self.dialect.sql(sql), rows)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._errors():
            conn = self._connection()
            with conn.transaction():  # BEGIN ... COMMIT (ROLLBACK on an error)
                conn.execute(self.dialect.writer_lock)
                yield

    def compact(self) -> None:
        """After a bulk load: VACUUM (ANALYZE) now, so that the planner knows
        the new rows and autovacuum does not visit them later under load (it
        would: a million inserted rows pass its insert threshold)."""
        self.execute("VACUUM (ANALYZE)")

    def reader(self) -> PostgresDatabase:
        return PostgresDatabase(self.url, password=self._password, read_only=True)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _ended_while_idle(conn: psycopg.Connection[Any]) -> bool:
    """Between calls (autocommit, no transaction open, nothing listened to)
    a live session has nothing to say: anything readable on its socket is the
    server's goodbye ("terminating connection due to administrator command")
    or end of file. Inside a transaction nothing is checked: a transaction
    cannot move to another connection, and its own statements will fail."""
    if conn.closed:
        return True
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
