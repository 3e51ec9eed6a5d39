"""Enrollment throughput of the EST server: /simpleenroll under concurrent load.

Run it from the repository root. Self-contained (the default): makes a
SoftHSM2 token, a CA and a client 'bench' in a temporary directory, starts
``twistd -n est`` with ``[server] workers = N`` on a free 127.0.0.1 port,
measures, stops the server and removes the directory::

    .venv/bin/python bench/enroll.py                      # 16 clients, 5 s, P-256 CA, Basic, keep-alive
    .venv/bin/python bench/enroll.py --workers 1 --seconds 3 --new-connection
    .venv/bin/python bench/enroll.py --key-type rsa3072 --clients 64
    .venv/bin/python bench/enroll.py --auth cert          # TLS client certificates instead of Basic
    .venv/bin/python bench/enroll.py --auth digest        # SHA-256 Digest: a nonce per client, nc counted in the store
    .venv/bin/python bench/enroll.py --prefill 1000000 --state /tmp/est-1m   # store with 1M certificates
    .venv/bin/python bench/enroll.py --suite              # the issue 7 scenarios and their targets

``--state DIR`` keeps the prepared directory (token, CA, client, prefilled
store) in DIR and reuses it next time, so a big ``--prefill`` is done once;
``--keep-state`` keeps a temporary one. Against a server that is already
running (``make run``; ``make bench`` does this, with the demo client)::

    .venv/bin/python bench/enroll.py --config etc/estappliance.toml \\
        [--user demo --password-file var/demo.password] [--server-pid PID]

It always connects to 127.0.0.1 (on the config's port). What it prints:

* with ``--prefill``: how long the inserts took, and the store's size and
  certificate count;
* the token's raw sign rate for the CA key (CKM_ECDSA over a digest, or
  CKM_SHA256_RSA_PKCS) measured just before the load: one process, and one
  process per server worker signing in parallel (the ceiling N workers with
  one PKCS#11 thread each could reach);
* enrollments per second: only 200 answers whose body is base64 of DER count;
* latency p50/p90/p99/max of those successful enrollments: from the first
  byte of the request to the last of the answer (keep-alive clients open
  their connection before the clock starts); with ``--new-connection`` from
  the connect, so they include the TCP and TLS handshakes;
* errors (non-200 answers and failed requests) with the first error's text,
  and how many clients got no certificate at all;
* the server's CPU time per enrollment (utime + stime of the master and all
  its children, from /proc, over the timed load, divided by the successful
  enrollments), each server process's VmRSS at the end of the load and, with
  keep-alive, how many client connections each worker holds near the end;
* how busy the machine's CPUs were during the load: the server, the load
  generator, and anything else (other programs: the noise in the figures);
* with ``--suite``: each scenario's figures and command line, then one table
  of figure, target, met / NOT MET. Exit status 0 when every scenario ran,
  whatever the figures: nothing here asserts a timing.

The P-256 CSRs are made before the clock starts (a pool of distinct keys per
load process, used round-robin). Each load process drives all its clients
from one thread (bench/loadgen.py). Untimed before the load: a few Basic
enrollments warm every server worker up (password check, key lookup), and
with ``--auth cert`` each client enrolls once with Basic to get the
certificate it then presents. The load generator shares the machine with
the server: on a small machine its own CPU use lowers the figures.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import datetime
import itertools
import json
import math
import multiprocessing
import os
import queue
import random
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypeVar, cast

import plot  # bench/ is this script's directory
from loadgen import HOST, ClientResult, ProtocolError, run_clients

from estappliance.progress import Progress

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier, Event

    from cryptography.hazmat.primitives.asymmetric import ec

T = TypeVar("T", bound=float)

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
KEY_TYPES = ("ec-p256", "ec-p384", "rsa2048", "rsa3072")
ENROLL_PATH = "/.well-known/est/simpleenroll"
BENCH_USER = "bench"
BENCH_TOKEN_LABEL = "estbench"
STATE_FILE = "bench-state.json"  # marks a prepared state directory
START_TIMEOUT = 60.0
PREFILL_BATCH = 50_000
SPAWN = multiprocessing.get_context("spawn")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
COMMAND = ".venv/bin/python bench/enroll.py"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why. ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def default_workers() -> int:
    return 2 if (os.cpu_count() or 1) >= 2 else 1


# -- what to benchmark ---------------------------------------------------------


@dataclass(frozen=True)
class TokenSpec:
    """Enough to open the CA's token and find its key, in another process."""

    module: str
    label: str
    pin_file: str | None
    pin_env: str | None
    softhsm2_conf: str | None
    key_label: str
    key_type: str

    def read_pin(self) -> str:
        if self.pin_env and os.environ.get(self.pin_env):
            return os.environ[self.pin_env]
        if self.pin_file:
            return Path(self.pin_file).read_text().strip()
        raise BenchError("the config names neither [token] pin_file nor pin_env")


@dataclass(frozen=True)
class Target:
    port: int
    ca_file: str
    user: str
    password: str
    token: TokenSpec
    workers: int  # the server's worker processes (1: a single process)


@dataclass(frozen=True)
class LoadPlan:
    target: Target
    clients: int
    seconds: float
    new_connection: bool
    auth: str  # "basic", "cert" or "digest"
    csrs_per_process: int
    timeout: float


def target_from_config(config_path: Path, user: str, password: str) -> Target:
    """Read the port, CA file and token settings with the server's own loader."""
    from estappliance.config import ConfigError, load
    try:
        config = load(config_path)
    except ConfigError as e:
        raise BenchError(f"bad config: {e}", 2) from None
    token = TokenSpec(
        module=str(config.token.module), label=config.token.label,
        pin_file=str(config.token.pin_file) if config.token.pin_file else None,
        pin_env=config.token.pin_env,
        softhsm2_conf=str(config.token.softhsm2_conf) if config.token.softhsm2_conf else None,
        key_label=config.ca.key_label, key_type=config.ca.key_type)
    return Target(port=config.server.port, ca_file=str(config.ca.cert_file), user=user, password=password,
                  token=token, workers=config.workers)


def read_password(path: Path) -> str:
    try:
        password = path.read_text().rstrip("\r\n")
    except OSError as e:
        raise BenchError(f"cannot read the password file {path}: {e.strerror}", 2) from None
    if not password:
        raise BenchError(f"the password file {path} is empty", 2)
    return password


# -- a prepared state directory: token, CA, client 'bench', store ---------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def toml_str(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(state: Path, port: int, key_type: str, workers: int, extra: str = "") -> Path:
    """A config like etc/estappliance.toml, every path absolute inside ``state``."""
    s = lambda rel: toml_str(state / rel)  # noqa: E731
    text = f"""\
[server]
host = "{HOST}"
port = {port}
workers = {workers}
server_names = ["localhost", "{HOST}"]
tls_key = {s("tls/server.key")}
tls_cert = {s("tls/server.pem")}
realm = "estappliance"
max_body = 65536
retry_after = 10

[token]
module = {toml_str(SOFTHSM_LIB)}
label = "{BENCH_TOKEN_LABEL}"
softhsm2_conf = {s("softhsm2.conf")}
pin_file = {s("token.pin")}

[ca]
key_label = "est-ca"
key_type = "{key_type}"
subject = "CN=estappliance bench CA,O=estappliance"
validity_days = 3650
cert_file = {s("ca/ca.pem")}
chain_file = {s("ca/chain.pem")}

[store]
path = {s("est.sqlite")}

[profiles.default]
validity_days = 365
key_types = ["ec-p256", "ec-p384", "ec-p521", "rsa2048", "rsa3072", "rsa4096"]
key_usage = ["digitalSignature", "keyEncipherment"]
extended_key_usage = ["clientAuth"]
copy_san = true

[labels.default]
profile = "default"
auth = ["basic", "cert", "digest"]
cert_anchors = ["ca"]
""" + extra
    path = state / "estappliance.toml"
    path.write_text(text)
    return path


def softhsm_env(state: Path) -> dict[str, str]:
    # Set explicitly: the server only setdefault()s SOFTHSM2_CONF from its
    # config, so an inherited value would point it at another token.
    return {**os.environ, "SOFTHSM2_CONF": str(state / "softhsm2.conf")}


def run_step(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv[:4])} ... failed ({done.returncode}):\n{done.stderr or done.stdout}")


@dataclass
class StateInfo:
    """What ``STATE_FILE`` remembers about a prepared directory."""

    key_type: str
    prefilled: int = 0  # rows inserted by --prefill so far

    def save(self, state: Path) -> None:
        (state / STATE_FILE).write_text(json.dumps({"key_type": self.key_type, "prefilled": self.prefilled}))


def prepare_state(state: Path, key_type: str) -> StateInfo:
    """Token, config, CA (which creates the store) and client 'bench'."""
    env = softhsm_env(state)
    run_step(["bash", str(REPO / "softhsm" / "init-token.sh"), str(state), BENCH_TOKEN_LABEL], env)
    config = write_config(state, free_port(), key_type, workers=1)
    run_step([str(BIN / "estctl"), "-c", str(config), "init"], env)
    password_file = state / "bench.password"
    password_file.touch(mode=0o600)
    password_file.write_text(secrets.token_hex(12))
    run_step([str(BIN / "estctl"), "-c", str(config), "client", "add", BENCH_USER,
              "--password-file", str(password_file), "--labels", "*"], env)
    info = StateInfo(key_type)
    info.save(state)
    return info


def load_or_prepare_state(state: Path, key_type: str) -> StateInfo:
    """Reuse a prepared directory (same CA key type), or prepare an empty one."""
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
    return prepare_state(state, key_type)


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

PREFILL_COLUMNS = ("serial", "subject", "not_before", "not_after", "label", "client", "issued_at", "der", "status")


def prefill_rows(count: int, first: int, rng: random.Random) -> Iterator[tuple]:
    """Certificate rows shaped like the server's: 159-bit random serials in
    lower-case hex, ~600 bytes of DER-sized random bytes, label 'default'."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_before, not_after = now.isoformat(), (now + datetime.timedelta(days=365)).isoformat()
    for i in range(first, first + count):
        yield (format(rng.getrandbits(159), "x"), f"CN=bench-prefill-{i}", not_before, not_after, "default",
               BENCH_USER, not_before, rng.randbytes(rng.randint(560, 640)), "valid")


def check_store_columns(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(certificates)")}
    missing = [c for c in PREFILL_COLUMNS if c not in have]
    if missing:
        raise BenchError(f"the store's certificates table lacks {', '.join(missing)}: update bench/enroll.py")


def insert_certificates(path: Path, count: int, first: int) -> float:
    """Insert ``count`` rows in big transactions and put them on disk; returns the seconds it took."""
    rng = random.Random(secrets.randbits(64))
    db = sqlite3.connect(path, isolation_level=None)
    try:
        check_store_columns(db)
        db.execute("PRAGMA synchronous=OFF")  # the server is not running; a crash means prefill again
        db.execute("PRAGMA cache_size=-262144")  # 256 MiB: the random-serial index stays in memory
        sql = (f"INSERT INTO certificates ({', '.join(PREFILL_COLUMNS)})"
               f" VALUES ({', '.join('?' * len(PREFILL_COLUMNS))})")
        rows = prefill_rows(count, first, rng)
        start = time.perf_counter()
        while batch := list(itertools.islice(rows, PREFILL_BATCH)):
            db.execute("BEGIN")
            db.executemany(sql, batch)
            db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    # Written without fsync (synchronous=OFF): put it on disk now, or the
    # kernel writes hundreds of MiB back during the timed load and every
    # commit's fsync waits behind that (seen: -27% and a 343 ms max).
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def store_figures(path: Path) -> tuple[int, int]:
    """(certificates in the store, bytes on disk including the WAL)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        count = db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0]
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return count, size


def prefill(state: Path, info: StateInfo, wanted: int) -> None:
    """Bring the prefilled rows of the store up to ``wanted`` and print the figures."""
    db = state / "est.sqlite"
    missing = wanted - info.prefilled
    if missing > 0:
        print(f"prefill: inserting {missing} certificate rows ...", flush=True)
        seconds = insert_certificates(db, missing, info.prefilled)
        info.prefilled = wanted
        info.save(state)
        print(f"prefill: {missing} rows in {seconds:.1f} s ({missing / seconds:.0f} rows/s)")
    elif wanted:
        print(f"prefill: {info.prefilled} rows already in the reused state (asked {wanted})")
    count, size = store_figures(db)
    print(f"store: {count} certificates, {size / 2**20:.0f} MiB", flush=True)


# -- the server's processes, seen through /proc ---------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of ``pid``, from one scan of /proc."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := proc_stat(int(entry.name))):
            kids.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(kids.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(kids.get(child, ()))
    return sorted(found)


def is_worker(pid: int) -> bool:
    try:
        return b"estappliance.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def cpu_ticks(pid: int) -> int | None:
    fields = proc_stat(pid)
    return None if fields is None else int(fields[11]) + int(fields[12])  # utime + stime


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(fields) - fields[3] - fields[4], sum(fields)  # idle and iowait are not busy


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def established_inodes(port: int) -> set[str]:
    """Socket inodes of the established IPv4 TCP connections to local ``port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rpartition(":")[2], 16) == port and fields[3] == "01":
            inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> list[str]:
    inodes = []
    with contextlib.suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(fd.path)
                if link.startswith("socket:["):
                    inodes.append(link[8:-1])
    return inodes


@dataclass(frozen=True)
class ServerProcesses:
    """The master's pid; its descendants (the workers) are looked up each time."""

    master: int

    def pids(self) -> list[int]:
        return [self.master, *descendants(self.master)]

    def role(self, pid: int) -> str:
        return "worker" if is_worker(pid) else "master" if pid == self.master else "child"

    def cpu(self) -> dict[int, int]:
        return {pid: t for pid in self.pids() if (t := cpu_ticks(pid)) is not None}

    def rss(self) -> dict[int, int]:
        return {pid: r for pid in self.pids() if (r := rss_kib(pid)) is not None}

    def connections(self, port: int) -> dict[int, int]:
        """Established client connections each process holds (how the kernel spread them)."""
        established = established_inodes(port)
        return {pid: sum(1 for i in socket_inodes(pid) if i in established) for pid in self.pids()}


def wait_until_idle(server: ServerProcesses, workers: int, timeout: float) -> None:
    """Wait for every worker to exist and stop burning CPU (done starting)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = server.cpu()
        time.sleep(0.3)
        after = server.cpu()
        started = len(after) - 1 >= workers if workers > 1 else bool(after)
        if started and after.keys() == before.keys() and all(after[p] - before[p] <= 1 for p in after):
            return
    print(f"bench: the server's {workers} workers did not settle within {timeout:.0f} s; going on", flush=True)


# -- the server process we start -------------------------------------------------


def start_server(config: Path, state: Path) -> subprocess.Popen:
    log = open(state / "server.log", "ab")
    try:
        return subprocess.Popen([str(BIN / "twistd"), "-n", "--pidfile=", "est", "-c", str(config)],
                                env=softhsm_env(state), cwd=state, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    finally:
        log.close()


def start_time(pid: int) -> str | None:
    """When the process started (clock ticks since boot): with the pid, it names one process."""
    fields = proc_stat(pid)
    return None if fields is None else fields[19]


def still_running(workers: set[tuple[int, str | None]]) -> list[int]:
    return [pid for pid, started in workers if started is not None and start_time(pid) == started]


def stop_server(proc: subprocess.Popen, workers: set[tuple[int, str | None]]) -> None:
    """SIGTERM the master (it stops its workers); SIGKILL the workers that outlive it.
    ``workers`` are (pid, start time), so a reused pid is never signalled."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 5
    while (left := still_running(workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:  # workers this run started, still there after their master's end
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def server_died(proc: subprocess.Popen, log: Path) -> str:
    return f"the server exited during the run (status {proc.returncode}); its log ends:\n{log_tail(log, 8)}"


def wait_until_serving(target: Target, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    context = client_context(target.ca_file)
    while True:
        if proc.poll() is not None:
            raise BenchError(f"the server exited with status {proc.returncode}:\n{log_tail(log)}")
        try:
            probe_tls(context, target.port, 1.0)
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise BenchError(f"the server did not accept TLS within {START_TIMEOUT:.0f} s ({e}):\n"
                                 f"{log_tail(log)}") from None
            time.sleep(0.1)


def prepared_config(state: Path, args: argparse.Namespace) -> tuple[Path, Target]:
    """A prepared (maybe reused, maybe prefilled) state; its config for this run."""
    info = load_or_prepare_state(state, args.key_type)
    if args.prefill:
        prefill(state, info, args.prefill)
    # --metrics: an admin listener serving /metrics turns the metrics on.
    metrics = f'\n[admin]\nhost = "{HOST}"\nport = {free_port()}\n' if args.metrics else ""
    config = write_config(state, free_port(), info.key_type, args.workers, metrics)
    return config, target_from_config(config, BENCH_USER, read_password(state / "bench.password"))


@contextlib.contextmanager
def own_server(args: argparse.Namespace) -> Iterator[tuple[Target, ServerProcesses]]:
    """A fresh twistd with ``args.workers`` workers on a prepared state."""
    with state_directory(args.state, args.keep_state) as state:
        config, target = prepared_config(state, args)
        log = state / "server.log"
        proc = start_server(config, state)
        server = ServerProcesses(proc.pid)
        workers: set[tuple[int, str | None]] = set()  # (pid, start time): still ours if both match
        try:
            wait_until_serving(target, proc, log)
            wait_until_idle(server, args.workers, START_TIMEOUT)
            workers = {(pid, start_time(pid)) for pid in descendants(proc.pid)}
            print(f"server: pid {proc.pid}, {args.workers} worker(s)"
                  + (f" (pids {' '.join(str(p) for p, _ in sorted(workers))})" if workers else "")
                  + f", port {target.port}", flush=True)
            yield target, server
            if proc.poll() is not None:
                raise BenchError(server_died(proc, log))
        except Exception as e:
            if proc.poll() is not None and not isinstance(e, BenchError):
                print(f"bench: {server_died(proc, log)}", file=sys.stderr)
            raise
        finally:
            stop_server(proc, workers | {(pid, start_time(pid)) for pid in descendants(proc.pid)})


@contextlib.contextmanager
def running_server(args: argparse.Namespace) -> Iterator[tuple[Target, ServerProcesses | None]]:
    """The Target of a server someone else started; exit 2 if it is not there."""
    target = target_from_config(args.config, args.user, password="")
    if not Path(target.ca_file).exists():
        raise BenchError(f"no CA certificate at {target.ca_file}: start the server first (make run)", 2)
    try:
        probe_tls(client_context(target.ca_file), target.port, 3.0)
    except (OSError, ssl.SSLError) as e:
        raise BenchError(f"no EST server answers TLS on https://{HOST}:{target.port} ({e}).\n"
                         f"Start it first (make run), then run the benchmark again.", 2) from None
    server = ServerProcesses(args.server_pid) if args.server_pid else None
    yield replace(target, password=read_password(args.password_file)), server


# -- the token's raw sign rate -------------------------------------------------


def sign_input(key_type: str) -> tuple[str, bytes]:
    """Mechanism name and data, as the CA signs: a host-side digest for ECDSA."""
    if key_type.startswith("ec-"):
        # The server pairs P-384 with SHA-384, P-256 with SHA-256.
        return "ECDSA", os.urandom(48 if key_type == "ec-p384" else 32)
    return "SHA256_RSA_PKCS", os.urandom(32)


def raw_sign_process(spec: TokenSpec, seconds: float, ready: Barrier,
                     results: Queue[tuple[float | None, str | None]]) -> None:
    """One signing process: open the token, wait for the others, sign for ``seconds``."""
    try:
        if spec.softhsm2_conf:
            os.environ["SOFTHSM2_CONF"] = spec.softhsm2_conf  # before the library loads
        import pkcs11
        from pkcs11 import Mechanism, ObjectClass

        token = pkcs11.lib(spec.module).get_token(token_label=spec.label)
        mechanism, data = sign_input(spec.key_type)
        with token.open(user_pin=spec.read_pin()) as session:
            # A python-pkcs11 key object: its class (SignMixin here) is made at run time.
            key: Any = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=spec.key_label)
            ready.wait(timeout=60)
            count, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                key.sign(data, mechanism=Mechanism[mechanism])
                count += 1
        results.put((count / elapsed, None))
    except Exception as e:  # reported by the parent
        ready.abort()
        results.put((None, f"{type(e).__name__}: {e}"))


def measure_raw_sign(spec: TokenSpec, seconds: float, processes: int) -> float:
    """Signs per second with the CA key, ``processes`` processes at once (one thread each)."""
    ready, results = SPAWN.Barrier(processes), SPAWN.Queue()
    procs = [SPAWN.Process(target=raw_sign_process, args=(spec, seconds, ready, results), daemon=True)
             for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        answers = [results.get(timeout=seconds + 90) for _ in procs]
    except queue.Empty:
        raise BenchError("the raw sign processes did not answer") from None
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    errors = [e for _, e in answers if e]
    if errors:
        raise BenchError(errors[0])
    return sum(rate for rate, _ in answers)


@dataclass(frozen=True)
class RawSign:
    one: float | None  # one process
    parallel: float | None  # one process per server worker, at once
    processes: int


def raw_sign_figures(spec: TokenSpec, seconds: float, workers: int) -> RawSign:
    """Measure and print; one retry, then the load goes on without the figure."""
    for attempt in (1, 2):
        try:
            one = measure_raw_sign(spec, seconds, 1)
            parallel = measure_raw_sign(spec, seconds, workers) if workers > 1 else one
            break
        except Exception as e:
            print(f"token raw sign: {'not measured' if attempt == 2 else 'failed, once more'} "
                  f"({type(e).__name__}: {e})", flush=True)
    else:
        return RawSign(None, None, workers)
    print(f"token raw sign: {one:.0f}/s ({spec.key_type}, 1 process)"
          + (f", {parallel:.0f}/s with {workers} processes in parallel" if workers > 1 else ""), flush=True)
    return RawSign(one, parallel, workers)


# -- HTTP/1.1 over TLS, by hand ------------------------------------------------


def client_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def probe_tls(context: ssl.SSLContext, port: int, timeout: float) -> None:
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=HOST):
            pass


def basic_authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def enroll_request(csr_der: bytes, port: int, authorization: str | None, close: bool) -> bytes:
    """A /simpleenroll POST; without ``authorization`` the TLS client certificate speaks."""
    body = base64.b64encode(csr_der)
    head = (f"POST {ENROLL_PATH} HTTP/1.1\r\n"
            f"Host: {HOST}:{port}\r\n"
            + (f"Authorization: {authorization}\r\n" if authorization else "")
            + "Content-Type: application/pkcs10\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n")
    return head.encode() + body


def read_response(reader: IO[bytes]) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) read from a buffered reader, by Content-Length."""
    status_line = reader.readline(65537)
    if not status_line:
        raise ProtocolError("the server closed the connection")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {status_line[:80]!r}")
    headers = {}
    while (line := reader.readline(65537)) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" not in headers:
        raise ProtocolError("answer without Content-Length")
    length = int(headers[b"content-length"])
    body = reader.read(length)
    if len(body) != length:
        raise ProtocolError(f"body cut short ({len(body)} of {length} bytes)")
    return int(parts[1]), body, headers.get(b"connection", b"").lower() != b"close"


class Connection:
    """One TLS connection to the server; requests go one after another."""

    def __init__(self, context: ssl.SSLContext, port: int, timeout: float):
        raw = socket.create_connection((HOST, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = context.wrap_socket(raw, server_hostname=HOST)
        except BaseException:
            raw.close()
            raise
        self.reader = self.sock.makefile("rb")

    def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        self.sock.sendall(request)
        return read_response(self.reader)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def certs_only_der(body: bytes) -> bytes | None:
    """The DER of a base64 certs-only body, or None if it is not base64 of a SEQUENCE."""
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return der if len(der) > 2 and der[0] == 0x30 else None


# -- client keys, CSRs and certificates ------------------------------------------


def new_key_and_csr(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """(P-256 private key, DER CSR for it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.DER)


def make_csrs(count: int, prefix: str) -> list[bytes]:
    """DER P-256 CSRs, each with its own key."""
    return [new_key_and_csr(f"{prefix}-{i}")[1] for i in range(count)]


def issued_certificate_pem(certs_only: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The certificate for ``key`` out of a certs-only PKCS#7, as PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    spki = lambda k: k.public_bytes(serialization.Encoding.DER,  # noqa: E731
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    for cert in pkcs7.load_der_pkcs7_certificates(certs_only):
        if spki(cert.public_key()) == spki(key.public_key()):
            return cert.public_bytes(serialization.Encoding.PEM)
    raise BenchError("the certs-only answer holds no certificate for the client's key")


def certificate_context(target: Target, name: str, timeout: float) -> ssl.SSLContext:
    """Enroll once with Basic (untimed); a TLS context presenting the certificate."""
    from cryptography.hazmat.primitives import serialization

    key, csr = new_key_and_csr(name)
    conn = Connection(client_context(target.ca_file), target.port, timeout)
    try:
        status, body, _ = conn.exchange(
            enroll_request(csr, target.port, basic_authorization(target.user, target.password), close=True))
    finally:
        conn.close()
    der = certs_only_der(body) if status == 200 else None
    if der is None:
        raise BenchError(f"the Basic enrollment for {name}'s certificate failed: HTTP {status} "
                         f"{body[:200].decode('utf-8', 'replace').strip()}")
    context = client_context(target.ca_file)
    with tempfile.TemporaryDirectory(prefix="est-bench-client-") as tmp:
        pem = Path(tmp) / "client.pem"
        pem.write_bytes(issued_certificate_pem(der, key) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context.load_cert_chain(pem)
    return context


# -- the load ------------------------------------------------------------------


@dataclass
class WorkerResult:
    clients: list[ClientResult]
    started: float  # time.monotonic(): one clock for every process on Linux
    finished: float
    cpu_seconds: float  # this load process's own CPU time during the load


def client_contexts(plan: LoadPlan, index: int, clients: int) -> list[ssl.SSLContext]:
    """One TLS context per client: shared for Basic, each with its own certificate for cert."""
    if plan.auth == "cert":
        return [certificate_context(plan.target, f"bench-client-{index}-{i}", plan.timeout) for i in range(clients)]
    return [client_context(plan.target.ca_file)] * clients


def load_worker(index: int, plan: LoadPlan, clients: int, messages: Queue[tuple[str, int, object]],
                go: Event) -> None:
    """One load process: make its CSRs (and certificates), say ready, wait for go, run its clients."""
    try:
        t = plan.target
        authorization = {"basic": basic_authorization(t.user, t.password), "digest": DIGEST_SLOT}.get(plan.auth)
        requests = [enroll_request(der, t.port, authorization, plan.new_connection)
                    for der in make_csrs(plan.csrs_per_process, f"bench-{index}")]
        contexts = client_contexts(plan, index, clients)
        prepare = [digest_preparer(t, plan.timeout) for _ in range(clients)] if plan.auth == "digest" else None
    except Exception as e:  # reported by the parent
        messages.put(("error", index, f"{type(e).__name__}: {e}"))
        return
    def ready() -> None:
        messages.put(("ready", index, None))
        go.wait()
    results = [ClientResult() for _ in range(clients)]
    cpu_start = time.process_time()
    started, finished = run_clients(contexts, results, requests, t.port, plan.new_connection, plan.timeout,
                                    enrolled, ready, plan.seconds, prepare)
    # The CPU of the pre-connect is outside the load: count from the start.
    messages.put(("done", index, WorkerResult(results, started, finished, time.process_time() - cpu_start)))


DIGEST_SLOT = "Digest-to-be-computed"


def digest_nonce(target: Target, timeout: float) -> tuple[str, str]:
    """(realm, nonce) of a 401 challenge (untimed, before the load)."""
    import re

    with socket.create_connection((HOST, target.port), timeout=timeout) as raw:
        with client_context(target.ca_file).wrap_socket(raw, server_hostname=HOST) as sock:
            sock.sendall(enroll_request(b"", target.port, None, close=True))
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    found = re.search(r'WWW-Authenticate: Digest realm="([^"]*)".*algorithm=SHA-256.*nonce="([^"]*)"', head, re.I)
    if found is None:
        raise BenchError(f"no SHA-256 Digest challenge in the 401: {head[:300]!r}")
    return found.group(1), found.group(2)


def digest_preparer(target: Target, timeout: float) -> Callable[[bytes], bytes]:
    """For one client: its own nonce, and each request's Authorization with
    the next nonce count (RFC 7616, qop=auth, SHA-256)."""
    import hashlib

    realm, nonce = digest_nonce(target, timeout)
    h = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    ha1, ha2 = h(f"{target.user}:{realm}:{target.password}"), h(f"POST:{ENROLL_PATH}")
    count = itertools.count(1)

    def prepare(request: bytes) -> bytes:
        nc, cnonce = f"{next(count):08x}", secrets.token_hex(8)
        response = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        value = (f'Digest username="{target.user}", realm="{realm}", nonce="{nonce}", uri="{ENROLL_PATH}", '
                 f'algorithm=SHA-256, qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}"')
        return request.replace(DIGEST_SLOT.encode(), value.encode(), 1)
    return prepare


def enrolled(status: int, body: bytes) -> bool:
    """Only 200 answers whose body is base64 of DER count as enrollments."""
    return status == 200 and certs_only_der(body) is not None


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def wait_for(messages: Queue[tuple[str, int, object]], kind: str, count: int, timeout: float,
             procs: Sequence[BaseProcess]) -> list[object]:
    """Collect ``count`` messages of ``kind``; fail if a load process fails first."""
    got: list[object] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        try:
            msg_kind, index, payload = messages.get(timeout=0.5)
            if msg_kind == "error":
                raise BenchError(f"load process {index}: {payload}")
            if msg_kind == kind:
                got.append(payload)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise BenchError(f"a load process died (exit code {dead[0].exitcode})") from None
            if time.monotonic() > deadline:
                raise BenchError(f"load processes did not report '{kind}' in time") from None
    return got


def run_load(plan: LoadPlan, processes: int, on_go: Callable[[], None],
             on_done: Callable[[], None]) -> list[WorkerResult]:
    """Run the timed load; ``on_go`` is called right before it, ``on_done`` right after."""
    messages, go = SPAWN.Queue(), SPAWN.Event()
    shares = [n for n in split(plan.clients, processes) if n]
    procs = [SPAWN.Process(target=load_worker, args=(i, plan, n, messages, go), daemon=True)
             for i, n in enumerate(shares)]
    for p in procs:
        p.start()
    try:
        wait_for(messages, "ready", len(procs), 300.0, procs)
        on_go()
        go.set()
        # load_worker sends its WorkerResult with "done".
        results = cast("list[WorkerResult]", wait_for(messages, "done", len(procs), plan.seconds + plan.timeout + 30.0,
                                                     procs))
        on_done()
        for p in procs:
            p.join()
        return results
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()


def warm_up(target: Target, timeout: float) -> None:
    """Untimed Basic enrollments, a few per server worker: they check the
    credentials and fill each worker's caches (password, key lookup)."""
    authorization = basic_authorization(target.user, target.password)
    context = client_context(target.ca_file)
    for csr in make_csrs(3 * target.workers, "bench-warm-up"):
        conn = Connection(context, target.port, timeout)
        try:
            status, body, _ = conn.exchange(enroll_request(csr, target.port, authorization, True))
        except (OSError, ProtocolError, ValueError) as e:
            raise BenchError(f"the warm-up enrollment failed: {type(e).__name__}: {e}") from None
        finally:
            conn.close()
        if not enrolled(status, body):
            raise BenchError(f"the warm-up enrollment failed: HTTP {status}: "
                             f"{body[:200].decode('utf-8', 'replace').strip()}")


# -- figures -------------------------------------------------------------------


@dataclass
class ServerUse:
    """CPU over the timed load and memory at its end, per server process."""

    cpu_ms: dict[int, float]  # pid -> CPU ms during the load
    rss_mib: dict[int, float]  # pid -> VmRSS MiB at the end
    connections: dict[int, int]  # pid -> established client connections at the end
    roles: dict[int, str]
    machine_busy: float  # share of all CPUs busy during the load, whoever used them
    note: str | None = None  # e.g. a process came or went during the load


class ServerWatch:
    """Samples the server's processes (and the machine) before and after the load."""

    def __init__(self, server: ServerProcesses | None, port: int, seconds: float):
        self.server = server
        self.port = port
        self.seconds = seconds
        self.before: dict[int, int] = {}
        self.machine_before = (0, 0)
        self.connections: dict[int, int] = {}
        self.use: ServerUse | None = None

    def start(self) -> None:
        if self.server is not None:
            self.before, self.machine_before = self.server.cpu(), machine_ticks()
            # Connections are counted while the clients still hold them.
            timer = threading.Timer(0.9 * self.seconds, self._count_connections)
            timer.daemon = True
            timer.start()

    def _count_connections(self) -> None:
        assert self.server is not None  # started only with a server
        self.connections = self.server.connections(self.port)

    def stop(self) -> None:
        if self.server is None:
            return
        after, rss, conns = self.server.cpu(), self.server.rss(), self.connections
        busy, total = (now - then for now, then in zip(machine_ticks(), self.machine_before))
        cpu = {p: (t - self.before.get(p, 0)) * 1000 / CLOCK_TICKS for p, t in after.items()}
        note = None
        if after.keys() != self.before.keys():
            note = (f"server processes changed during the load (before {sorted(self.before)}, "
                    f"after {sorted(after)}): a process ended or restarted; CPU per enrollment not computed")
        self.use = ServerUse(cpu, {p: k / 1024 for p, k in rss.items()}, conns,
                             {p: self.server.role(p) for p in {*after, *rss, *conns}}, busy / max(total, 1), note)


@dataclass
class Figures:
    """What one run measured; None where it could not be measured."""

    enrollments: int
    seconds: float
    rate: float
    p50: float | None
    p90: float | None
    p99: float | None
    max_ms: float | None
    errors: int
    first_error: str | None
    starved: int
    raw: RawSign
    load_cpu_ms: float  # the load generator's own CPU time during the load
    cpu_ms_per_enrollment: float | None
    rss_max_mib: float | None
    shares: CpuShares | None  # who kept the machine's CPUs busy during the load


@dataclass(frozen=True)
class CpuShares:
    """Fractions of the machine's whole CPU capacity during the load."""

    busy: float
    server: float
    load: float

    @property
    def others(self) -> float:
        """Programs that are neither the server nor this benchmark (noise)."""
        return max(self.busy - self.server - self.load, 0.0)


def cpu_shares(use: ServerUse | None, seconds: float, load_cpu_ms: float) -> CpuShares | None:
    if use is None:
        return None
    capacity = seconds * 1000 * (os.cpu_count() or 1)  # CPU ms the machine had during the load
    return CpuShares(use.machine_busy, sum(use.cpu_ms.values()) / capacity, load_cpu_ms / capacity)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def figures(workers: list[WorkerResult], raw: RawSign, use: ServerUse | None) -> Figures:
    clients = [c for w in workers for c in w.clients]
    ok = sum(c.ok for c in clients)
    elapsed = max(w.finished for w in workers) - min(w.started for w in workers)
    latencies = sorted(x * 1000 for c in clients for x in c.latencies)
    p50, p90, p99 = (percentile(latencies, p) for p in (50, 90, 99)) if latencies else (None,) * 3
    cpu = sum(use.cpu_ms.values()) / ok if use and ok and not use.note else None  # no note: same processes
    load_cpu_ms = sum(w.cpu_seconds for w in workers) * 1000
    return Figures(
        enrollments=ok, seconds=elapsed, rate=ok / elapsed, p50=p50, p90=p90, p99=p99,
        max_ms=latencies[-1] if latencies else None, errors=sum(c.errors for c in clients),
        first_error=next((c.first_error for c in clients if c.first_error), None),
        starved=sum(1 for c in clients if not c.ok), raw=raw,
        load_cpu_ms=load_cpu_ms, cpu_ms_per_enrollment=cpu,
        rss_max_mib=max(use.rss_mib.values()) if use and use.rss_mib else None,
        shares=cpu_shares(use, elapsed, load_cpu_ms))


def print_load(plan: LoadPlan, processes: int, f: Figures) -> None:
    mode = "new connection each" if plan.new_connection else "keep-alive"
    print(f"enrollments: {f.enrollments} in {f.seconds:.1f} s = {f.rate:.1f}/s "
          f"({plan.clients} clients, {processes} load processes, {mode}, {plan.auth}, "
          f"{plan.target.workers} server worker(s))")
    if f.p50 is not None:
        print(f"latency ms: p50 {f.p50:.1f} p90 {f.p90:.1f} p99 {f.p99:.1f} max {f.max_ms:.1f}")
    else:
        print("latency ms: no successful enrollment")
    print(f"errors: {f.errors}" + (f" (first: {f.first_error})" if f.first_error else ""))
    print(f"clients that got nothing: {f.starved}")


def per_process(use: ServerUse, values: Mapping[int, float], fmt: str) -> str:
    return " ".join(f"{use.roles[p]} {p} {fmt.format(v)}" for p, v in sorted(values.items()))


def print_server_use(plan: LoadPlan, f: Figures, use: ServerUse | None) -> None:
    if use is None:
        print("server CPU and RSS: not measured (no server pid; with --config pass --server-pid)")
        return
    if use.note:
        print(f"server note: {use.note}")
    cpu = f"{f.cpu_ms_per_enrollment:.2f} ms" if f.cpu_ms_per_enrollment is not None else "n/a"
    print(f"server CPU per enrollment: {cpu} (ms during the load: {per_process(use, use.cpu_ms, '{:.0f}')})")
    rss = f"{f.rss_max_mib:.1f}" if f.rss_max_mib is not None else "n/a"
    print(f"server RSS MiB: max {rss} ({per_process(use, use.rss_mib, '{:.1f}')})")
    if not plan.new_connection and len(use.connections) > 1:
        print(f"server connections near the end: {per_process(use, use.connections, '{}')}")
    sh = f.shares
    assert sh is not None  # measured whenever the server's use is
    print(f"machine CPU during the load: {sh.busy:.0%} of {os.cpu_count()} cores busy "
          f"(server {sh.server:.0%}, load generator {sh.load:.0%}, anything else {sh.others:.0%})")


def benchmark(target: Target, server: ServerProcesses | None, args: argparse.Namespace, processes: int) -> Figures:
    """Raw sign rate, warm-up, the timed load; prints the figures and returns them."""
    raw = raw_sign_figures(target.token, args.raw_seconds, target.workers)
    warm_up(target, args.timeout)
    csrs = args.csr_pool or max(64, math.ceil(args.clients * 32 / processes))
    plan = LoadPlan(target, args.clients, args.seconds, args.new_connection, args.auth, csrs, args.timeout)
    watch = ServerWatch(server, target.port, args.seconds)
    results = run_load(plan, processes, watch.start, watch.stop)
    f = figures(results, raw, watch.use)
    if args.latency_log is not None:
        write_latency_log(args.latency_log, results)
    print_load(plan, processes, f)
    print_server_use(plan, f, watch.use)
    sys.stdout.flush()
    return f


def write_latency_log(path: Path, workers: list[WorkerResult]) -> None:
    """Every successful enrollment, in the order they finished: when (seconds
    from the start of the load), how long it took, which load process and client."""
    start = min(w.started for w in workers)
    rows = sorted((end - start, latency * 1000, p, c)
                  for p, w in enumerate(workers) for c, r in enumerate(w.clients)
                  for end, latency in zip(r.finished, r.latencies))
    with open(path, "w") as out:
        out.write("finished_s,latency_ms,load_process,client\n")
        out.writelines(f"{t:.6f},{ms:.3f},{p},{c}\n" for t, ms, p, c in rows)
    print(f"latency log: {len(rows)} enrollments in {path}")


def run_once(args: argparse.Namespace) -> Figures:
    processes = min(args.processes, args.clients)
    server = running_server(args) if args.config is not None else own_server(args)
    with server as (target, procs):
        return benchmark(target, procs, args, processes)


# -- the issue 7 suite -----------------------------------------------------------


@dataclass(frozen=True)
class Check:
    figure: str
    value: float | None
    shown: str  # the value as printed
    target: str
    met: bool | None  # None: no target, or not measured


def check(figure: str, value: float | None, target: str, passes: Callable[[float], bool] | None = None,
          fmt: str = "{:.1f}") -> Check:
    """A figure against its target; without ``passes`` it is only reported."""
    met = None if value is None or passes is None else passes(value)
    return Check(figure, value, "n/a" if value is None else fmt.format(value), target, met)


def common_checks(f: Figures) -> list[Check]:
    """Every scenario: memory per server process, CPU per enrollment (reported)."""
    return [check("max server RSS MiB", f.rss_max_mib, "< 150", lambda v: v < 150),
            check("server CPU ms/enroll", f.cpu_ms_per_enrollment, "(reported)", fmt="{:.2f}"),
            check("CPU used by others %", f.shares.others * 100 if f.shares else None, "(noise)", fmt="{:.0f}")]


def checks_basic(f: Figures, _: dict) -> list[Check]:
    return [check("enroll/s", f.rate, ">= 1000", lambda v: v >= 1000, "{:.0f}"),
            check("p99 ms", f.p99, "<= 50", lambda v: v <= 50),
            check("starved clients", f.starved, "0", lambda v: v == 0, "{:.0f}")]


def checks_new_connection(f: Figures, _: dict) -> list[Check]:
    return [check("enroll/s", f.rate, ">= 500", lambda v: v >= 500, "{:.0f}"),
            check("p99 ms", f.p99, "(reported)")]


def checks_cert(f: Figures, _: dict) -> list[Check]:
    return [check("enroll/s", f.rate, "(reported; no target given)", fmt="{:.0f}"),
            check("p99 ms", f.p99, "(reported)")]


def checks_rsa(f: Figures, _: dict) -> list[Check]:
    """Against the token's raw rate as one PKCS#11 session signs in a loop.
    The rate of one session per worker in parallel is shown beside it: with
    SoftHSM2 those signatures use the very cores the server needs, so no
    server on this machine could come near it (RSA-3072 costs ~1.9 ms of CPU
    per signature; TLS, HTTP, the CSR check and the store need CPU too)."""
    raw = f.raw
    if raw.one is None:
        return [check("enroll/s", f.rate, ">= 0.9 x raw sign/s (not measured)", fmt="{:.0f}")]
    floor = 0.9 * raw.one
    checks = [check("enroll/s", f.rate, f">= 0.9 x raw {raw.one:.0f} = {floor:.0f}", lambda v: v >= floor, "{:.0f}"),
              check("x raw sign/s, 1 session", f.rate / raw.one, "(the target's ratio)", fmt="{:.2f}")]
    if raw.parallel is not None:
        checks.append(check(f"x raw sign/s, {raw.processes} at once", f.rate / raw.parallel,
                            "(reported; shares the server's cores)", fmt="{:.2f}"))
    return checks


def checks_prefilled(f: Figures, done: dict) -> list[Check]:
    empty = done.get(1)
    if empty is None:
        return [check("enroll/s", f.rate, ">= 0.9 x scenario 1 (did not run)", fmt="{:.0f}")]
    floor = 0.9 * empty.rate
    return [check("enroll/s", f.rate, f">= 0.9 x {empty.rate:.0f} (1) = {floor:.0f}", lambda v: v >= floor, "{:.0f}"),
            check("p99 ms", f.p99, f"(reported; (1) had {empty.p99:.1f})" if empty.p99 else "(reported)")]


@dataclass(frozen=True)
class Scenario:
    number: int
    title: str
    options: tuple[str, ...]  # beyond the options every scenario shares
    checks: Callable[[Figures, dict], list[Check]]


def suite_scenarios(args: argparse.Namespace) -> list[Scenario]:
    prefill = ("--prefill", str(args.suite_prefill)) + (("--state", str(args.state)) if args.state else ())
    return [
        Scenario(1, "P-256, keep-alive, Basic", (), checks_basic),
        Scenario(2, "P-256, new TLS connection per enrollment", ("--new-connection",), checks_new_connection),
        Scenario(3, "P-256, keep-alive, TLS client certificate", ("--auth", "cert"), checks_cert),
        Scenario(4, "RSA-3072 CA, keep-alive, Basic", ("--key-type", "rsa3072"), checks_rsa),
        Scenario(5, f"P-256, keep-alive, Basic, store prefilled ({args.suite_prefill})", prefill,
                 checks_prefilled),
        Scenario(6, "P-256, keep-alive, SHA-256 Digest (nonce counts in the store)", ("--auth", "digest"),
                 checks_cert),
    ]


def scenario_argv(args: argparse.Namespace, scenario: Scenario) -> list[str]:
    """The command line of one scenario: the suite's shared knobs, then its own."""
    shared = ["--workers", str(args.workers), "--clients", str(args.suite_clients), "--seconds", f"{args.seconds:g}",
              "--processes", str(args.processes), "--raw-seconds", f"{args.raw_seconds:g}"]
    if args.metrics:
        shared.append("--metrics")
    for option in ("timeout", "csr_pool"):  # only when not the default, to keep the line short
        if getattr(args, option) != parser().get_default(option):
            shared += [f"--{option.replace('_', '-')}", f"{getattr(args, option):g}"]
    if args.keep_state:
        shared.append("--keep-state")
    key_type = () if "--key-type" in scenario.options else ("--key-type", "ec-p256")
    return shared + list(key_type) + list(scenario.options)


def print_summary(rows: list[tuple[Scenario, list[Check] | str]]) -> None:
    print("\n== issue 7 summary (figures from this machine; nothing is asserted)")
    head = f"{'scenario':<56} {'figure':<24} {'value':>9}  {'target':<36} verdict"
    print(head)
    print("-" * len(head))
    for scenario, checks in rows:
        name = f"({scenario.number}) {scenario.title}"
        if isinstance(checks, str):
            print(f"{name:<56} did not run: {checks}")
            continue
        for i, c in enumerate(checks):
            verdict = "-" if c.met is None else ("met" if c.met else "NOT MET")
            print(f"{name if i == 0 else '':<56} {c.figure:<24} {c.shown:>9}  {c.target:<36} {verdict}")


def run_suite(args: argparse.Namespace) -> int:
    rows: list[tuple[Scenario, list[Check] | str]] = []
    done: dict[int, Figures] = {}
    scenarios = suite_scenarios(args)
    with Progress() as bars:  # on a terminal only
        bar = bars.task("bench scenarios", total=len(scenarios))
        for scenario in scenarios:
            argv = scenario_argv(args, scenario)
            print(f"\n== ({scenario.number}) {scenario.title}\n$ {COMMAND} {shlex.join(argv)}", flush=True)
            try:
                f = run_once(parser().parse_args(argv))
            except BenchError as e:
                print(f"bench: {e}", file=sys.stderr)
                rows.append((scenario, str(e).splitlines()[0]))
                continue
            finally:
                bar.advance()
            done[scenario.number] = f
            rows.append((scenario, scenario.checks(f, done) + common_checks(f)))
    print_summary(rows)
    if args.plot is not None and done:
        plot.write_png(args.plot, [plot.ScenarioFigures(f"({s.number}) {s.title}", done[s.number].rate,
                                                        done[s.number].p50, done[s.number].p90, done[s.number].p99)
                                   for s, _ in rows if s.number in done],
                       f"estappliance bench: {args.suite_clients} clients, {args.workers} workers")
        print(f"figures drawn in {args.plot}")
    return 0 if len(done) == len(rows) else 1


# -- command line --------------------------------------------------------------


def positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark /simpleenroll of the EST server, the token's raw sign rate and the server's "
                    "CPU and memory. Without --config it starts its own server in a temporary directory.")
    p.add_argument("--config", type=Path,
                   help="benchmark the already running server of this config instead of starting one")
    p.add_argument("--user", default="demo", help="with --config: EST client name (default demo)")
    p.add_argument("--password-file", type=Path, default=REPO / "var" / "demo.password",
                   help="with --config: the client's password (default var/demo.password)")
    p.add_argument("--server-pid", type=positive(int),
                   help="with --config: the server's (master) pid, for its CPU and RSS figures")
    p.add_argument("--workers", type=positive(int), default=default_workers(),
                   help=f"[server] workers of the started server (default {default_workers()}: "
                        "2 on a machine with 2+ cores)")
    p.add_argument("--key-type", choices=KEY_TYPES, default="ec-p256",
                   help="CA key type of the started server (default ec-p256; ignored with --config)")
    p.add_argument("--auth", choices=("basic", "cert", "digest"), default="basic",
                   help="basic: HTTP Basic on every request; cert: each client enrolls once with Basic "
                        "(untimed), then presents that certificate in TLS; digest: SHA-256 Digest, each client "
                        "with its own nonce (one untimed 401) and a growing nonce count (default basic)")
    p.add_argument("--clients", type=positive(int), default=16, help="concurrent clients (default 16)")
    p.add_argument("--processes", type=positive(int), default=2,
                   help="load processes the clients are spread over (default 2)")
    p.add_argument("--seconds", type=positive(float), default=5.0, help="how long each client runs (default 5)")
    p.add_argument("--latency-log", type=Path, metavar="CSV",
                   help="write every successful enrollment (finish time, latency ms, load process, client) to CSV")
    p.add_argument("--new-connection", action="store_true",
                   help="a new TLS connection per enrollment (default: keep-alive)")
    p.add_argument("--raw-seconds", type=positive(float), default=2.0,
                   help="how long to measure the token's raw sign rate, each way (default 2)")
    p.add_argument("--csr-pool", type=positive(int), default=None,
                   help="distinct CSRs per load process, used round-robin (default 32 per client)")
    p.add_argument("--timeout", type=positive(float), default=30.0, help="socket timeout in seconds (default 30)")
    p.add_argument("--prefill", type=int, default=0, metavar="N",
                   help="before starting the server, insert certificate rows until N were prefilled")
    p.add_argument("--state", type=Path, metavar="DIR",
                   help="prepare the state (token, CA, client, prefilled store) in DIR and keep it, "
                        "or reuse it if DIR already holds one")
    p.add_argument("--keep-state", action="store_true",
                   help="keep the temporary state directory (and server log) for inspection")
    p.add_argument("--suite", action="store_true",
                   help="run the issue 7 scenarios, each against a fresh server, and print a summary table")
    p.add_argument("--suite-clients", type=positive(int), default=64, help="with --suite: clients (default 64)")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="with --suite: draw enrollments/s and latency per scenario in this PNG")
    p.add_argument("--metrics", action="store_true",
                   help="the started server serves /metrics on an admin listener (metrics on)")
    p.add_argument("--suite-prefill", type=positive(int), default=1_000_000,
                   help="with --suite: certificates prefilled for scenario 5 (default 1000000); "
                        "with --state, scenario 5 reuses that directory")
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.config is not None and (args.prefill or args.state or args.suite):
        raise BenchError("--prefill, --state and --suite start their own server: not with --config", 2)
    if args.prefill < 0:
        raise BenchError("--prefill must not be negative", 2)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        check_args(args)
        if args.suite:
            return run_suite(args)
        return 0 if run_once(args).enrollments else 1
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
