"""The server a run benchmarks: a ``twistd -n est`` started on a prepared
state (and stopped, workers included, afterwards), or one already running."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from estappliance.client import TLSError

from . import procfs
from .enrollment import probe_tls
from .database import PostgresStore, store_database
from .state import (BENCH_USER, CONFIG_FILE, PASSWORD_FILE, free_port, load_or_prepare_state, prefill, softhsm_env,
                    state_directory, store_table, write_config)
from .target import HOST, BenchError, Target, read_password, target_from_config
from .watch import ServerProcesses

START_TIMEOUT = 60.0
Workers = set[tuple[int, str | None]]  # (pid, start time): still ours while both match


def start_server(config: Path, state: Path, log_path: Path) -> subprocess.Popen[bytes]:
    twistd = Path(sys.executable).parent / "twistd"
    with open(log_path, "ab") as log:
        return subprocess.Popen([str(twistd), "-n", "--pidfile=", "est", "-c", str(config)],
                                env=softhsm_env(state), cwd=state, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def still_running(workers: Workers) -> list[int]:
    return [pid for pid, started in workers if started is not None and procfs.start_time(pid) == started]


def stop_server(proc: subprocess.Popen[bytes], workers: Workers) -> None:
    """SIGTERM the master (it stops its workers); SIGKILL the workers that
    outlive it. ``workers`` carry their start time, so a reused pid is never signalled."""
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


def server_died(proc: subprocess.Popen[bytes], log: Path) -> str:
    return f"the server exited during the run (status {proc.returncode}); its log ends:\n{log_tail(log, 8)}"


def wait_until_serving(target: Target, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise BenchError(f"the server exited with status {proc.returncode}:\n{log_tail(log)}")
        try:
            probe_tls(target, 1.0)
            return
        except (OSError, TLSError) as e:
            if time.monotonic() > deadline:
                raise BenchError(f"the server did not accept TLS within {START_TIMEOUT:.0f} s ({e}):\n"
                                 f"{log_tail(log)}") from None
            time.sleep(0.1)


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


@dataclass(frozen=True)
class Running:
    """What a run benchmarks: the Target, the server's processes (None: not
    known), how long the prefill took, the PostgreSQL store's URL."""

    target: Target
    processes: ServerProcesses | None
    prefill_seconds: float | None = None
    database_url: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A run's state: each node's config, the Target (every node's port), how long the prefill took."""

    configs: list[Path]
    target: Target
    prefill_seconds: float | None


def prepared_configs(state: Path, args: argparse.Namespace, database: PostgresStore | None) -> Prepared:
    """A prepared (maybe reused, maybe prefilled) state; a config per node for this run."""
    url = database.url if database is not None else None
    info = load_or_prepare_state(state, args.key_type, url)
    seconds = None
    if args.prefill:
        seconds = prefill(state, info, args.prefill, url, database.data_dir if database is not None else None)
    configs = [write_config(state, free_port(), info.key_type, args.workers, free_port() if args.metrics else None,
                            store=store_table(state, url, node), name=CONFIG_FILE if node == 1 else f"node-{node}.toml")
               for node in range(1, args.nodes + 1)]
    password = read_password(state / PASSWORD_FILE)
    first, *others = [target_from_config(c, BENCH_USER, password) for c in configs]
    target = replace(first, node_ports=(first.port, *(t.port for t in others))) if others else first
    return Prepared(configs, target, seconds)


def node_log(state: Path, node: int) -> Path:
    return state / ("server.log" if node == 1 else f"server-node-{node}.log")


@contextlib.contextmanager
def own_server(args: argparse.Namespace) -> Iterator[Running]:
    """Fresh twistd processes (``args.nodes``, each with ``args.workers``
    workers) on a prepared state and its database."""
    with state_directory(args.state, args.keep_state) as state, store_database(args.store) as database:
        prepared = prepared_configs(state, args, database)
        logs = [node_log(state, node) for node in range(1, len(prepared.configs) + 1)]
        procs: list[subprocess.Popen[bytes]] = []
        workers: dict[int, Workers] = {}  # each master's
        try:
            for config, log in zip(prepared.configs, logs):
                procs.append(start_server(config, state, log))
            for proc, node, log in zip(procs, prepared.target.nodes(), logs):
                wait_until_serving(node, proc, log)
            for proc, node in zip(procs, prepared.target.nodes()):
                wait_until_idle(ServerProcesses(proc.pid), args.workers, START_TIMEOUT)
                started = {(pid, procfs.start_time(pid)) for pid in procfs.descendants(proc.pid)}
                workers[proc.pid] = started
                print(f"server: pid {proc.pid}, {args.workers} worker(s)"
                      + (f" (pids {' '.join(str(p) for p, _ in sorted(started))})" if started else "")
                      + f", port {node.port}", flush=True)
            server = ServerProcesses(procs[0].pid, tuple(p.pid for p in procs[1:]),
                                     database.pid if database is not None else None)
            yield Running(prepared.target, server, prepared.prefill_seconds,
                          database.url if database is not None else None)
            for proc, log in zip(procs, logs):
                if proc.poll() is not None:
                    raise BenchError(server_died(proc, log))
        except Exception as e:
            if not isinstance(e, BenchError):
                for proc, log in zip(procs, logs):
                    if proc.poll() is not None:
                        print(f"bench: {server_died(proc, log)}", file=sys.stderr)
            raise
        finally:
            for proc in procs:
                stop_server(proc, workers.get(proc.pid, set())
                            | {(pid, procfs.start_time(pid)) for pid in procfs.descendants(proc.pid)})


@contextlib.contextmanager
def running_server(args: argparse.Namespace) -> Iterator[Running]:
    """The Target of a server someone else started; exit status 2 if it is not there."""
    target = target_from_config(args.config, args.user, password="")
    if not Path(target.ca_file).exists():
        raise BenchError(f"no CA certificate at {target.ca_file}: start the server first (make run)", 2)
    try:
        probe_tls(target, 3.0)
    except (OSError, TLSError, ssl.SSLError) as e:
        raise BenchError(f"no EST server answers TLS on https://{HOST}:{target.port} ({e}).\n"
                         f"Start it first (make run), then run the benchmark again.", 2) from None
    server = ServerProcesses(args.server_pid) if args.server_pid else None
    yield Running(replace(target, password=read_password(args.password_file)), server)
