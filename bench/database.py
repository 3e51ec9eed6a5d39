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

from .postgres import PostgresMissing, PostgresServer
from .target import BenchError

DATABASE_NAME = "est"


@dataclass(frozen=True)
class PostgresStore:
    url: str  # over the cluster's Unix socket, no password (trust)
    pid: int  # the postmaster: its processes' CPU is the store's
    data_dir: Path


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
        print(f"database: PostgreSQL (pid {server.pid}, fsync on, synchronous_commit on), {url}", flush=True)
        yield PostgresStore(url, server.pid, server.data_dir)
    finally:
        server.destroy()
