"""What every table mixin of ``Store`` (db.py) relies on, declared for the
type checker: the connection and the write transaction. ``Store`` defines
both; a mixin is only ever used as one of its bases."""
from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING


class Tables:
    if TYPE_CHECKING:
        _db: sqlite3.Connection

        def _writing(self) -> AbstractContextManager[None]: ...
