"""What only the PostgreSQL store does: its schema version guard, TLS and a
password from a file or the environment, 503 while the database is away and
recovery without a restart, writers serialised across connections (nodes).
The repositories' own tests run on both databases (store_backends.on_postgres)."""
from __future__ import annotations

import os
import threading
import urllib.parse
from pathlib import Path

from twisted.trial import unittest

from estappliance.config import StoreConfig
from estappliance.errors import StoreUnavailable
from estappliance.store import SchemaMismatch, Store
from estappliance.store.postgres_database import PostgresDatabase
from estappliance.store.schema import SCHEMA_VERSION
from tests.postgres_server import PostgresServer, shared_server


class SchemaTests(unittest.TestCase):
    def setUp(self):
        self.url = shared_server().create_database()

    def open(self, **kw) -> Store:
        store = Store(self.url, **kw)
        self.addCleanup(store.close)
        return store

    def test_empty_database_gets_the_schema_at_the_current_version(self):
        store = self.open()
        self.assertTrue({"meta", "clients", "certificates", "pending", "packages", "deliveries", "leases",
                         "audit", "ca_generations"} <= store.db.tables())
        self.assertEqual(store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0],
                         SCHEMA_VERSION)
        # ids are the database's: each new row gets the next one
        first = store.certificates.add_pending(label="default", client="a", key_hash="k", subject="CN=a",
                                               operation="simpleenroll", request=b"\x30\x00")
        second = store.certificates.add_pending(label="default", client="a", key_hash="k2", subject="CN=a",
                                                operation="simpleenroll", request=b"\x30\x00")
        self.assertEqual(second.id, first.id + 1)

    def test_an_older_schema_is_refused_until_migrated(self):
        self.open().db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
        with self.assertRaises(SchemaMismatch) as refused:
            Store(self.url)
        self.assertIn("schema version 3", str(refused.exception))
        self.assertIn("estctl store migrate", str(refused.exception))
        migrated = self.open(migrate=True)
        self.assertEqual(migrated.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0],
                         SCHEMA_VERSION)
        self.open()  # now served

    def test_a_newer_schema_is_refused_even_by_migrate(self):
        self.open().db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
        with self.assertRaises(SchemaMismatch) as refused:
            Store(self.url, migrate=True)
        self.assertIn("newer", str(refused.exception))


class ConnectionTests(unittest.TestCase):
    def setUp(self):
        self.server = shared_server()
        self.dbname = urllib.parse.urlsplit(self.server.create_database()).path.lstrip("/")

    def test_tls_with_password_from_a_file(self):
        secret = Path(self.mktemp())
        secret.write_text(self.server.password + "\n")
        where = StoreConfig(path=Path("unused.sqlite"), url=self.server.tls_url(self.dbname), password_file=secret)
        store = Store(where)
        self.addCleanup(store.close)
        store.clients.add_client("alice", "hash", ["default"])
        self.assertEqual(store.clients.client("alice").labels, ("default",))
        ssl = store.db.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
        self.assertTrue(ssl)

    def test_password_from_the_environment(self):
        os.environ["EST_TEST_STORE_PASSWORD"] = self.server.password
        self.addCleanup(os.environ.pop, "EST_TEST_STORE_PASSWORD")
        where = StoreConfig(path=Path("unused.sqlite"), url=self.server.tls_url(self.dbname),
                            password_env="EST_TEST_STORE_PASSWORD")
        store = Store(where)
        self.addCleanup(store.close)
        self.assertEqual(store.certificates.count_certificates(), 0)

    def test_a_wrong_password_is_unavailable_with_the_reason(self):
        secret = Path(self.mktemp())
        secret.write_text("not-the-password")
        where = StoreConfig(path=Path("unused.sqlite"), url=self.server.tls_url(self.dbname), password_file=secret)
        with self.assertRaises(StoreUnavailable) as refused:
            Store(where)
        self.assertIn("password authentication failed", str(refused.exception))


class AwayTests(unittest.TestCase):
    """A server of this test's own, stopped and killed under an open store."""

    def setUp(self):
        self.server = PostgresServer()
        self.server.start()
        self.addCleanup(self.server.destroy)
        self.store = Store(self.server.create_database())
        self.addCleanup(self.store.close)
        self.store.clients.add_client("alice", "hash", ["default"])

    def assert_away_then_back(self):
        with self.assertRaises(StoreUnavailable):
            self.store.clients.client("alice")
        with self.assertRaises(StoreUnavailable):  # a write: its transaction never starts
            self.store.clients.add_client("bob", "hash", ["default"])
        self.server.restart()
        self.assertEqual(self.store.clients.client("alice").name, "alice")  # the same Store, reconnected
        self.store.clients.add_client("bob", "hash", ["default"])
        self.assertEqual([c.name for c in self.store.clients.clients()], ["alice", "bob"])

    def test_killed_server_is_unavailable_then_the_store_reconnects(self):
        self.server.kill()
        self.assert_away_then_back()

    def test_stopped_server_is_unavailable_then_the_store_reconnects(self):
        self.server.stop()
        self.assert_away_then_back()

    def test_a_restart_while_idle_costs_no_call(self):
        """The server stops and starts between two calls: the first read and
        the first write after it are served (the store notices its ended
        session before using it), on the reader connection too."""
        reader = self.store.db.reader()
        self.addCleanup(reader.close)
        self.assertEqual(reader.execute("SELECT count(*) FROM clients").fetchone()[0], 1)
        self.server.restart()
        self.assertEqual(self.store.clients.client("alice").name, "alice")
        self.assertEqual(reader.execute("SELECT count(*) FROM clients").fetchone()[0], 1)
        self.server.restart()
        self.store.clients.add_client("bob", "hash", ["default"])
        self.assertEqual([c.name for c in self.store.clients.clients()], ["alice", "bob"])

    def test_a_session_ended_by_the_administrator_is_replaced(self):
        other = Store(self.server.create_database()).db  # a superuser session; the call waits until the session has ended
        self.addCleanup(other.close)
        pid = self.store.db.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.assertTrue(other.execute("SELECT pg_terminate_backend(%s, 10000)" % int(pid)).fetchone()[0])
        self.store.clients.add_client("bob", "hash", ["default"])
        self.assertNotEqual(self.store.db.execute("SELECT pg_backend_pid()").fetchone()[0], pid)

    def test_a_transaction_cut_off_commits_nothing(self):
        """The server dies inside a write transaction: the caller hears
        StoreUnavailable and none of the transaction's rows exist."""
        with self.assertRaises(StoreUnavailable):
            with self.store.db.writing():
                self.store.db.execute("INSERT INTO clients (name, labels, created_at) VALUES ('carol', '', 'now')")
                self.server.kill()
                self.store.db.execute("INSERT INTO clients (name, labels, created_at) VALUES ('dave', '', 'now')")
        self.server.restart()
        self.assertEqual([c.name for c in self.store.clients.clients()], ["alice"])


class WritersTests(unittest.TestCase):
    def test_read_decide_write_is_serialised_across_connections(self):
        """Two nodes' connections taking TAMP sequence numbers at once (read
        the last, write it plus one) never hand out the same number."""
        url = shared_server().create_database()
        stores = [Store(url), Store(url)]
        for s in stores:
            self.addCleanup(s.close)
        taken: list[list[int]] = [[], []]

        def take(i: int) -> None:
            for _ in range(40):
                taken[i].append(stores[i].tamp.next_tamp_seq_num(b"\x01" * 20))
        threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        numbers = taken[0] + taken[1]
        self.assertEqual(sorted(numbers), list(range(1, 81)))

    def test_reader_connection_does_not_write(self):
        store = Store(shared_server().create_database())
        self.addCleanup(store.close)
        reader = store.reader()
        self.addCleanup(reader.close)
        self.assertIsInstance(reader.db, PostgresDatabase)
        with self.assertRaises(Exception):
            reader.clients.add_client("mallory", "hash", ["*"])
        self.assertIsNone(store.clients.client("mallory"))
