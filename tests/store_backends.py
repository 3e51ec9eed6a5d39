"""Store unit tests on both databases: a test case written once, with its
store at ``self.store_location()``, gets a twin on PostgreSQL (a fresh
database on the suite's own server, tests/postgres_server.py)."""
from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from twisted.trial import unittest

from tests.postgres_server import shared_server

Case = TypeVar("Case", bound=type)


class StoreBackend:
    """Mixed into a TestCase: ``backend`` says where its stores are."""

    backend = "sqlite"

    def store_location(self, name: str = "est.sqlite") -> Path | str:
        """A new store's location: a SQLite file in the test's temp dir, or a
        fresh PostgreSQL database's URL (the same value opens it again)."""
        if self.backend == "postgresql":
            return shared_server().create_database()
        assert isinstance(self, unittest.TestCase)
        return Path(self.mktemp()) / name


def on_postgres(case: Case) -> Case:
    """The same tests with every store on PostgreSQL."""
    return type(case.__name__ + "OnPostgres", (case,), {"backend": "postgresql", "__module__": case.__module__})
