"""The embedded store: one SQLite file in WAL mode with ``synchronous=FULL``,
so a commit is on disk before it returns. Writers of all worker processes
queue on a file lock (writelock.py), then BEGIN IMMEDIATE."""
from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any
from pathlib import Path

from .database import Cursor, Database, Params, ConstraintViolation
from .dialect import SQLITE
from .writelock import WriterLock


class SqliteDatabase(Database):
    dialect = SQLITE

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.url = str(path)
        self.read_only = read_only
        self._write_lock: WriterLock | None = None
        if read_only:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                       isolation_level=None, timeout=30)
            for statement in self.dialect.reader_setup:
                self._db.execute(statement)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = WriterLock(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        for statement in self.dialect.connection_setup:
            self._db.execute(statement)

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.IntegrityError as e:
            raise ConstraintViolation(str(e)) from None

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._db.executemany(sql, rows)
        except sqlite3.IntegrityError as e:
            raise ConstraintViolation(str(e)) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._write_lock is None:
            raise sqlite3.OperationalError("a read-only store connection does not write")
        with self._write_lock.held(), self._db:
            for statement in self.dialect.begin_writing:
                self._db.execute(statement)
            yield

    def reader(self) -> SqliteDatabase:
        return SqliteDatabase(self.path, read_only=True)

    def compact(self) -> None:
        self._db.execute(self.dialect.compact)

    def close(self) -> None:
        self._db.close()
        if self._write_lock is not None:
            self._write_lock.close()
