"""The store's schema, one for both databases, and its versions.

Written in SQLite's spelling; ``dialect`` gives PostgreSQL its column types.
``prepare`` runs when a store is opened: an empty database gets the whole
schema; one at an older version is refused until ``estctl store migrate``
(``prepare(..., migrate=True)``) brings it up, so a node of a newer release
never writes rows an older one cannot read, or the other way round.

Versions: 1 first release; 2 Digest H(A1) columns, certificates.replaces;
3 one ``pending`` table (cmc_pending merged in); 4 sealed shared secrets and
leases (several nodes); 5 client intermediates (TLS sessions resumed from a
ticket).
"""
from __future__ import annotations

import re

from .database import Database, SchemaMismatch

SCHEMA_VERSION = "5"

TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    labels TEXT NOT NULL,
    created_at TEXT NOT NULL,
    digest_ha1_sha256 TEXT,
    digest_ha1_md5 TEXT
);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    label TEXT NOT NULL,
    client TEXT,
    issued_at TEXT NOT NULL,
    der BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'valid',
    revoked_at TEXT,
    revocation_reason TEXT,
    replaces TEXT
);
CREATE INDEX IF NOT EXISTS certificates_client_expiry ON certificates(client, not_after);
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    client TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    subject TEXT NOT NULL,
    operation TEXT NOT NULL,
    csr BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    created_at TEXT NOT NULL,
    decided_at TEXT,
    serial TEXT,
    kind TEXT NOT NULL DEFAULT 'pkcs10',
    replaces TEXT
);
CREATE INDEX IF NOT EXISTS pending_lookup ON pending(label, client, key_hash);
-- Digest nonce counts (store/nonces.py): the last count accepted per nonce, for every worker
CREATE TABLE IF NOT EXISTS digest_nonce_counts (nonce TEXT PRIMARY KEY, nc INTEGER NOT NULL, used_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS digest_nonce_counts_used ON digest_nonce_counts(used_at);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    client TEXT,
    label TEXT,
    operation TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT
);
-- CA generations (issue 14, store/generations.py): one row per CA key and
-- certificate; state next -> current -> retiring -> retired (or aborted).
CREATE TABLE IF NOT EXISTS ca_generations (
    id INTEGER PRIMARY KEY,
    key_label TEXT NOT NULL,
    key_type TEXT NOT NULL,
    state TEXT NOT NULL,
    cert BLOB,
    chain BLOB,
    csr BLOB,
    new_with_old BLOB,
    old_with_new BLOB,
    created_at TEXT NOT NULL,
    switched_at TEXT,
    retired_at TEXT
);

-- crls.py
CREATE TABLE IF NOT EXISTS crls (
    kind TEXT NOT NULL,
    number INTEGER NOT NULL,
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL,
    der BLOB NOT NULL,
    PRIMARY KEY (kind, number)
);
-- CRLs list the few revoked rows among (maybe) millions: a partial index finds them.
CREATE INDEX IF NOT EXISTS certificates_revoked ON certificates(revoked_at) WHERE status='revoked';

-- package_tables.py
CREATE TABLE IF NOT EXISTS packages (
    id INTEGER PRIMARY KEY,
    label TEXT NOT NULL,
    pal_type TEXT NOT NULL,
    target_kind TEXT NOT NULL CHECK (target_kind IN ('client', 'group', 'label')),
    target TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    media_type TEXT,
    content BLOB,
    size INTEGER NOT NULL,
    reference TEXT,
    receipt_requested INTEGER NOT NULL DEFAULT 0,
    key_package_id BLOB,
    details TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    withdrawn_at TEXT
);
CREATE INDEX IF NOT EXISTS packages_label ON packages(label, pal_type);
CREATE INDEX IF NOT EXISTS packages_pkgid ON packages(key_package_id);
CREATE TABLE IF NOT EXISTS deliveries (
    package_id INTEGER NOT NULL REFERENCES packages(id),
    client TEXT NOT NULL,
    offered_at TEXT,
    downloaded_at TEXT,
    downloads INTEGER NOT NULL DEFAULT 0,
    content BLOB,
    key_package_id BLOB,
    receipt_at TEXT,
    error_at TEXT,
    error_code INTEGER,
    return_der BLOB,
    last_return TEXT,
    PRIMARY KEY (package_id, client)
);
CREATE INDEX IF NOT EXISTS deliveries_client ON deliveries(client);
CREATE INDEX IF NOT EXISTS deliveries_pkgid ON deliveries(key_package_id);
CREATE TABLE IF NOT EXISTS client_groups (
    grp TEXT NOT NULL,
    client TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (grp, client)
);
CREATE INDEX IF NOT EXISTS client_groups_client ON client_groups(client);
CREATE TABLE IF NOT EXISTS standing_downloads (
    client TEXT NOT NULL,
    label TEXT NOT NULL,
    item TEXT NOT NULL,
    version TEXT NOT NULL,
    downloaded_at TEXT NOT NULL,
    PRIMARY KEY (client, label, item)
);
CREATE TABLE IF NOT EXISTS enrollment_results (
    pending_id INTEGER PRIMARY KEY,
    delivered_at TEXT NOT NULL
);

-- keygen_tables.py
CREATE TABLE IF NOT EXISTS skg_packages (
    pkg_id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    label TEXT NOT NULL,
    key_label TEXT NOT NULL,
    form TEXT NOT NULL,
    state TEXT NOT NULL,
    serial TEXT,
    escrowed INTEGER NOT NULL DEFAULT 0,
    key_destroyed INTEGER NOT NULL DEFAULT 0,
    receipt_requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    delivered_at TEXT,
    returned_at TEXT,
    error_code TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS skg_packages_client ON skg_packages(client);
CREATE INDEX IF NOT EXISTS skg_packages_state ON skg_packages(state);
CREATE TABLE IF NOT EXISTS skg_returns (
    id INTEGER PRIMARY KEY,
    pkg_id TEXT,
    client TEXT NOT NULL,
    kind TEXT NOT NULL,
    error_code TEXT,
    signer TEXT,
    received_at TEXT NOT NULL,
    der BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS skg_keks (
    key_id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    token_label TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS skg_recipients (
    ski TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    der BLOB NOT NULL,
    subject TEXT NOT NULL,
    not_after TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS skg_pkcs12_passwords (
    client TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    set_at TEXT NOT NULL
);

-- cmc_tables.py
CREATE TABLE IF NOT EXISTS cmc_secrets (
    client TEXT PRIMARY KEY,
    set_at TEXT NOT NULL
);

-- tamp.py
CREATE TABLE IF NOT EXISTS tamp_anchors (
    client TEXT NOT NULL,
    key_id BLOB NOT NULL,
    der BLOB,
    title TEXT,
    apex INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (client, key_id)
);
CREATE TABLE IF NOT EXISTS tamp_clients (
    client TEXT PRIMARY KEY,
    communities TEXT,
    updated_at TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tamp_sequence (
    key_id BLOB PRIMARY KEY,
    last INTEGER NOT NULL
);

-- sealed shared secrets (secret_tables.py): sealed by the token, never in clear
CREATE TABLE IF NOT EXISTS sealed_secrets (name TEXT PRIMARY KEY, sealed BLOB NOT NULL, created_at TEXT NOT NULL);
-- leases (lease_tables.py): which node runs a job that exactly one may run (the CRL schedule)
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL,
    taken_at REAL NOT NULL
);
-- client intermediates (intermediate_tables.py): CA certificates clients sent between theirs and an anchor
CREATE TABLE IF NOT EXISTS client_intermediates (
    fingerprint TEXT PRIMARY KEY,
    subject BLOB NOT NULL,
    der BLOB NOT NULL,
    seen_at TEXT NOT NULL
);
"""
# After the column migrations below (they may index new columns).
INDEXES = """
DROP INDEX IF EXISTS certificates_client;  -- version 1's, replaced by certificates_client_expiry
CREATE INDEX IF NOT EXISTS certificates_replaces ON certificates(replaces) WHERE replaces IS NOT NULL;
CREATE INDEX IF NOT EXISTS client_intermediates_subject ON client_intermediates(subject);
"""
# Columns added since version 1 (SQLite files only: PostgreSQL starts at 4).
COLUMNS_ADDED = [
    ("clients", "digest_ha1_sha256", "TEXT"),
    ("clients", "digest_ha1_md5", "TEXT"),
    ("certificates", "replaces", "TEXT"),
    ("pending", "kind", "TEXT NOT NULL DEFAULT 'pkcs10'"),
    ("pending", "replaces", "TEXT"),
]
# Version 3: /fullcmc's requests waiting for approval kept their kind and the
# certificate they renew in a table of their own; one pending table holds all.
MERGE_CMC_PENDING = """
UPDATE pending SET kind = (SELECT kind FROM cmc_pending WHERE pending_id = pending.id),
                   replaces = (SELECT replaces FROM cmc_pending WHERE pending_id = pending.id)
 WHERE id IN (SELECT pending_id FROM cmc_pending);
DROP TABLE cmc_pending;
"""


def statements(script: str) -> list[str]:
    """A script's statements, its comments left out (no string literal in
    the schema holds ';' or '--')."""
    text = re.sub(r"--[^\n]*", "", script)
    return [s.strip() for s in text.split(";") if s.strip()]


def version(db: Database) -> str | None:
    """The database's schema version; None for an empty database."""
    if "meta" not in db.tables():
        return None
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return None if row is None else str(row[0])


def prepare(db: Database, *, migrate: bool = False) -> str | None:
    """Create the schema in an empty database, or check (``migrate``: bring
    up) an existing one. Returns the version found before (None: created).
    Raises SchemaMismatch for a version this release does not serve."""
    with db.writing():  # one node at a time creates or migrates
        found = version(db)
        if found == SCHEMA_VERSION:
            return found
        if found is not None and int(found) > int(SCHEMA_VERSION):
            raise SchemaMismatch(f"the store {db.url} is at schema version {found}, newer than this appliance's"
                                 f" {SCHEMA_VERSION}: run the newer release")
        if found is not None and not migrate:
            raise SchemaMismatch(f"the store {db.url} is at schema version {found}; this appliance needs"
                                 f" {SCHEMA_VERSION}: run 'estctl store migrate'")
        _run(db, TABLES)
        if found is not None:
            for table, column, kind in COLUMNS_ADDED:
                if column not in db.columns(table):
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {db.dialect.ddl(kind)}")
            if "cmc_pending" in db.tables():
                _run(db, MERGE_CMC_PENDING)
        _run(db, INDEXES)
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                   " ON CONFLICT (key) DO UPDATE SET value=excluded.value", (SCHEMA_VERSION,))
    return found


def _run(db: Database, script: str) -> None:
    for statement in statements(db.dialect.ddl(script)):
        db.execute(statement)
