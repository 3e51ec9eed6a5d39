"""What every table mixin of ``Store`` (db.py) relies on, declared for the
type checker: the connection and the write transaction. ``Store`` defines
both; a mixin is only ever used as one of its bases."""
from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TypeVar


class Tables:
    if TYPE_CHECKING:
        _db: sqlite3.Connection

        def _writing(self) -> AbstractContextManager[None]: ...


T = TypeVar("T")


def present(value: T | None, what: str) -> T:
    """A row the same write transaction has just made or changed: there."""
    if value is None:
        raise sqlite3.DatabaseError(f"{what} is missing right after it was written")
    return value
