"""Enrollment throughput of the EST server: /simpleenroll under concurrent load.

Self-contained (the default): makes a SoftHSM2 token, a CA and a client
'bench' in a temporary directory, starts ``twistd -n est`` on a free
127.0.0.1 port, measures, stops the server and removes the directory::

    .venv/bin/python bench/enroll.py                      # 16 clients, 2 processes, 5 s
    .venv/bin/python bench/enroll.py --seconds 3 --new-connection
    .venv/bin/python bench/enroll.py --key-type rsa3072

Against a server that is already running (``make run``; ``make bench`` does
this, with the demo client)::

    .venv/bin/python bench/enroll.py --config etc/estappliance.toml \\
        [--user demo --password-file var/demo.password]

It always connects to 127.0.0.1 (on the config's port). What it prints:

* the token's raw sign rate for the CA key (CKM_ECDSA over a digest, or
  CKM_SHA256_RSA_PKCS), one thread in a separate process, measured just
  before the load: the ceiling a single PKCS#11 thread could reach;
* enrollments per second: only 200 answers whose body is base64 of DER count;
* latency percentiles of those successful enrollments (with
  ``--new-connection`` they include the TCP and TLS handshakes);
* errors (non-200 answers and failed requests) with the first error's text,
  and how many clients got no certificate at all.

The P-256 CSRs are made before the clock starts (a pool of distinct keys per
worker process, used round-robin); one untimed enrollment warms the server
up (password check, key lookup). The load generator shares the machine with
the server: on a small machine its own CPU use lowers the figures.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import queue
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
HOST = "127.0.0.1"  # the only address this script ever connects to
KEY_TYPES = ("ec-p256", "ec-p384", "rsa2048", "rsa3072")
ENROLL_PATH = "/.well-known/est/simpleenroll"
BENCH_USER = "bench"
BENCH_TOKEN_LABEL = "estbench"
START_TIMEOUT = 60.0
SPAWN = multiprocessing.get_context("spawn")


class BenchError(Exception):
    """The benchmark cannot go on; the message says why. ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


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


@dataclass(frozen=True)
class LoadPlan:
    target: Target
    clients: int
    seconds: float
    new_connection: bool
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
                  token=token)


def read_password(path: Path) -> str:
    try:
        password = path.read_text().rstrip("\r\n")
    except OSError as e:
        raise BenchError(f"cannot read the password file {path}: {e.strerror}", 2) from None
    if not password:
        raise BenchError(f"the password file {path} is empty", 2)
    return password


# -- a temporary appliance -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def toml_str(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(state: Path, port: int, key_type: str) -> Path:
    """A config like etc/estappliance.toml, every path absolute inside ``state``."""
    s = lambda rel: toml_str(state / rel)  # noqa: E731
    text = f"""\
[server]
host = "{HOST}"
port = {port}
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
auth = ["basic", "cert"]
cert_anchors = ["ca"]
"""
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


def prepare_state(state: Path, key_type: str) -> tuple[Path, str]:
    """Token, config, CA and client 'bench'; returns (config path, password)."""
    env = softhsm_env(state)
    run_step(["bash", str(REPO / "softhsm" / "init-token.sh"), str(state), BENCH_TOKEN_LABEL], env)
    config = write_config(state, free_port(), key_type)
    run_step([str(BIN / "estctl"), "-c", str(config), "init"], env)
    password = secrets.token_hex(12)
    password_file = state / "bench.password"
    password_file.touch(mode=0o600)
    password_file.write_text(password)
    run_step([str(BIN / "estctl"), "-c", str(config), "client", "add", BENCH_USER,
              "--password-file", str(password_file), "--labels", "*"], env)
    return config, password


def start_server(config: Path, state: Path) -> subprocess.Popen:
    log = open(state / "server.log", "wb")
    try:
        return subprocess.Popen([str(BIN / "twistd"), "-n", "--pidfile=", "est", "-c", str(config)],
                                env=softhsm_env(state), cwd=state, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    finally:
        log.close()


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


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


@contextlib.contextmanager
def temporary_server(key_type: str, keep_state: bool):
    """Yields a Target served by a fresh twistd; everything is gone afterwards."""
    state = Path(tempfile.mkdtemp(prefix="est-bench-"))
    proc = None
    try:
        config, password = prepare_state(state, key_type)
        target = target_from_config(config, BENCH_USER, password)
        proc = start_server(config, state)
        wait_until_serving(target, proc, state / "server.log")
        yield target
    finally:
        if proc is not None and proc.poll() is not None:
            print(f"bench: the server exited during the run (status {proc.returncode}); its log ends:\n"
                  f"{log_tail(state / 'server.log', 8)}", file=sys.stderr)
        if proc is not None:
            stop_server(proc)
        if keep_state:
            print(f"state kept in {state} (server log: {state / 'server.log'})")
        else:
            shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def running_server(config: Path, user: str, password_file: Path):
    """Yields the Target of a server someone else started; exit 2 if it is not there."""
    target = target_from_config(config, user, password="")
    if not Path(target.ca_file).exists():
        raise BenchError(f"no CA certificate at {target.ca_file}: start the server first (make run)", 2)
    try:
        probe_tls(client_context(target.ca_file), target.port, 3.0)
    except (OSError, ssl.SSLError) as e:
        raise BenchError(f"no EST server answers TLS on https://{HOST}:{target.port} ({e}).\n"
                         f"Start it first (make run), then run the benchmark again.", 2) from None
    yield replace(target, password=read_password(password_file))


# -- the token's raw sign rate -------------------------------------------------


def sign_input(key_type: str) -> tuple[str, bytes]:
    """Mechanism name and data, as the CA signs: a host-side digest for ECDSA."""
    if key_type.startswith("ec-"):
        # The server pairs P-384 with SHA-384, P-256 with SHA-256.
        return "ECDSA", os.urandom(48 if key_type == "ec-p384" else 32)
    return "SHA256_RSA_PKCS", os.urandom(32)


def raw_sign_rate(spec: TokenSpec, seconds: float) -> float:
    """Signs per second with the CA key, one thread. Runs in its own process."""
    if spec.softhsm2_conf:
        os.environ["SOFTHSM2_CONF"] = spec.softhsm2_conf  # before the library loads
    import pkcs11
    from pkcs11 import Mechanism, ObjectClass

    token = pkcs11.lib(spec.module).get_token(token_label=spec.label)
    mechanism, data = sign_input(spec.key_type)
    with token.open(user_pin=spec.read_pin()) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=spec.key_label)
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            key.sign(data, mechanism=Mechanism[mechanism])
            count += 1
    return count / elapsed


def measure_raw_sign(spec: TokenSpec, seconds: float) -> float:
    with ProcessPoolExecutor(max_workers=1, mp_context=SPAWN) as pool:
        return pool.submit(raw_sign_rate, spec, seconds).result()


# -- HTTP/1.1 over TLS, by hand ------------------------------------------------


class ProtocolError(Exception):
    """The server's answer was not the HTTP/1.1 we expect."""


def client_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def probe_tls(context: ssl.SSLContext, port: int, timeout: float) -> None:
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=HOST):
            pass


def enroll_request(csr_der: bytes, port: int, user: str, password: str, close: bool) -> bytes:
    body = base64.b64encode(csr_der)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    head = (f"POST {ENROLL_PATH} HTTP/1.1\r\n"
            f"Host: {HOST}:{port}\r\n"
            f"Authorization: Basic {auth}\r\n"
            "Content-Type: application/pkcs10\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n")
    return head.encode() + body


def read_response(reader) -> tuple[int, bytes, bool]:
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


def is_certs_only(body: bytes) -> bool:
    """A 200 counts only if its body is base64 of a DER SEQUENCE."""
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(der) > 2 and der[0] == 0x30


# -- the load ------------------------------------------------------------------


@dataclass
class ClientResult:
    ok: int = 0
    errors: int = 0
    first_error: str | None = None
    latencies: list[float] = field(default_factory=list)

    def failed(self, text: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = text


@dataclass
class WorkerResult:
    clients: list[ClientResult]
    started: float  # time.monotonic(): one clock for every process on Linux
    finished: float


def make_csrs(count: int, prefix: str) -> list[bytes]:
    """DER P-256 CSRs, each with its own key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    csrs = []
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"{prefix}-{i}")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        csrs.append(csr.public_bytes(serialization.Encoding.DER))
    return csrs


def one_enrollment(plan: LoadPlan, context, conn: Connection | None, request: bytes, result: ClientResult):
    """Send one request; returns the connection to reuse (or None)."""
    start = time.perf_counter()
    try:
        if conn is None:
            conn = Connection(context, plan.target.port, plan.timeout)
        status, body, keep_alive = conn.exchange(request)
    except (OSError, ProtocolError, ValueError) as e:
        result.failed(f"{type(e).__name__}: {e}")
        if conn is not None:
            conn.close()
        time.sleep(0.05)  # a dead server must not turn into a busy loop
        return None
    latency = time.perf_counter() - start
    if status == 200 and is_certs_only(body):
        result.ok += 1
        result.latencies.append(latency)
    else:
        result.failed(f"HTTP {status}: {body[:200].decode('utf-8', 'replace').strip()}")
    if plan.new_connection or not keep_alive:
        conn.close()
        return None
    return conn


def client_loop(plan: LoadPlan, context, requests: list[bytes], turn, deadline: float, result: ClientResult):
    conn = None
    while time.monotonic() < deadline:
        request = requests[next(turn) % len(requests)]
        conn = one_enrollment(plan, context, conn, request, result)
    if conn is not None:
        conn.close()


def load_worker(index: int, plan: LoadPlan, clients: int, messages, go) -> None:
    """One worker process: make its CSRs, say ready, wait for go, run its clients."""
    t = plan.target
    requests = [enroll_request(der, t.port, t.user, t.password, plan.new_connection)
                for der in make_csrs(plan.csrs_per_process, f"bench-{index}")]
    context = client_context(t.ca_file)
    messages.put(("ready", index, None))
    go.wait()
    started = time.monotonic()
    deadline = started + plan.seconds
    turn = itertools.count()  # next() on it is atomic under the GIL
    results = [ClientResult() for _ in range(clients)]
    threads = [threading.Thread(target=client_loop, args=(plan, context, requests, turn, deadline, r))
               for r in results]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    messages.put(("done", index, WorkerResult(results, started, time.monotonic())))


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def wait_for(messages, kind: str, count: int, timeout: float, procs) -> list:
    """Collect ``count`` messages of ``kind``; fail if a worker dies first."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count:
        try:
            msg_kind, _, payload = messages.get(timeout=0.5)
            if msg_kind == kind:
                got.append(payload)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise BenchError(f"a load worker died (exit code {dead[0].exitcode})") from None
            if time.monotonic() > deadline:
                raise BenchError(f"load workers did not report '{kind}' in time") from None
    return got


def run_load(plan: LoadPlan, processes: int) -> list[WorkerResult]:
    messages, go = SPAWN.Queue(), SPAWN.Event()
    shares = [n for n in split(plan.clients, processes) if n]
    procs = [SPAWN.Process(target=load_worker, args=(i, plan, n, messages, go), daemon=True)
             for i, n in enumerate(shares)]
    for p in procs:
        p.start()
    try:
        wait_for(messages, "ready", len(procs), 120.0, procs)
        go.set()
        results = wait_for(messages, "done", len(procs), plan.seconds + plan.timeout + 30.0, procs)
        for p in procs:
            p.join()
        return results
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()


def warm_up(target: Target, timeout: float) -> None:
    """One untimed enrollment: checks the credentials, fills the server's caches."""
    plan = LoadPlan(target, clients=1, seconds=0, new_connection=True, csrs_per_process=1, timeout=timeout)
    request = enroll_request(make_csrs(1, "bench-warm-up")[0], target.port, target.user, target.password, True)
    result = ClientResult()
    one_enrollment(plan, client_context(target.ca_file), None, request, result)
    if not result.ok:
        raise BenchError(f"the warm-up enrollment failed: {result.first_error}")


# -- figures -------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def report(plan: LoadPlan, processes: int, workers: list[WorkerResult]) -> int:
    clients = [c for w in workers for c in w.clients]
    ok = sum(c.ok for c in clients)
    elapsed = max(w.finished for w in workers) - min(w.started for w in workers)
    mode = "new connection each" if plan.new_connection else "keep-alive"
    print(f"enrollments: {ok} in {elapsed:.1f} s = {ok / elapsed:.1f}/s "
          f"({plan.clients} clients, {processes} processes, {mode}, basic)")
    latencies = sorted(x * 1000 for c in clients for x in c.latencies)
    if latencies:
        print("latency ms: " + " ".join(f"p{p} {percentile(latencies, p):.1f}" for p in (50, 90, 99))
              + f" max {latencies[-1]:.1f}")
    else:
        print("latency ms: no successful enrollment")
    errors = sum(c.errors for c in clients)
    first = next((c.first_error for c in clients if c.first_error), None)
    print(f"errors: {errors}" + (f" (first: {first})" if first else ""))
    print(f"clients that got nothing: {sum(1 for c in clients if not c.ok)}")
    return 0 if ok else 1


def benchmark(target: Target, args, processes: int) -> int:
    try:
        rate = measure_raw_sign(target.token, args.raw_seconds)
        print(f"token raw sign: {rate:.0f}/s ({target.token.key_type}, 1 thread)", flush=True)
    except Exception as e:  # the token's figure is a bonus: go on with the load
        print(f"token raw sign: not measured ({type(e).__name__}: {e})", flush=True)
    warm_up(target, args.timeout)
    csrs = args.csr_pool or max(64, math.ceil(args.clients * 32 / processes))
    plan = LoadPlan(target, args.clients, args.seconds, args.new_connection, csrs, args.timeout)
    return report(plan, processes, run_load(plan, processes))


# -- command line --------------------------------------------------------------


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark /simpleenroll of the EST server and the token's raw sign rate. "
                    "Without --config it starts its own server in a temporary directory.")
    p.add_argument("--config", type=Path,
                   help="benchmark the already running server of this config instead of starting one")
    p.add_argument("--user", default="demo", help="with --config: EST client name (default demo)")
    p.add_argument("--password-file", type=Path, default=REPO / "var" / "demo.password",
                   help="with --config: the client's password (default var/demo.password)")
    p.add_argument("--key-type", choices=KEY_TYPES, default="ec-p256",
                   help="CA key type of the temporary server (default ec-p256; ignored with --config)")
    p.add_argument("--clients", type=positive(int), default=16, help="concurrent clients (default 16)")
    p.add_argument("--processes", type=positive(int), default=2,
                   help="worker processes the clients are spread over (default 2)")
    p.add_argument("--seconds", type=positive(float), default=5.0, help="how long each client runs (default 5)")
    p.add_argument("--new-connection", action="store_true",
                   help="a new TLS connection per enrollment (default: keep-alive)")
    p.add_argument("--raw-seconds", type=positive(float), default=2.0,
                   help="how long to measure the token's raw sign rate (default 2)")
    p.add_argument("--csr-pool", type=positive(int), default=None,
                   help="distinct CSRs per worker process, used round-robin (default 32 per client)")
    p.add_argument("--timeout", type=positive(float), default=30.0, help="socket timeout in seconds (default 30)")
    p.add_argument("--keep-state", action="store_true",
                   help="keep the temporary state directory (and server log) for inspection")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    processes = min(args.processes, args.clients)
    try:
        if args.config is not None:
            server = running_server(args.config, args.user, args.password_file)
        else:
            server = temporary_server(args.key_type, args.keep_state)
        with server as target:
            return benchmark(target, args, processes)
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
