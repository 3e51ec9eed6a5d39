"""Writers of one SQLite file queue on a file lock, not on SQLite's busy handler.

Several worker processes commit to the same store. SQLite's busy handler
polls a held write lock with growing sleeps (1, 2, 5, 10, 15, 20 ms ...):
under load a worker whose commit found the other's in progress waited up to
35 ms for a lock freed after one. ``flock`` wakes the next writer the moment
the lock is released. SQLite's own locking still guards the file; this only
decides who tries next.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class WriterLock:
    def __init__(self, db_path: Path):
        self.path = db_path.with_name(db_path.name + "-writer.lock")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
