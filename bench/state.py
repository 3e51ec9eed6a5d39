"""A prepared state directory: SoftHSM2 token, config, CA, client 'bench'
and, on demand, a store prefilled with certificates.

Made with the project's own parts: ``softhsm/init-token.sh`` (as ``make
token``), ``estappliance.ca.setup.init_root`` and ``Store.add_client`` (as
``estctl init`` and ``estctl client add``), ``Store.import_certificates``
for the prefill. The CA and client are made in a fresh process: SoftHSM2
reads its config once per process, and each scenario has its own token.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import multiprocessing
import os
import random
import secrets
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import tomli_w

from estappliance.ca import setup
from estappliance.config import ConfigError, from_dict, load
from estappliance.http_digest import ha1_all
from estappliance.ra.passwords import hash_password
from estappliance.store import CertificateRecord, Store
from estappliance.token import Token

from .ports import free_port
from .target import HOST, BenchError

REPO = Path(__file__).resolve().parent.parent
SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
BENCH_USER = "bench"
TOKEN_LABEL = "estbench"
STATE_FILE = "bench-state.json"  # marks a prepared state directory
CONFIG_FILE = "estappliance.toml"
STORE_FILE = "est.sqlite"
PASSWORD_FILE = "bench.password"


def store_table(state: Path, url: str | None, node: int = 1) -> dict[str, str]:
    """``[store]``: the SQLite file in ``state``; or the PostgreSQL database
    at ``url``, each node's own files (its ``path``'s directory) in ``node-N/``."""
    if url is None:
        return {"path": str(state / STORE_FILE)}
    node_dir = state / f"node-{node}"
    node_dir.mkdir(exist_ok=True)
    return {"path": str(node_dir / STORE_FILE), "url": url}


def config_table(state: Path, port: int, key_type: str, workers: int, admin_port: int | None = None,
                 store: dict[str, str] | None = None) -> dict[str, Any]:
    """The server's config as TOML tables, like etc/estappliance.toml, every path inside ``state``."""
    table: dict[str, Any] = {
        "server": {"host": HOST, "port": port, "workers": workers, "server_names": ["localhost", HOST],
                   "tls_key": str(state / "tls" / "server.key"), "tls_cert": str(state / "tls" / "server.pem"),
                   "realm": "estappliance", "max_body": 65536, "retry_after": 10},
        "token": {"module": SOFTHSM_LIB, "label": TOKEN_LABEL, "softhsm2_conf": str(state / "softhsm2.conf"),
                  "pin_file": str(state / "token.pin")},
        "ca": {"key_label": "est-ca", "key_type": key_type, "subject": "CN=estappliance bench CA,O=estappliance",
               "validity_days": 3650, "cert_file": str(state / "ca" / "ca.pem"),
               "chain_file": str(state / "ca" / "chain.pem")},
        "store": store or store_table(state, None),
        "profiles": {"default": {"validity_days": 365,
                                 "key_types": ["ec-p256", "ec-p384", "ec-p521", "rsa2048", "rsa3072", "rsa4096"],
                                 "key_usage": ["digitalSignature", "keyEncipherment"],
                                 "extended_key_usage": ["clientAuth"], "copy_san": True}},
        "labels": {"default": {"profile": "default", "auth": ["basic", "cert", "digest"], "cert_anchors": ["ca"]}},
    }
    if admin_port is not None:  # an admin listener serving /metrics turns the metrics on
        table["admin"] = {"host": HOST, "port": admin_port}
    return table


def write_config(state: Path, port: int, key_type: str, workers: int, admin_port: int | None = None,
                 store: dict[str, str] | None = None, name: str = CONFIG_FILE) -> Path:
    """Write the config (``state/name``), checked first by the server's own loader."""
    table = config_table(state, port, key_type, workers, admin_port, store)
    path = state / name
    try:
        from_dict(table, path)
    except ConfigError as e:
        raise BenchError(f"the benchmark's config is refused by the server's loader: {e}") from None
    path.write_text(tomli_w.dumps(table))
    return path


def softhsm_env(state: Path) -> dict[str, str]:
    """The environment for the server: set explicitly, as the server only
    setdefault()s SOFTHSM2_CONF from its config, and an inherited value
    would point it at another token."""
    return {**os.environ, "SOFTHSM2_CONF": str(state / "softhsm2.conf")}


def init_ca_and_client(config_path: Path, password: str) -> None:
    """``estctl init`` and ``estctl client add bench --labels '*'``, in-process."""
    config = load(config_path)
    token = Token(config.token.module, config.token.label, config.token.read_pin, config.token.softhsm2_conf)
    store = Store(config.store)
    try:
        setup.init_root(config, token, store)
        store.clients.add_client(BENCH_USER, hash_password(password), ["*"], ha1_all(BENCH_USER, config.server.realm, password))
    finally:
        store.close()


@dataclass
class StateInfo:
    """What ``STATE_FILE`` remembers about a prepared directory."""

    key_type: str
    prefilled: int = 0  # rows imported by --prefill so far

    def save(self, state: Path) -> None:
        (state / STATE_FILE).write_text(json.dumps({"key_type": self.key_type, "prefilled": self.prefilled}))


def prepare_state(state: Path, key_type: str, url: str | None = None) -> StateInfo:
    """Token, config, CA (which creates the store: SQLite, or the database at ``url``) and client 'bench'."""
    init_token = subprocess.run(["bash", str(REPO / "softhsm" / "init-token.sh"), str(state), TOKEN_LABEL],
                                cwd=REPO, capture_output=True, text=True)
    if init_token.returncode != 0:
        raise BenchError(f"softhsm/init-token.sh failed ({init_token.returncode}):\n"
                         f"{init_token.stderr or init_token.stdout}")
    config = write_config(state, free_port(), key_type, workers=1, store=store_table(state, url))
    password_file = state / PASSWORD_FILE
    password_file.touch(mode=0o600)
    password = secrets.token_hex(12)
    password_file.write_text(password)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
        try:
            fresh.submit(init_ca_and_client, config, password).result()
        except Exception as e:
            raise BenchError(f"the CA set-up failed: {type(e).__name__}: {e}") from None
    info = StateInfo(key_type)
    info.save(state)
    return info


def load_or_prepare_state(state: Path, key_type: str, url: str | None = None) -> StateInfo:
    """Reuse a prepared directory (same CA key type), or prepare an empty one
    (its store in the PostgreSQL database at ``url`` if given)."""
    marker = state / STATE_FILE
    if marker.exists():
        saved = json.loads(marker.read_text())
        info = StateInfo(saved["key_type"], saved.get("prefilled", 0))
        if info.key_type != key_type:
            raise BenchError(f"{state} holds a CA with key type {info.key_type}, not {key_type}: "
                             "use another --state", 2)
        print(f"state: reusing {state} ({info.key_type} CA, {info.prefilled} prefilled rows)", flush=True)
        return info
    if state.exists() and any(state.iterdir()):
        raise BenchError(f"{state} is not empty and was not prepared by this benchmark (no {STATE_FILE})", 2)
    state.mkdir(parents=True, exist_ok=True)
    return prepare_state(state, key_type, url)


@contextlib.contextmanager
def state_directory(path: Path | None, keep: bool) -> Iterator[Path]:
    """``path`` as given (never removed), or a temporary directory."""
    if path is not None:
        yield path.resolve()
        return
    state = Path(tempfile.mkdtemp(prefix="est-bench-"))
    try:
        yield state
    finally:
        if keep:
            print(f"state kept in {state} (server log: {state / 'server.log'})")
        else:
            shutil.rmtree(state, ignore_errors=True)


# -- prefilling the store ------------------------------------------------------


def prefill_records(count: int, first: int, rng: random.Random) -> Iterator[CertificateRecord]:
    """Certificates shaped like the server's: 159-bit random serials, ~600
    random bytes of DER, label 'default', client 'bench', valid."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_before, not_after = now.isoformat(), (now + datetime.timedelta(days=365)).isoformat()
    for i in range(first, first + count):
        yield CertificateRecord(serial=rng.getrandbits(159), subject=f"CN=bench-prefill-{i}", not_before=not_before,
                                not_after=not_after, label="default", client=BENCH_USER, issued_at=not_before,
                                der=rng.randbytes(rng.randint(560, 640)), status="valid", revoked_at=None,
                                revocation_reason=None)


def store_size(path: Path) -> int:
    """Bytes on disk: a SQLite file with its WAL, or every file under a directory (a PostgreSQL cluster)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def prefill(state: Path, info: StateInfo, wanted: int, url: str | None = None,
            data_dir: Path | None = None) -> float | None:
    """Bring the prefilled rows of the store (SQLite in ``state``, or the
    PostgreSQL database at ``url`` whose cluster is ``data_dir``) up to
    ``wanted`` and print the figures; returns how long the import took."""
    store = Store(url or state / STORE_FILE)
    seconds = None
    try:
        missing = wanted - info.prefilled
        if missing > 0:
            print(f"prefill: inserting {missing} certificate rows ...", flush=True)
            start = time.perf_counter()
            store.certificates.import_certificates(prefill_records(missing, info.prefilled, random.Random(secrets.randbits(64))))
            seconds = time.perf_counter() - start
            info.prefilled = wanted
            info.save(state)
            print(f"prefill: {missing} rows in {seconds:.1f} s ({missing / seconds:.0f} rows/s)")
        elif wanted:
            print(f"prefill: {info.prefilled} rows already in the reused state (asked {wanted})")
        count = store.certificates.count_certificates()
    finally:
        store.close()
    where = "PostgreSQL cluster" if url else "SQLite"
    size = store_size(data_dir or state / STORE_FILE) if url is None or data_dir is not None else None
    print(f"store: {count} certificates" + (f", {size / 2**20:.0f} MiB ({where})" if size is not None else f" ({where})"),
          flush=True)
    return seconds

