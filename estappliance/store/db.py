"""The store: what must survive a restart (clients, certificates, packages,
the audit trail ...), on SQLite (one file, the default) or PostgreSQL
(several nodes), as one core and a repository per concern.

``Store(where)`` opens it: a path is a SQLite file, a ``postgresql://`` URL
(or a ``StoreConfig`` naming one) is PostgreSQL. Every commit is durable
before it returns, so a row written here is on disk before the answer that
depends on it is sent. Blocking: the service calls it on the store thread
(``store.on_store_thread``).
"""
from __future__ import annotations

from pathlib import Path

from ..config import StoreConfig
from .audit_tables import AuditTables
from .certificate_tables import CertificateRecord, CertificateTables
from .client_tables import ClientRecord, ClientTables
from .cmc_tables import CmcTables
from .crls import CrlTables
from .database import Database
from .generations import GenerationTables
from .intermediate_tables import IntermediateTables
from .keygen_tables import ServerKeygenTables
from .lease_tables import LeaseTables
from .nonces import NonceCountTables
from .group_tables import GroupTables
from .package_tables import PackageTables
from .postgres_database import PostgresDatabase
from .schema import prepare
from .secret_tables import SecretTables
from .sqlite_database import SqliteDatabase
from .tamp import TampTables


def open_database(where: StoreConfig | Path | str, *, read_only: bool = False) -> Database:
    """The core for a store's location, not yet checked against the schema."""
    if isinstance(where, StoreConfig):
        if where.url is not None:
            return PostgresDatabase(where.url, password=where.password(), read_only=read_only)
        where = where.path
    if isinstance(where, str) and where.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(where, read_only=read_only)
    return SqliteDatabase(Path(where), read_only=read_only)


class Store:
    def __init__(self, where: StoreConfig | Path | str | Database, *, migrate: bool = False) -> None:
        """Open the store; an empty database gets the schema. An older schema
        raises SchemaMismatch unless ``migrate`` (``estctl store migrate``)."""
        self.db = where if isinstance(where, Database) else open_database(where)
        if not self.db.read_only:
            prepare(self.db, migrate=migrate)
        self.clients = ClientTables(self.db)
        self.certificates = CertificateTables(self.db)
        self.audit = AuditTables(self.db)
        self.crls = CrlTables(self.db)
        self.packages = PackageTables(self.db)
        self.groups = GroupTables(self.db)
        self.keygen = ServerKeygenTables(self.db)
        self.cmc = CmcTables(self.db)
        self.tamp = TampTables(self.db)
        self.generations = GenerationTables(self.db)
        self.nonce_counts = NonceCountTables(self.db)
        self.leases = LeaseTables(self.db)
        self.secrets = SecretTables(self.db)
        self.intermediates = IntermediateTables(self.db)

    def reader(self) -> Store:
        """A read-only connection to the same database, for lookups that must
        never wait for a commit (used from its own thread)."""
        return Store(self.db.reader())

    def certificate_and_enroller(self, serial: int) -> tuple[CertificateRecord | None, ClientRecord | None]:
        """A certificate's record and the client that enrolled it (if any), in one call."""
        record = self.certificates.certificate(serial)
        return record, (self.clients.client(record.client) if record is not None and record.client else None)

    def close(self) -> None:
        self.db.close()
