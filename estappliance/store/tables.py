"""What every repository of the store is: a view of one concern over the
store's core (database.py), sharing its connection and write transaction."""
from __future__ import annotations

import contextlib
import datetime
from typing import TypeVar

from .database import Database


class Repository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        return self._db.writing()


T = TypeVar("T")


def present(value: T | None, what: str) -> T:
    """A row the same write transaction has just made or changed: there."""
    if value is None:
        raise LookupError(f"{what} is missing right after it was written")
    return value


def now_text() -> str:
    """The time stamp every table keeps: UTC, ISO 8601, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
