"""One benchmark run: the token's raw sign rate, the warm-up, the timed load
against one server (started here, or already running), then the figures."""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace

from .enrollment import warm_up
from .figures import Figures, figures
from .load import run_load
from .rawsign import raw_sign_figures
from .database import DatabaseProbe
from .report import print_database_use, print_load, print_server_use, write_latency_log
from .server import Running, own_server, running_server
from .target import LoadPlan
from .watch import ServerWatch


def benchmark(running: Running, args: argparse.Namespace, processes: int) -> Figures:
    """Raw sign rate, warm-up, the timed load; prints the figures and returns them."""
    target, server = running.target, running.processes
    raw = raw_sign_figures(target, args.raw_seconds)
    for node in target.nodes():
        warm_up(node, args.timeout)
    csrs = args.csr_pool or max(64, math.ceil(args.clients * 32 / processes))
    plan = LoadPlan(target, args.clients, args.seconds, args.new_connection, args.auth, csrs, args.timeout)
    watch = ServerWatch(server, tuple(n.port for n in target.nodes()), args.seconds)
    probe = DatabaseProbe(running.database_url) if running.database_url else None

    def go() -> None:
        watch.start()
        if probe is not None:
            probe.start()

    def done() -> None:
        watch.stop()
        if probe is not None:
            probe.stop()
    results = run_load(plan, processes, go, done)
    f = replace(figures(results, raw, watch.use), prefill_seconds=running.prefill_seconds,
                database=probe.use if probe is not None else None)
    if args.latency_log is not None:
        write_latency_log(args.latency_log, results)
    print_load(plan, processes, f)
    print_server_use(plan, f, watch.use)
    print_database_use(f)
    sys.stdout.flush()
    return f


def run_once(args: argparse.Namespace) -> Figures:
    processes = min(args.processes, args.clients)
    server = running_server(args) if args.config is not None else own_server(args)
    with server as running:
        return benchmark(running, args, processes)
