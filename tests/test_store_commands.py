"""``estctl store migrate`` and ``estctl store copy`` (estappliance.admin.store_commands,
estappliance.store.copy), on SQLite files and the suite's own PostgreSQL
(tests/postgres_server.py); the refusal of an older schema by estctl and by
``twistd est`` (master and worker), as the real programs print it."""
from __future__ import annotations

import datetime
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from estappliance.progress import Progress
from estappliance.store import CertificateRecord, Store, serial_key
from estappliance.store.copy import CopyRefused, copy_store, schema_tables
from estappliance.store.db import open_database
from estappliance.store.schema import SCHEMA_VERSION

from . import support
from .postgres_server import shared_server
from .test_admin import EstctlTestCase, write_toml
from .test_e2e_interop import BIN, EstServer
from .test_store import FIRST_RELEASE_SCHEMA

UTC = datetime.timezone.utc
NOT_BEFORE = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
NOT_AFTER = datetime.datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
REFUSAL = f"this appliance needs {SCHEMA_VERSION}: run 'estctl store migrate'"


def new_postgres_database() -> tuple[str, str]:
    """A fresh database on the suite's server: (its name, its socket URL)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    return name, shared_server().create_database(name)


def rows(db_or_store, table: str) -> list[tuple]:
    """Every row of a table, its columns by name, each value with its type (bytes stay
    bytes, None stays None), in one order whatever the database."""
    db = getattr(db_or_store, "db", db_or_store)
    columns = sorted(db.columns(table))
    return sorted((tuple((type(v).__name__, v) for v in r)
                   for r in db.execute(f"SELECT {', '.join(columns)} FROM {table}")),
                  key=lambda r: [(name == "NoneType", name, v if v is not None else 0) for name, v in r])


def make_old(path: Path, old_version: str = "3") -> None:
    """A current store made to look like one of an older release: its newest table gone, its version older."""
    db = sqlite3.connect(path)
    db.executescript(f"DROP TABLE leases; UPDATE meta SET value = '{old_version}' WHERE key = 'schema_version';")
    db.commit()
    db.close()


def fill(store: Store) -> None:
    """A store as an appliance leaves it: clients, certificates (some revoked), pending requests
    (waiting, decided, issued), packages with deliveries, groups, CA generations, the audit trail."""
    store.clients.add_client("alice", "hash-a", ["default", "iot"], {"SHA-256": "ab" * 32, "MD5": "cd" * 16})
    store.clients.add_client("bob", None, ["*"])
    for i in range(40):
        store.certificates.record_certificate(serial=0x1000 + i * 0x1111, subject=f"CN=device-{i}",
                                              not_before=NOT_BEFORE, not_after=NOT_AFTER, label="default",
                                              client="alice" if i % 2 else None,
                                              der=bytes([0x30, 0x82, i, 0]) + bytes(range(256)) * 2,
                                              replaces=0x1000 if i == 5 else None)
    store.certificates.revoke(0x1000 + 3 * 0x1111, "keyCompromise")
    store.certificates.revoke(0x1000 + 7 * 0x1111, "superseded")
    waiting = [store.certificates.add_pending(label="default", client="alice", key_hash=f"k{i}", subject=f"CN=p{i}",
                                              operation="simpleenroll", request=b"\x30\x03\x02\x01" + bytes([i]))
               for i in range(4)]
    store.certificates.add_pending(label="iot", client="bob", key_hash="kc", subject="CN=cmc", operation="fullcmc",
                                   request=b"\x30\x00", kind="crmf", replaces=0x2111)
    store.certificates.decide_pending(waiting[0].id, True)
    store.certificates.decide_pending(waiting[1].id, False)
    store.certificates.record_certificate(serial=0xABCDEF, subject="CN=p0", not_before=NOT_BEFORE,
                                          not_after=NOT_AFTER, label="default", client="alice", der=b"\x30\x01\x00",
                                          pending_id=waiting[0].id)
    everyone = store.packages.queue_package(label="default", pal_type="0026", target_kind="client", target="alice",
                                            content=b"\x30\x03\x02\x01\x05", receipt_requested=True,
                                            key_package_id=b"\x01\x02", details={"firmware": "1.2"})
    store.packages.queue_package(label="default", pal_type="0026", target_kind="group", target="fleet",
                                 size=77, contents={"bob": b"\x30\x02\x05\x00"}, name="per client")
    store.packages.offers("alice", "default")
    store.packages.mark_downloaded(everyone.id, "alice")
    store.packages.record_receipt(everyone.id, "alice", return_der=b"\x30\x01\x00")
    store.groups.add_to_group("fleet", ["alice", "bob"])
    store.generations.add_generation(key_label="ca-1", key_type="ec-p256", state="current", cert=b"\x30\x05ca-1",
                                     chain=None, detail="initial")
    store.generations.add_generation(key_label="ca-2", key_type="ec-p384", state="next", cert=None, chain=b"",
                                     detail="rollover")
    store.audit.record("simpleenroll", "refused", client="mallory", label="default", detail=None)
    store.audit.probe_commit()


class MigrateSqliteTests(EstctlTestCase):
    """``estctl store migrate`` on the configured SQLite file, and estctl's refusal before it."""

    def write_first_release_store(self) -> None:
        path = self.cfg.store.path
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path)
        db.executescript(FIRST_RELEASE_SCHEMA)
        db.commit()
        db.close()

    @defer.inlineCallbacks
    def test_first_release_store_migrated_then_served(self):
        self.write_first_release_store()
        code, out, err = yield self.estctl("client", "list")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, f"estctl: the store {self.cfg.store.path} is at schema version 1; {REFUSAL}\n")

        code, out, err = yield self.estctl("store", "migrate")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, f"store {self.cfg.store.path}: schema version 1 -> {SCHEMA_VERSION}\n")

        store = self.open_store()  # a node of this release opens it without migrating
        self.assertEqual(store.clients.client("alice").password_hash, "hash-a")
        self.assertEqual(store.certificates.certificate(0xFEED).der, b"\x30\x03\x02\x01\x0a")
        code, out, err = yield self.estctl("client", "list")
        self.assertEqual((code, err), (0, ""))
        self.assertTrue(out.startswith("alice\tlabels=default\t"), out)
        code, out, _ = yield self.estctl("store", "migrate")
        self.assertEqual((code, out), (0, f"store {self.cfg.store.path}: already at version {SCHEMA_VERSION}\n"))

    @defer.inlineCallbacks
    def test_no_store_yet_is_created(self):
        code, out, err = yield self.estctl("store", "migrate")
        self.assertEqual((code, out, err), (0, f"store {self.cfg.store.path}: created at version {SCHEMA_VERSION}\n", ""))
        db = open_database(self.cfg.store.path)
        self.addCleanup(db.close)
        self.assertIn("leases", db.tables())

    @defer.inlineCallbacks
    def test_store_of_a_newer_release_is_left_alone(self):
        Store(self.cfg.store).close()
        db = sqlite3.connect(self.cfg.store.path)
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        db.commit()
        db.close()
        code, out, err = yield self.estctl("store", "migrate")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("schema version 99, newer than this appliance's", err)
        version = sqlite3.connect(self.cfg.store.path).execute("SELECT value FROM meta WHERE key='schema_version'")
        self.assertEqual(version.fetchone()[0], "99")


class PostgresEstctlTestCase(EstctlTestCase):
    """estctl with ``[store] url`` naming a fresh database of the suite's PostgreSQL."""

    def setUp(self):
        super().setUp()
        self.dbname, self.url = new_postgres_database()
        self.cfg = support.config(self.state, labels={"iot": {"auth": ["basic"]}}, store={"url": self.url})
        write_toml(self.cfg, self.conf)


class MigratePostgresTests(PostgresEstctlTestCase):
    @defer.inlineCallbacks
    def test_empty_database_gets_the_schema_then_stays(self):
        code, out, err = yield self.estctl("store", "migrate")
        self.assertEqual((code, out, err), (0, f"store {self.url}: created at version {SCHEMA_VERSION}\n", ""))
        db = open_database(self.url)
        self.addCleanup(db.close)
        self.assertTrue(set(schema_tables()) <= db.tables())
        code, out, err = yield self.estctl("store", "migrate")
        self.assertEqual((code, out, err), (0, f"store {self.url}: already at version {SCHEMA_VERSION}\n", ""))

    @defer.inlineCallbacks
    def test_older_database_refused_then_migrated(self):
        Store(self.url).close()
        db = open_database(self.url)
        db.execute("DROP TABLE leases")
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        db.close()
        code, out, err = yield self.estctl("client", "list")
        self.assertEqual((code, out, err), (1, "", f"estctl: the store {self.url} is at schema version 3; {REFUSAL}\n"))
        code, out, err = yield self.estctl("store", "migrate")
        self.assertEqual((code, out, err), (0, f"store {self.url}: schema version 3 -> {SCHEMA_VERSION}\n", ""))
        self.assertIn("leases", self.open_store().db.tables())


class CopyFromPostgresTests(PostgresEstctlTestCase):
    @defer.inlineCallbacks
    def test_postgresql_into_a_new_sqlite_file(self):
        """A store on PostgreSQL (read in a repeatable-read snapshot) copied back into a file."""
        store = self.open_store()
        fill(store)
        target = self.state / "back" / "est.sqlite"
        code, out, err = yield self.estctl("store", "copy", "--to", str(target))
        self.assertEqual((code, err), (0, ""))
        self.assertRegex(out, rf"copied \d+ rows of {re.escape(self.url)} into {target} in .* verified in")
        copy = Store(target)
        self.addCleanup(copy.close)
        for table in schema_tables():
            self.assertEqual(rows(copy, table), rows(store, table), table)


class CopyTests(EstctlTestCase):
    """``estctl store copy --to URL`` of the configured SQLite store."""

    timeout = 120

    def setUp(self):
        super().setUp()
        store = self.open_store()
        fill(store)

    def assert_same_store(self, copy: Store) -> None:
        """Every row of every table equal (bytes, NULLs, time stamps as they were), and the repositories agree."""
        source = self.open_store()
        for table in schema_tables():
            if table != "meta":
                self.assertEqual(rows(copy, table), rows(source, table), table)
        self.assertEqual(copy.clients.clients(), source.clients.clients())
        # (listed by issue time: those of one second in any order)
        self.assertEqual(sorted(copy.certificates.certificates(), key=lambda c: c.serial),
                         sorted(source.certificates.certificates(), key=lambda c: c.serial))
        self.assertEqual(copy.certificates.pending_requests(None), source.certificates.pending_requests(None))
        self.assertEqual(copy.packages.packages(include_withdrawn=True), source.packages.packages(include_withdrawn=True))
        for package in source.packages.packages(include_withdrawn=True):
            self.assertEqual(copy.packages.deliveries(package.id), source.packages.deliveries(package.id))
        self.assertEqual(copy.groups.groups(), source.groups.groups())
        self.assertEqual(copy.generations.generations(), source.generations.generations())
        self.assertEqual(copy.audit.events(1000), source.audit.events(1000))

    @defer.inlineCallbacks
    def test_sqlite_to_postgresql(self):
        _, url = new_postgres_database()
        code, out, err = yield self.estctl("store", "copy", "--to", url)
        self.assertEqual((code, err), (0, ""))
        source = self.open_store()
        counts = {t: int(source.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in schema_tables()}
        for table in ("certificates", "pending", "packages", "deliveries", "audit", "ca_generations"):
            self.assertRegex(out, rf"\n{table} +{counts[table]} +{counts[table]}\n")
        self.assertEqual(counts["certificates"], 41)
        self.assertRegex(out, rf"copied {sum(counts.values())} rows of {self.cfg.store.path} into .* verified in")
        [store_hash] = re.findall(r"store ([0-9a-f]{64})", out)
        [copy_hash] = re.findall(r"copy  ([0-9a-f]{64})", out)
        self.assertEqual(store_hash, copy_hash)

        copy = Store(url)
        self.addCleanup(copy.close)
        self.assert_same_store(copy)
        revoked = copy.certificates.certificate(0x1000 + 3 * 0x1111)
        self.assertEqual((revoked.status, revoked.revocation_reason), ("revoked", "keyCompromise"))

        # The identities follow the copied ids: new rows get fresh ones.
        ids = [p.id for p in source.certificates.pending_requests(None)]
        fresh = copy.certificates.add_pending(label="default", client="bob", key_hash="new", subject="CN=new",
                                              operation="simpleenroll", request=b"\x30\x00")
        self.assertEqual(fresh.id, max(ids) + 1)
        package = copy.packages.queue_package(label="default", pal_type="0026", target_kind="label",
                                              target="default", content=b"\x30\x00")
        self.assertEqual(package.id, max(p.id for p in source.packages.packages(include_withdrawn=True)) + 1)
        gen = copy.generations.add_generation(key_label="ca-3", key_type="ec-p256", state="next", detail="again")
        self.assertEqual(gen.id, 3)

    @defer.inlineCallbacks
    def test_into_a_non_empty_database_refused_and_nothing_changed(self):
        _, url = new_postgres_database()
        other = Store(url)
        self.addCleanup(other.close)
        other.clients.add_client("carol", "hash-c", ["default"])
        before = {t: rows(other, t) for t in schema_tables()}
        code, out, err = yield self.estctl("store", "copy", "--to", url)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, f"estctl: {url} is not empty (table clients has rows): copy into an empty database"
                              " or one holding an empty schema\n")
        self.assertEqual({t: rows(other, t) for t in schema_tables()}, before)

    @defer.inlineCallbacks
    def test_into_a_database_of_something_else_refused(self):
        _, url = new_postgres_database()
        db = open_database(url)
        self.addCleanup(db.close)
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        code, out, err = yield self.estctl("store", "copy", "--to", url)
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, f"estctl: {url} holds other tables (invoices): copy into an empty database\n")
        self.assertEqual(db.tables(), {"invoices"})

    @defer.inlineCallbacks
    def test_into_a_sqlite_file_holding_an_empty_schema(self):
        target = self.state / "copy" / "est.sqlite"
        Store(target).close()
        code, out, err = yield self.estctl("store", "copy", "--to", str(target))
        self.assertEqual((code, err), (0, ""))
        self.assertIn("verified", out)
        copy = Store(target)
        self.addCleanup(copy.close)
        self.assert_same_store(copy)

    @defer.inlineCallbacks
    def test_over_tls_with_a_password_file(self):
        server = shared_server()
        name, _ = new_postgres_database()
        password = self.file("db.password", server.password + "\n")
        code, out, err = yield self.estctl("store", "copy", "--to", server.tls_url(name), "--password-file",
                                           str(password))
        self.assertEqual((code, err), (0, ""))
        self.assertIn("verified", out)
        copy = Store(server.socket_url(name))
        self.addCleanup(copy.close)
        self.assert_same_store(copy)

    @defer.inlineCallbacks
    def test_password_in_the_url_or_missing_refused(self):
        server = shared_server()
        name, _ = new_postgres_database()
        with_password = server.tls_url(name).replace("est_tls@", "est_tls:secret@")
        code, _, err = yield self.estctl("store", "copy", "--to", with_password)
        self.assertEqual(code, 1)
        self.assertIn("no password in the URL", err)
        code, _, err = yield self.estctl("store", "copy", "--to", server.tls_url(name), "--password-env",
                                         "EST_TEST_UNSET_PASSWORD")
        self.assertEqual((code, err), (1, "estctl: the environment variable EST_TEST_UNSET_PASSWORD is not set\n"))
        code, _, err = yield self.estctl("store", "copy", "--to", server.tls_url(name))  # no password at all
        self.assertEqual(code, 1)
        self.assertTrue(err.startswith("estctl: the store database is unreachable: ") and err.count("\n") == 1, err)


class PausingProgress(Progress):
    """Progress whose every step waits until ``writer`` has committed once more:
    the copy and the writer interleave, batch by batch."""

    def __init__(self, writer: CertificateWriter) -> None:
        super().__init__(enabled=False)
        self.writer = writer

    def task(self, description: str, total: float | None = None):
        writer = self.writer

        class Step:
            def advance(self, amount: float = 1) -> None:
                if description == "copying":
                    writer.wait_for_more()

            def update(self, **kw) -> None:
                pass
        return Step()


class CertificateWriter(threading.Thread):
    """Records a certificate after another on its own connection until stopped."""

    def __init__(self, where) -> None:
        super().__init__(daemon=True)
        self.where = where
        self.written = 0
        self.more = threading.Condition()
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        store = Store(self.where)
        try:
            while not self.stopped.is_set():
                store.certificates.record_certificate(
                    serial=0x7000000 + self.written, subject="CN=live", not_before=NOT_BEFORE, not_after=NOT_AFTER,
                    label="default", client="alice", der=b"\x30\x03\x02\x01\x07")
                with self.more:
                    self.written += 1
                    self.more.notify_all()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            store.close()

    def wait_for_more(self) -> None:
        with self.more:
            seen = self.written
            self.more.wait_for(lambda: self.written > seen or self.error is not None, timeout=30)


class CopyWhileServingTests(unittest.TestCase):
    timeout = 240

    def test_copy_of_a_store_being_written_verifies_against_its_snapshot(self):
        """A writer records certificates the whole time (the copy waits for
        one more commit after each batch it copies). The copy holds the store
        as it was when the copy began: its row counts and its certificates'
        SHA-256 equal the snapshot's (that is what the copy verifies), none of
        the certificates written meanwhile is in it, and the live store went
        on to hold more than the copy."""
        path = Path(self.mktemp()) / "est.sqlite"
        store = Store(path)
        self.addCleanup(store.close)
        store.clients.add_client("alice", None, ["default"])
        store.certificates.import_certificates(
            CertificateRecord(serial=0x100000 + i, subject=f"CN={i}", not_before="2025-01-01T00:00:00+00:00",
                              not_after="2027-01-01T00:00:00+00:00", label="default", client="alice",
                              issued_at="2025-01-01T00:00:00+00:00", der=i.to_bytes(4, "big") * 64,
                              status="valid", revoked_at=None, revocation_reason=None)
            for i in range(3000))
        writer = CertificateWriter(path)
        writer.start()
        self.addCleanup(writer.join, 30)
        self.addCleanup(writer.stopped.set)
        writer.wait_for_more()
        _, url = new_postgres_database()
        source, target = open_database(path, read_only=True), open_database(url)
        try:
            report = copy_store(source, target, PausingProgress(writer), batch=250)
        finally:
            source.close()
            target.close()
        writer.stopped.set()
        writer.join(30)
        self.assertIsNone(writer.error)

        self.assertEqual(report.differences, [])
        copied = {c.table: c for c in report.counts}["certificates"]
        self.assertEqual(copied.source, copied.copy)
        copy = Store(url)
        self.addCleanup(copy.close)
        serials = {c.serial for c in copy.certificates.certificates()}
        self.assertEqual(len(serials), copied.copy)
        live = {c.serial for c in store.certificates.certificates()}
        during = {0x7000000 + i for i in range(writer.written)} - serials
        self.assertGreaterEqual(len(during), 3000 // 250)  # one per batch copied, at least
        self.assertEqual(serials | during, live)
        self.assertEqual(serials & during, set())


class CopyRoundTripTests(unittest.TestCase):
    def test_postgresql_back_into_a_sqlite_file(self):
        """SQLite -> PostgreSQL -> SQLite: every row as it was."""
        first = Path(self.mktemp()) / "first.sqlite"
        store = Store(first)
        self.addCleanup(store.close)
        fill(store)
        _, url = new_postgres_database()
        back = first.with_name("back.sqlite")
        for source_where, target_where in ((first, url), (url, back)):
            source, target = open_database(source_where, read_only=True), open_database(target_where)
            try:
                report = copy_store(source, target, Progress(enabled=False))
            finally:
                source.close()
                target.close()
            self.assertEqual(report.differences, [])
        again = Store(back)
        self.addCleanup(again.close)
        for table in schema_tables():
            self.assertEqual(rows(again, table), rows(store, table), table)

    def test_older_store_refused(self):
        path = Path(self.mktemp()) / "est.sqlite"
        Store(path).close()
        make_old(path)
        target = path.with_name("copy.sqlite")
        source, destination = open_database(path, read_only=True), open_database(target)
        self.addCleanup(source.close)
        self.addCleanup(destination.close)
        with self.assertRaises(CopyRefused) as refused:
            copy_store(source, destination, Progress(enabled=False))
        self.assertIn(f"schema version 3, not {SCHEMA_VERSION}: run 'estctl store migrate' first", str(refused.exception))
        self.assertEqual(destination.tables(), set())


class RealProgramsTests(unittest.TestCase):
    """The installed ``estctl`` and ``twistd est`` (child processes) on a store of an older schema."""

    timeout = 180

    def setUp(self):
        self.server = EstServer(Path(self.mktemp()))
        self.server.prepare()
        self.addCleanup(self.server.kill)
        self.store_path = self.server.state / "est.sqlite"
        make_old(self.store_path)
        self.refusal = f"the store {self.store_path} is at schema version 3; {REFUSAL}"

    def twistd_refuses(self) -> None:
        proc = self.server.run(BIN / "twistd", "-n", "--pidfile=", "est", "-c", self.server.config, check=False)
        output = (proc.stdout + proc.stderr).decode()
        self.assertNotEqual(proc.returncode, 0, output)
        self.assertNotIn("Traceback", output)
        self.assertEqual([line for line in output.splitlines() if "estctl store migrate" in line],
                         [f"est: {self.refusal}"])

    def test_refused_by_estctl_and_twistd_until_migrated(self):
        listed = self.server.estctl("client", "list", check=False)
        self.assertEqual((listed.returncode, listed.stdout, listed.stderr.decode()),
                         (1, b"", f"estctl: {self.refusal}\n"))
        self.twistd_refuses()

        migrated = self.server.estctl("store", "migrate")
        self.assertEqual(migrated.stdout.decode(), f"store {self.store_path}: schema version 3 -> {SCHEMA_VERSION}\n")
        self.server.start()  # serves: accepted a verified TLS handshake
        self.assertIn(self.server.stop(), (0, -15))  # test_e2e_interop: twistd may end by the SIGTERM itself

    def test_refused_by_the_master_of_several_workers_and_by_a_worker(self):
        text = self.server.config.read_text().replace("workers = 1", "workers = 2")
        self.server.config.write_text(text)
        self.twistd_refuses()
        # A worker started against it (the master checks first) says the same, once.
        proc = self.server.run(sys.executable, "-m", "estappliance.worker_process", "--config", self.server.config,
                               "--link", "99", "--family", "2", "--index", "1", check=False)
        self.assertEqual((proc.returncode, proc.stdout, proc.stderr.decode()),
                         (2, b"", f"est worker 1: {self.refusal}\n"))
