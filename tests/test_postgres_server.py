"""The PostgreSQL the tests start (tests/postgres_server.py) does what its users rely on."""
from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict
from twisted.trial import unittest

from tests.postgres_server import PostgresServer, _alive, _children_of, _self_signed_tls, shared_server


def dbname(url: str) -> str:
    return str(conninfo_to_dict(url)["dbname"])


class SharedServerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = shared_server()

    def database(self) -> str:
        url = self.server.create_database()
        self.addCleanup(self.server.drop_database, dbname(url))
        return url

    def test_each_database_is_reachable_over_the_socket_and_isolated(self) -> None:
        first, second = self.database(), self.database()
        self.assertIn(str(self.server.socket_dir), first)
        with psycopg.connect(first) as conn:
            self.assertEqual(conn.execute("SELECT current_database()").fetchone(), (dbname(first),))
            conn.execute("CREATE TABLE t (v text)")
            conn.execute("INSERT INTO t VALUES ('only in the first')")
        with psycopg.connect(first) as conn:
            self.assertEqual(conn.execute("SELECT v FROM t").fetchall(), [("only in the first",)])
        with psycopg.connect(second) as conn:
            with self.assertRaises(psycopg.errors.UndefinedTable):
                conn.execute("SELECT v FROM t")

    def test_the_same_server_for_the_whole_process(self) -> None:
        self.assertIs(shared_server(), self.server)

    def test_fast_for_tests_with_the_real_commit_semantics(self) -> None:
        """fsync off (the benchmark's cluster turns it on: bench/database.py), synchronous_commit on."""
        with psycopg.connect(self.database()) as conn:
            self.assertEqual(conn.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
                             .fetchone(), ("off", "on"))

    def test_tls_url_with_the_password_connects_over_tls(self) -> None:
        name = dbname(self.database())
        url = self.server.tls_url(name)
        self.assertNotIn(self.server.password, url)
        self.assertIn("sslmode=verify-full", url)
        with psycopg.connect(url, password=self.server.password) as conn:
            self.assertEqual(conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone(),
                             (True,))
            self.assertEqual(conn.execute("SELECT current_user, current_database()").fetchone(),
                             (self.server.tls_user, name))

    def test_wrong_or_missing_password_is_refused(self) -> None:
        url = self.server.tls_url("postgres")
        with self.assertRaises(psycopg.OperationalError) as refused:
            psycopg.connect(url, password=self.server.password + "x", connect_timeout=10)
        self.assertIn("password authentication failed", str(refused.exception))
        with self.assertRaises(psycopg.OperationalError):
            psycopg.connect(url, password="", connect_timeout=10)

    def test_plain_tcp_is_refused(self) -> None:
        url = f"postgresql://{self.server.tls_user}@127.0.0.1:{self.server.port}/postgres?sslmode=disable"
        with self.assertRaises(psycopg.OperationalError) as refused:
            psycopg.connect(url, password=self.server.password, connect_timeout=10)
        self.assertIn("no encryption", str(refused.exception))

    def test_verify_full_checks_the_certificate_against_the_fixture_ca(self) -> None:
        for host in ("127.0.0.1", "localhost"):
            with psycopg.connect(self.server.tls_url("postgres", host=host), password=self.server.password) as conn:
                self.assertEqual(conn.execute("SELECT 1").fetchone(), (1,))
        other_ca = Path(self.mktemp())
        other_ca.write_bytes(_self_signed_tls(["127.0.0.1"])[0])
        url = self.server.tls_url("postgres").replace(str(self.server.ca_file), str(other_ca.resolve()))
        with self.assertRaises(psycopg.OperationalError) as refused:
            psycopg.connect(url, password=self.server.password, connect_timeout=10)
        self.assertIn("certificate verify failed", str(refused.exception))


class OwnServerTests(unittest.TestCase):
    """Faults on a server of the test's own (the shared one stays up for the others)."""

    def setUp(self) -> None:
        self.server = PostgresServer()
        self.addCleanup(self.server.destroy)
        self.server.start()

    def test_kill_breaks_connections_and_restart_brings_the_data_back(self) -> None:
        url = self.server.create_database()
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE t (v int)")
            conn.execute("INSERT INTO t VALUES (42)")
        port = self.server.port
        session = psycopg.connect(url)
        self.addCleanup(session.close)
        self.server.kill()
        self.assertFalse(self.server.running)
        with self.assertRaises(psycopg.OperationalError):
            session.execute("SELECT v FROM t")
        with self.assertRaises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=5)
        self.server.restart()
        self.assertEqual(self.server.port, port)
        with psycopg.connect(url) as conn:
            self.assertEqual(conn.execute("SELECT v FROM t").fetchall(), [(42,)])
        with psycopg.connect(self.server.tls_url(dbname(url)), password=self.server.password) as conn:
            self.assertEqual(conn.execute("SELECT v FROM t").fetchall(), [(42,)])

    def test_stop_leaves_no_postgres_process_behind(self) -> None:
        session = psycopg.connect(self.server.create_database())  # a backend of its own
        self.addCleanup(session.close)
        postmaster = self.server.pid
        assert postmaster is not None
        processes = [postmaster, *_children_of(postmaster)]
        self.assertGreater(len(processes), 2)
        self.server.stop()
        self.assertEqual([pid for pid in processes if _alive(pid)], [])
        self.assertFalse(self.server.running)
        with self.assertRaises(psycopg.OperationalError):
            session.execute("SELECT 1")

    def test_destroy_removes_the_cluster(self) -> None:
        directory = self.server.socket_dir.parent
        self.assertTrue((directory / "data").is_dir())
        self.server.destroy()
        self.assertFalse(directory.exists())
