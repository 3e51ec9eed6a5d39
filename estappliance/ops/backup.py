"""``estctl backup DIR`` and ``estctl restore DIR``.

A backup is a directory: ``manifest.json`` and ``files/``. The store is
copied while the appliance serves, through SQLite's online backup API under
one read transaction (WAL: writers go on, the copy is the snapshot of that
moment, step by step without restarting); the configuration and the
certificates (CA, chain, content/firmware/TAMP signers, TLS, trust anchors)
are copied as files. The secrets every node shares (the Digest nonce key, the
TLS ticket secret) are in the store, sealed by the token (ca/shared_secrets.py),
so they travel with it; a backup made by an older version carries them as
``secret:NAME`` files, which a restore puts back next to the store, and the
next start imports them into the store. The manifest lists each file with
its role, where it came from, its size and SHA-256, and the CA certificate's
key, so that a restore can check both the files and that the token holds that
CA's key. The token itself is not in a backup (its keys never leave it, the
key that seals the shared secrets included): see the README.

Stores are backed up by a ``StoreBackup`` per kind (only SQLite today), so
that another kind (PostgreSQL: pg_dump and pg_restore) is one more class.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..config import Config, ConfigError, load
from ..progress import Progress
from ..store import Store
from ..token import Token

MANIFEST = "manifest.json"
FORMAT = 1
PAGES_PER_STEP = 1024


class BackupError(Exception):
    """The backup cannot be made or restored; nothing was changed."""


@dataclass(frozen=True)
class Entry:
    role: str  # "config", "store", "ca_cert", "trust_anchor:NAME", "secret:NAME" ...
    name: str  # the file under files/
    source: str  # where it was taken from
    size: int
    sha256: str


class StoreBackup(Protocol):
    kind: str

    def dump(self, dest: Path, progress: Progress) -> None: ...

    def load(self, src: Path, progress: Progress) -> None: ...


class SqliteBackup:
    """SQLite's online backup API, in steps, inside one read transaction."""

    kind = "sqlite"

    def __init__(self, path: Path):
        self.path = path

    def dump(self, dest: Path, progress: Progress) -> None:
        if not self.path.exists():
            raise BackupError(f"no store at {self.path}")
        src = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, timeout=30)
        dst = sqlite3.connect(dest, isolation_level=None)
        try:
            # The snapshot: every step reads the same state while writers go on (WAL).
            src.execute("BEGIN")
            src.execute("SELECT COUNT(*) FROM meta").fetchone()
            _copy(src, dst, progress, "store")
            src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            check = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"the copied store fails its integrity check: {check}")
        finally:
            src.close()
            dst.close()

    def load(self, src: Path, progress: Progress) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, isolation_level=None)
        target = sqlite3.connect(self.path, isolation_level=None)
        try:
            _copy(source, target, progress, "store")
            target.execute("PRAGMA journal_mode=WAL")
        finally:
            source.close()
            target.close()


def _copy(src: sqlite3.Connection, dst: sqlite3.Connection, progress: Progress, what: str) -> None:
    task = progress.task(f"copying the {what}")

    def step(status: int, remaining: int, total: int) -> None:
        task.update(completed=total - remaining, total=total)
    src.backup(dst, pages=PAGES_PER_STEP, progress=step, sleep=0)


def store_backup(config: Config) -> StoreBackup:
    if config.store.url is not None:
        raise BackupError("the store is on PostgreSQL: back it up with the database's own tools (pg_dump),"
                          " or copy it into a SQLite file with 'estctl store copy --to FILE'")
    return SqliteBackup(config.store.path)


def file_roles(config: Config) -> dict[str, Path]:
    """Every file a backup carries besides the store, by role; those that exist."""
    roles: dict[str, Path | None] = {
        "config": config.path,
        "ca_cert": config.ca.cert_file,
        "ca_chain": config.ca.chain_file,
        "signer_cert": config.ca.signer_cert_file,
        "firmware_signer_cert": config.distribution.firmware_signer_cert_file,
        "tamp_cert": config.distribution.tamp_cert_file,
        "tls_cert": config.server.tls_cert,
        "tls_key": config.server.tls_key,
    }
    for name, path in config.trust_anchors.items():
        roles[f"trust_anchor:{name}"] = path
    return {role: path for role, path in roles.items() if path is not None and path.is_file()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def backup(config: Config, dest: Path, progress: Progress) -> dict:
    """Write a backup into ``dest`` (new or empty); returns its manifest."""
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty")
    if not config.ca.cert_file.exists():
        raise BackupError("the CA is not initialised: nothing to back up")
    files = dest / "files"
    files.mkdir(parents=True, mode=0o700)
    os.chmod(dest, 0o700)  # it holds the TLS key
    store = store_backup(config)
    store_name = f"store.{store.kind}"
    store.dump(files / store_name, progress)
    entries = [Entry("store", store_name, str(config.store.path), (files / store_name).stat().st_size,
                     _sha256(files / store_name))]
    roles = file_roles(config)
    task = progress.task("copying files", total=len(roles))
    for role, path in roles.items():
        name = role.replace(":", "-") + "".join(path.suffixes[-1:])
        shutil.copy2(path, files / name)
        entries.append(Entry(role, name, str(path), (files / name).stat().st_size, _sha256(files / name)))
        task.advance()
    ca = x509.load_pem_x509_certificate(config.ca.cert_file.read_bytes())
    manifest = {
        "format": FORMAT,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "store_kind": store.kind,
        "ca": {"subject": ca.subject.rfc4514_string(), "key_label": config.ca.key_label,
               "spki_sha256": hashlib.sha256(_spki(ca)).hexdigest()},
        "files": [e.__dict__ for e in entries],
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    for path in [*files.iterdir(), dest / MANIFEST]:
        _fsync_file(path)
    return manifest


def read_manifest(src: Path, progress: Progress) -> tuple[dict, dict[str, Entry]]:
    """The manifest, its files checked against their hashes."""
    try:
        manifest = json.loads((src / MANIFEST).read_text())
        entries = {e["role"]: Entry(**e) for e in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BackupError(f"{src} holds no readable backup manifest: {e}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}")
    task = progress.task("checking the backup", total=len(entries))
    for entry in entries.values():
        path = src / "files" / entry.name
        if not path.is_file() or _sha256(path) != entry.sha256:
            raise BackupError(f"{entry.name} does not match the manifest (changed or missing)")
        task.advance()
    if "store" not in entries or "ca_cert" not in entries or "config" not in entries:
        raise BackupError("the backup lacks the store, the CA certificate or the configuration")
    return manifest, entries


def restore(config_path: Path, src: Path, progress: Progress, *, force: bool = False) -> Config:
    """Put a backup back: the configuration (if ``config_path`` is missing),
    then, once the token is seen to hold the backup's CA key, the store and
    the files, each where the configuration says, and brings the store's
    schema up to this version. Refuses to overwrite an existing store or a
    differing file unless ``force``."""
    manifest, entries = read_manifest(src, progress)
    files = src / "files"
    if not config_path.exists():
        config_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(files / entries["config"].name, config_path)
    try:
        config = load(config_path)
    except ConfigError as e:
        raise BackupError(str(e)) from None
    ca = x509.load_pem_x509_certificate((files / entries["ca_cert"].name).read_bytes())
    token = Token.from_config(config.token)
    try:
        in_token = token.public_key_der(config.ca.key_label)
    except Exception as e:  # no such key, no token: either way, not this CA's
        raise BackupError(f"the token has no usable key {config.ca.key_label!r} ({e}): restore the token first")
    if in_token != _spki(ca):
        raise BackupError(f"the backup's CA ({ca.subject.rfc4514_string()}) does not match the token's key "
                          f"{config.ca.key_label!r}: refusing to restore")
    store = store_backup(config)
    if manifest.get("store_kind") != store.kind:
        raise BackupError(f"the backup holds a {manifest.get('store_kind')} store; this configuration uses {store.kind}")
    targets = {role: path for role, path in _targets(config, entries).items()}
    if not force:
        if config.store.path.exists():
            raise BackupError(f"a store exists at {config.store.path}: move it away (or --force to replace it)")
        for role, path in targets.items():
            if path.exists() and _sha256(path) != entries[role].sha256:
                raise BackupError(f"{path} exists and differs from the backup's {role} (--force to replace it)")
    if config.store.path.exists():
        for suffix in ("", "-wal", "-shm"):
            Path(f"{config.store.path}{suffix}").unlink(missing_ok=True)
    store.load(files / entries["store"].name, progress)
    for role, path in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(files / entries[role].name, path)
        _fsync_file(path)
    Store(config.store, migrate=True).close()  # a backup of an older version: its schema brought up
    return config


def _targets(config: Config, entries: dict[str, Entry]) -> dict[str, Path]:
    """Where each backed-up file goes under this configuration."""
    where: dict[str, Path | None] = {
        "ca_cert": config.ca.cert_file, "ca_chain": config.ca.chain_file,
        "signer_cert": config.ca.signer_cert_file,
        "firmware_signer_cert": config.distribution.firmware_signer_cert_file,
        "tamp_cert": config.distribution.tamp_cert_file,
        "tls_cert": config.server.tls_cert, "tls_key": config.server.tls_key,
    }
    out: dict[str, Path] = {}
    for role in entries:
        if role in ("store", "config"):
            continue
        if role.startswith("trust_anchor:"):
            path = config.trust_anchors.get(role.partition(":")[2])
        elif role.startswith("secret:"):  # an older version's backup: imported at the next start
            path = config.store.path.parent / f"{role.partition(':')[2]}.key"
        else:
            path = where.get(role)
        if path is not None:
            out[role] = path
    return out
