"""estappliance.store: the SQLite store of clients, certificates and the audit
trail; durable settings, duplicate refusals, and survival across reopening."""
from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

from twisted.trial import unittest

from estappliance.store.schema import SCHEMA_VERSION
from tests.store_backends import StoreBackend, on_postgres
from estappliance.store import SchemaMismatch
from estappliance.store import CertificateRecord, DuplicateClient, DuplicateSerial, Store, serial_key

UTC = datetime.timezone.utc
NOT_BEFORE = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
NOT_AFTER = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class StoreTestCase(StoreBackend, unittest.TestCase):
    def setUp(self):
        self.path = self.store_location("state/est.sqlite")
        self.store = self.open()

    def open(self) -> Store:
        store = Store(self.path)
        self.addCleanup(store.close)
        return store

    def record(self, store=None, serial=0x1234567890ABCDEF1234, **kw):
        fields = dict(serial=serial, subject="CN=device-1", not_before=NOT_BEFORE, not_after=NOT_AFTER,
                      label="default", client="alice", der=b"\x30\x03\x02\x01\x01")
        fields.update(kw)
        (store or self.store).certificates.record_certificate(**fields)
        return fields


class SchemaTests(StoreTestCase):
    def test_file_and_parent_directory_created(self):
        self.assertTrue(self.path.is_file())

    def test_tables_created(self):
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        self.assertTrue({"meta", "clients", "certificates", "audit"} <= tables, tables)
        version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        self.assertIsNotNone(version)
        columns = {r[1] for r in db.execute("PRAGMA table_info(certificates)")}
        self.assertTrue({"serial", "subject", "not_before", "not_after", "label", "client", "der", "status"}
                        <= columns, columns)

    def test_opening_twice_keeps_one_schema_version_row(self):
        self.open()
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT COUNT(*) FROM meta WHERE key='schema_version'").fetchone()[0], 1)

    def test_wal_journal_mode(self):
        self.assertEqual(self.store.db.execute("PRAGMA journal_mode").fetchone()[0].lower(), "wal")
        # WAL is a property of the file: a fresh connection sees it too.
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0].lower(), "wal")

    def test_synchronous_full(self):
        # 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA
        self.assertEqual(self.store.db.execute("PRAGMA synchronous").fetchone()[0], 2)

    def test_serial_key_is_lower_hex(self):
        self.assertEqual(serial_key(0xABCDEF), "abcdef")
        self.assertEqual(serial_key(0x0F), "f")


class ClientTests(StoreTestCase):
    def test_add_and_list(self):
        self.store.clients.add_client("bob", "hash-b", ["default", "iot"])
        self.store.clients.add_client("alice", "hash-a", ["*"])
        clients = self.store.clients.clients()
        self.assertEqual([c.name for c in clients], ["alice", "bob"])
        bob = self.store.clients.client("bob")
        self.assertEqual(bob.password_hash, "hash-b")
        self.assertEqual(bob.labels, ("default", "iot"))
        self.assertTrue(bob.created_at)
        self.assertTrue(bob.may_use("iot"))
        self.assertFalse(bob.may_use("factory"))
        self.assertTrue(self.store.clients.client("alice").may_use("anything"))

    def test_unknown_client(self):
        self.assertIsNone(self.store.clients.client("nobody"))

    def test_client_without_password(self):
        self.store.clients.add_client("device", None, ["default"])
        self.assertIsNone(self.store.clients.client("device").password_hash)

    def test_duplicate_client(self):
        self.store.clients.add_client("alice", "hash-1", ["default"])
        err = self.assertRaises(DuplicateClient, self.store.clients.add_client, "alice", "hash-2", ["*"])
        self.assertIn("alice", str(err))
        alice = self.store.clients.client("alice")
        self.assertEqual((alice.password_hash, alice.labels), ("hash-1", ("default",)))
        self.assertEqual(len(self.store.clients.clients()), 1)

    def test_set_password(self):
        self.store.clients.add_client("alice", "old", ["default"])
        self.assertTrue(self.store.clients.set_client_password("alice", "new"))
        self.assertEqual(self.store.clients.client("alice").password_hash, "new")
        self.assertFalse(self.store.clients.set_client_password("nobody", "new"))
        self.assertIsNone(self.store.clients.client("nobody"))

    def test_remove(self):
        self.store.clients.add_client("alice", "h", ["default"])
        self.store.clients.add_client("bob", "h", ["default"])
        self.assertTrue(self.store.clients.remove_client("alice"))
        self.assertIsNone(self.store.clients.client("alice"))
        self.assertEqual([c.name for c in self.store.clients.clients()], ["bob"])
        self.assertFalse(self.store.clients.remove_client("alice"))
        self.store.clients.add_client("alice", "again", ["default"])  # the name is free again
        self.assertEqual(self.store.clients.client("alice").password_hash, "again")


class CertificateTests(StoreTestCase):
    def test_round_trip(self):
        serial = (1 << 158) | 0xDEADBEEF  # a 159-bit serial, like x509.random_serial_number()
        der = bytes(range(256)) * 3
        self.record(serial=serial, subject="CN=device-1,O=Example", label="iot", client="alice", der=der)
        rec = self.store.certificates.certificate(serial)
        self.assertEqual(rec.serial, serial)
        self.assertEqual(rec.subject, "CN=device-1,O=Example")
        self.assertEqual(rec.label, "iot")
        self.assertEqual(rec.client, "alice")
        self.assertEqual(rec.der, der)
        self.assertEqual(rec.status, "valid")
        self.assertIsNone(rec.revoked_at)
        self.assertEqual(datetime.datetime.fromisoformat(rec.not_before), NOT_BEFORE)
        self.assertEqual(datetime.datetime.fromisoformat(rec.not_after), NOT_AFTER)
        self.assertTrue(rec.issued_at)
        self.assertEqual(self.store.certificates.count_certificates(), 1)

    def test_unknown_serial(self):
        self.record(serial=5)
        self.assertIsNone(self.store.certificates.certificate(6))

    def test_client_none_for_server_certificates(self):
        self.record(serial=7, client=None, label="(tls-server)")
        self.assertIsNone(self.store.certificates.certificate(7).client)

    def test_list_by_client(self):
        self.record(serial=1, client="alice")
        self.record(serial=2, client="bob")
        self.record(serial=3, client="alice")
        self.assertEqual(sorted(c.serial for c in self.store.certificates.certificates("alice")), [1, 3])
        self.assertEqual(len(self.store.certificates.certificates()), 3)
        self.assertEqual(self.store.certificates.certificates("carol"), [])

    def test_duplicate_serial(self):
        first = self.record(serial=42, subject="CN=first", der=b"first-der")
        events_before = self.store.audit.events()
        self.assertRaises(DuplicateSerial, self.record, serial=42, subject="CN=second", der=b"second-der",
                          client="mallory")
        rec = self.store.certificates.certificate(42)
        self.assertEqual((rec.subject, rec.der, rec.client), ("CN=first", b"first-der", first["client"]))
        self.assertEqual(self.store.certificates.count_certificates(), 1)
        # The failed attempt left no audit event and no open transaction behind.
        self.assertEqual(self.store.audit.events(), events_before)
        self.record(serial=43)
        self.assertEqual(self.store.certificates.count_certificates(), 2)

    def test_issue_is_audited(self):
        self.record(serial=9, client="alice", label="iot", audit_detail="enrolled CN=device-1")
        event = self.store.audit.events(1)[0]
        self.assertEqual((event.operation, event.outcome, event.client, event.label, event.detail),
                         ("issue", "ok", "alice", "iot", "enrolled CN=device-1"))

    def test_recorded_certificate_visible_to_another_connection(self):
        """Committed on return: a second connection (another worker, another node) sees it at once."""
        self.record(serial=0xABC)
        other = self.open()
        self.assertEqual(other.db.execute("SELECT COUNT(*) FROM certificates WHERE serial='abc'").fetchone()[0], 1)
        self.assertEqual(other.reader().certificates.certificate(0xABC).subject, "CN=device-1")


class ImportTests(StoreTestCase):
    """Store.import_certificates: the bulk load the benchmark prefills with."""

    def imported(self, serial: int, **kw) -> CertificateRecord:
        fields = dict(serial=serial, subject=f"CN=imported-{serial}", not_before=NOT_BEFORE.isoformat(),
                      not_after=NOT_AFTER.isoformat(), label="default", client="bench",
                      issued_at=NOT_BEFORE.isoformat(), der=bytes([0x30, serial % 256]), status="valid",
                      revoked_at=None, revocation_reason=None)
        fields.update(kw)
        return CertificateRecord(**fields)

    def test_writes_n_rows_the_store_reads_back(self):
        records = [self.imported(serial) for serial in range(1, 8)]
        self.assertEqual(self.store.certificates.import_certificates(iter(records), batch=3), 7)
        self.assertEqual(self.store.certificates.count_certificates(), 7)
        self.assertEqual(self.store.certificates.certificates("bench"), records)
        if self.backend == "sqlite":
            self.assertEqual(Path(f"{self.path}-wal").stat().st_size, 0)  # checkpointed into the database file
        else:  # vacuumed and analysed now, not by autovacuum later under load
            vacuumed = self.store.db.execute("SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL"
                                             " FROM pg_stat_user_tables WHERE relname = 'certificates'").fetchone()
            self.assertEqual(tuple(vacuumed), (True, True))
        self.assertEqual(self.open().certificates.certificate(5), records[4])

    def test_one_audit_event_per_batch(self):
        self.store.certificates.import_certificates([self.imported(s) for s in range(1, 6)], batch=2)
        self.assertEqual([(e.operation, e.outcome, e.detail) for e in self.store.audit.events()],
                         [("import", "ok", "1 certificates"), ("import", "ok", "2 certificates"),
                          ("import", "ok", "2 certificates")])

    def test_a_taken_serial_refuses_its_batch_only(self):
        self.record(serial=4)
        with self.assertRaises(DuplicateSerial) as raised:
            self.store.certificates.import_certificates([self.imported(s) for s in range(1, 7)], batch=3)
        self.assertEqual(raised.exception.args, (4,))
        self.assertEqual(sorted(c.serial for c in self.store.certificates.certificates()), [1, 2, 3, 4])
        self.assertEqual(self.store.certificates.certificate(4).subject, "CN=device-1")

    def test_a_serial_twice_in_one_batch_is_refused(self):
        with self.assertRaises(DuplicateSerial) as raised:
            self.store.certificates.import_certificates([self.imported(7), self.imported(8), self.imported(7)])
        self.assertEqual((raised.exception.args, self.store.certificates.count_certificates()), ((7,), 0))


class AuditTests(StoreTestCase):
    def test_newest_first(self):
        for i in range(5):
            self.store.audit.record(f"op{i}", "ok", client=f"c{i}", label="default", detail=f"d{i}")
        events = self.store.audit.events()
        self.assertEqual([e.operation for e in events], ["op4", "op3", "op2", "op1", "op0"])
        self.assertEqual((events[0].client, events[0].label, events[0].detail), ("c4", "default", "d4"))
        self.assertTrue(events[0].at)

    def test_limit(self):
        for i in range(5):
            self.store.audit.record(f"op{i}", "ok")
        self.assertEqual([e.operation for e in self.store.audit.events(2)], ["op4", "op3"])

    def test_optional_fields(self):
        self.store.audit.record("simpleenroll", "refused: NotAuthorized")
        event = self.store.audit.events(1)[0]
        self.assertEqual((event.client, event.label, event.detail), (None, None, None))
        self.assertEqual(event.outcome, "refused: NotAuthorized")


class ReopenTests(StoreTestCase):
    def test_data_survives_close_and_reopen(self):
        self.store.clients.add_client("alice", "hash-a", ["default", "iot"])
        self.record(serial=0xFEED, subject="CN=kept", der=b"kept-der")
        self.store.audit.record("simpleenroll", "refused: TooLarge", client="alice", label="iot")
        self.store.close()

        store = self.open()
        alice = store.clients.client("alice")
        self.assertEqual((alice.password_hash, alice.labels), ("hash-a", ("default", "iot")))
        rec = store.certificates.certificate(0xFEED)
        self.assertEqual((rec.subject, rec.der), ("CN=kept", b"kept-der"))
        events = store.audit.events()
        self.assertEqual([e.operation for e in events], ["simpleenroll", "issue"])
        self.assertRaises(DuplicateSerial, self.record, store, serial=0xFEED)
        self.assertRaises(DuplicateClient, store.clients.add_client, "alice", "x", ["default"])


# The schema as the first release (commit f73caef, schema_version "1") wrote it.
FIRST_RELEASE_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE clients (
    name TEXT PRIMARY KEY, password_hash TEXT, labels TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY, subject TEXT NOT NULL, not_before TEXT NOT NULL, not_after TEXT NOT NULL,
    label TEXT NOT NULL, client TEXT, issued_at TEXT NOT NULL, der BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'valid', revoked_at TEXT, revocation_reason TEXT);
CREATE INDEX certificates_client ON certificates(client);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, client TEXT, label TEXT, operation TEXT NOT NULL,
    outcome TEXT NOT NULL, detail TEXT);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO clients VALUES ('alice', 'hash-a', 'default', '2025-01-01T00:00:00+00:00');
INSERT INTO certificates (serial, subject, not_before, not_after, label, client, issued_at, der)
    VALUES ('feed', 'CN=old', '2025-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', 'default', 'alice',
            '2025-01-01T00:00:00+00:00', x'300302010a');
"""


class IntermediateTablesTests(StoreTestCase):
    def test_kept_once_and_found_by_subject(self):
        inter = self.store.intermediates
        inter.remember_intermediates([(b"\x30\x01a", b"\x30\x02der-1"), (b"\x30\x01b", b"\x30\x02der-2")])
        inter.remember_intermediates([(b"\x30\x01a", b"\x30\x02der-1"), (b"\x30\x01a", b"\x30\x02der-3")])
        self.assertEqual(sorted(inter.intermediates_named(b"\x30\x01a")), [b"\x30\x02der-1", b"\x30\x02der-3"])
        self.assertEqual(inter.intermediates_named(b"\x30\x01b"), [b"\x30\x02der-2"])
        self.assertEqual(inter.intermediates_named(b"\x30\x01c"), [])
        inter.remember_intermediates([])


class UpgradeTests(unittest.TestCase):
    def test_store_written_by_the_first_release_still_opens(self):
        """An appliance's existing est.sqlite keeps working after an upgrade:
        its clients and certificates are readable and new ones can be added."""
        path = Path(self.mktemp()) / "est.sqlite"
        path.parent.mkdir(parents=True)
        db = sqlite3.connect(path)
        db.executescript(FIRST_RELEASE_SCHEMA)
        db.commit()
        db.close()

        # A node of this release refuses to serve it, and says what to run.
        with self.assertRaises(SchemaMismatch) as refused:
            Store(path)
        self.assertIn("version 1", str(refused.exception))
        self.assertIn("estctl store migrate", str(refused.exception))
        store = Store(path, migrate=True)
        self.addCleanup(store.close)
        self.assertEqual([c.name for c in store.clients.clients()], ["alice"])
        self.assertEqual(store.clients.client("alice").password_hash, "hash-a")
        record = store.certificates.certificate(0xFEED)
        self.assertEqual((record.subject, record.der), ("CN=old", b"\x30\x03\x02\x01\x0a"))
        store.clients.add_client("bob", "hash-b", ["default"])
        store.certificates.record_certificate(serial=0xBEEF, subject="CN=new", not_before=NOT_BEFORE, not_after=NOT_AFTER,
                                 label="default", client="bob", der=b"\x30\x00")
        self.assertEqual(store.certificates.count_certificates(), 2)

    def test_version_4_gains_the_client_intermediates_table(self):
        path = Path(self.mktemp()) / "est.sqlite"
        Store(path).close()
        db = sqlite3.connect(path)
        db.executescript("DROP TABLE client_intermediates; UPDATE meta SET value = '4' WHERE key = 'schema_version';")
        db.commit()
        db.close()
        with self.assertRaises(SchemaMismatch) as refused:
            Store(path)
        self.assertIn("version 4", str(refused.exception))
        store = Store(path, migrate=True)
        self.addCleanup(store.close)
        store.intermediates.remember_intermediates([(b"\x30\x00", b"\x30\x01x")])
        self.assertEqual(store.intermediates.intermediates_named(b"\x30\x00"), [b"\x30\x01x"])

    def test_fullcmc_requests_waiting_in_their_own_table_move_into_pending(self):
        """Version 2 kept /fullcmc's waiting requests' kind and renewed serial
        in cmc_pending; version 3 has one pending table: the rows move in
        place, the old table goes, and other operations' rows read pkcs10."""
        path = Path(self.mktemp()) / "est.sqlite"
        Store(path).close()  # the current schema, then made to look like version 2
        db = sqlite3.connect(path)
        db.executescript("""
            CREATE TABLE cmc_pending (pending_id INTEGER PRIMARY KEY REFERENCES pending(id), kind TEXT NOT NULL,
                                      replaces TEXT);
            INSERT INTO pending (id, label, client, key_hash, subject, operation, csr, state, created_at)
              VALUES (1, 'default', 'alice', 'k1', 'CN=a', 'fullcmc', x'3000', 'pending', '2026-01-01T00:00:00+00:00'),
                     (2, 'default', 'alice', 'k2', 'CN=b', 'simpleenroll', x'3000', 'approved',
                      '2026-01-01T00:00:00+00:00');
            INSERT INTO cmc_pending VALUES (1, 'crmf', 'beef');
            UPDATE meta SET value = '2' WHERE key = 'schema_version';
        """)
        db.commit()
        db.close()

        store = Store(path, migrate=True)
        self.addCleanup(store.close)
        crmf, pkcs10 = store.certificates.pending(1), store.certificates.pending(2)
        self.assertEqual((crmf.operation, crmf.kind, crmf.replaces, crmf.request), ("fullcmc", "crmf", 0xBEEF,
                                                                                    b"\x30\x00"))
        self.assertEqual((pkcs10.kind, pkcs10.replaces, pkcs10.state), ("pkcs10", None, "approved"))
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        self.assertNotIn("cmc_pending", tables)
        self.assertEqual(store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0], SCHEMA_VERSION)


ClientTestsOnPostgres = on_postgres(ClientTests)
CertificateTestsOnPostgres = on_postgres(CertificateTests)
ImportTestsOnPostgres = on_postgres(ImportTests)
AuditTestsOnPostgres = on_postgres(AuditTests)
ReopenTestsOnPostgres = on_postgres(ReopenTests)
IntermediateTablesTestsOnPostgres = on_postgres(IntermediateTablesTests)
