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
from .report import print_load, print_server_use, write_latency_log
from .server import own_server, running_server
from .target import LoadPlan, Target
from .watch import ServerProcesses, ServerWatch


def benchmark(target: Target, server: ServerProcesses | None, args: argparse.Namespace, processes: int) -> Figures:
    """Raw sign rate, warm-up, the timed load; prints the figures and returns them."""
    raw = raw_sign_figures(target, args.raw_seconds)
    for node in target.nodes():
        warm_up(node, args.timeout)
    csrs = args.csr_pool or max(64, math.ceil(args.clients * 32 / processes))
    plan = LoadPlan(target, args.clients, args.seconds, args.new_connection, args.auth, csrs, args.timeout)
    watch = ServerWatch(server, tuple(n.port for n in target.nodes()), args.seconds)
    results = run_load(plan, processes, watch.start, watch.stop)
    f = figures(results, raw, watch.use)
    if args.latency_log is not None:
        write_latency_log(args.latency_log, results)
    print_load(plan, processes, f)
    print_server_use(plan, f, watch.use)
    sys.stdout.flush()
    return f


def run_once(args: argparse.Namespace) -> Figures:
    processes = min(args.processes, args.clients)
    server = running_server(args) if args.config is not None else own_server(args)
    with server as (target, procs, prefill_seconds):
        return replace(benchmark(target, procs, args, processes), prefill_seconds=prefill_seconds)
