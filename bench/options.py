"""The command line of ``python -m bench``."""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .state import REPO
from .target import BenchError

KEY_TYPES = ("ec-p256", "ec-p384", "rsa2048", "rsa3072")
N = TypeVar("N", int, float)


def default_workers() -> int:
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def positive(kind: Callable[[str], N]) -> Callable[[str], N]:
    def parse(text: str) -> N:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
        return value
    return parse


def scenario_numbers(text: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"scenario numbers separated by commas: {text}") from None
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"scenario numbers start at 1: {text}")
    return numbers


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark /simpleenroll of the EST server, the token's raw sign rate and the server's "
                    "CPU and memory. Without --config it starts its own server in a temporary directory. "
                    "Run it from the repository root; bench/README.md explains every figure.")
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
                   help="before starting the server, import certificates until N were prefilled")
    p.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                   help="the started server's store: a SQLite file in the state (default), or a fresh PostgreSQL "
                        "cluster (Debian's binaries, fsync and synchronous_commit on), made and removed by the run")
    p.add_argument("--nodes", type=positive(int), default=1,
                   help="with --store postgresql: twistd processes (nodes) on their own ports sharing the one "
                        "database and token; load process i sends to node i %% N (default 1)")
    p.add_argument("--state", type=Path, metavar="DIR",
                   help="prepare the state (token, CA, client, prefilled store) in DIR and keep it, "
                        "or reuse it if DIR already holds one")
    p.add_argument("--keep-state", action="store_true",
                   help="keep the temporary state directory (and server log) for inspection")
    p.add_argument("--suite", action="store_true",
                   help="run the issue 7 scenarios, each against a fresh server, and print a summary table "
                        "(a progress bar on standard error when it is a terminal)")
    p.add_argument("--suite-clients", type=positive(int), default=64, help="with --suite: clients (default 64)")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="with --suite: draw enrollments/s and latency per scenario in this PNG")
    p.add_argument("--metrics", action="store_true",
                   help="the started server serves /metrics on an admin listener (metrics on)")
    p.add_argument("--scenarios", type=scenario_numbers, default=None, metavar="N,N,...",
                   help="with --suite: run only these scenarios, in this order (e.g. 1,7,8,9)")
    p.add_argument("--suite-prefill", type=positive(int), default=1_000_000,
                   help="with --suite: certificates prefilled for scenario 5 (default 1000000); "
                        "with --state, scenario 5 reuses that directory")
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.config is not None and (args.prefill or args.state or args.suite):
        raise BenchError("--prefill, --state and --suite start their own server: not with --config", 2)
    if args.nodes > 1 and args.store != "postgresql":
        raise BenchError("--nodes > 1 needs --store postgresql (nodes share one database)", 2)
    if args.nodes > args.processes:
        raise BenchError(f"--nodes {args.nodes} needs at least as many --processes (each sends to one node)", 2)
    if args.store == "postgresql" and args.state is not None:
        raise BenchError("--state keeps a SQLite store; a PostgreSQL cluster lives for one run", 2)
    if args.config is not None and (args.store != "sqlite" or args.nodes > 1):
        raise BenchError("--store and --nodes configure the started server: not with --config", 2)
    if args.prefill < 0:
        raise BenchError("--prefill must not be negative", 2)
