"""Writing a file so that it is either all there or not changed: a temporary
file beside it, flushed to disk, renamed over the old one, and the directory
entry flushed too. A crash (or a full disk) never leaves a half certificate,
key or CRL behind. The one file writer of the server and of the clients.

``exclusive`` keeps two processes from rewriting the same group of files at
once (a key file and the certificate for it must come from the same writer)."""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def write_atomically(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` (created with ``mode``), durably."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def exclusive(lock_path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Holds an exclusive lock on ``lock_path`` (made if missing) for the
    block; True inside. With ``wait=False`` and another process holding it,
    the block runs at once with False (and must not write). The lock goes
    with the process: a writer killed in the block leaves no stale lock."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock
