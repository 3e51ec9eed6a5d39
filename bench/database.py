"""The database a started server's store lives in: the SQLite file of the
state directory (nothing to start), or a fresh PostgreSQL cluster made for
the run (``bench/postgres.py``) and removed after it.

The cluster is durable, as SQLite's ``synchronous=FULL`` is: ``fsync`` and
``synchronous_commit`` on, so a commit is on disk before the answer that
depends on it; the comparison is fair."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg

from .postgres import PostgresMissing, PostgresServer
from .target import BenchError

DATABASE_NAME = "est"


@dataclass(frozen=True)
class PostgresStore:
    url: str  # over the cluster's Unix socket, no password (trust)
    pid: int  # the postmaster: its processes' CPU is the store's
    data_dir: Path


def durability(url: str) -> str:
    """The server's own word on it: ``fsync on, synchronous_commit on``."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit')").fetchone()
    assert row is not None
    return f"fsync {row[0]}, synchronous_commit {row[1]}"


@contextlib.contextmanager
def store_database(kind: str) -> Iterator[PostgresStore | None]:
    """None for ``sqlite``; for ``postgresql`` a running cluster with an empty database."""
    if kind == "sqlite":
        yield None
        return
    try:
        server = PostgresServer(fsync=True)
    except PostgresMissing as e:
        raise BenchError(str(e), 2) from None
    try:
        try:
            server.start()
        except RuntimeError as e:
            raise BenchError(f"PostgreSQL did not start: {e}") from None
        url = server.create_database(DATABASE_NAME)
        assert server.pid is not None
        print(f"database: PostgreSQL (pid {server.pid}, {durability(url)}), {url}", flush=True)
        yield PostgresStore(url, server.pid, server.data_dir)
    finally:
        server.destroy()


@dataclass(frozen=True)
class DatabaseUse:
    """What the database did during the timed load."""

    write_transactions: int  # each one a durable commit (a WAL flush)
    wal_bytes: int


class DatabaseProbe:
    """Counts the write transactions (transaction ids handed out) and the WAL
    written between ``start`` and ``stop``: exact, unlike the statistics
    views, which backends report only now and then."""

    QUERY = "SELECT txid_current(), pg_current_wal_lsn()"

    def __init__(self, url: str) -> None:
        self.url = url
        self._before: tuple[int, str] | None = None
        self.use: DatabaseUse | None = None

    def _sample(self) -> tuple[int, str]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(self.QUERY).fetchone()
        assert row is not None
        return int(row[0]), str(row[1])

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> None:
        if self._before is None:
            return
        xid, lsn = self._sample()
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT pg_wal_lsn_diff(%s, %s)", (lsn, self._before[1])).fetchone()
        assert row is not None
        # Each sample takes a transaction id of its own: the first one's lies before the load.
        self.use = DatabaseUse(xid - self._before[0] - 1, int(row[0]))
