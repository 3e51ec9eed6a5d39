"""Printing one run's figures, and the latency log (CSV) of every enrollment."""
from __future__ import annotations

import os
from pathlib import Path

from .figures import Figures
from .load import WorkerResult
from .target import LoadPlan
from .watch import ServerUse


def print_load(plan: LoadPlan, processes: int, f: Figures) -> None:
    mode = "new connection each" if plan.new_connection else "keep-alive"
    print(f"enrollments: {f.enrollments} in {f.seconds:.1f} s = {f.rate:.1f}/s "
          f"({plan.clients} clients, {processes} load processes, {mode}, {plan.auth}, "
          f"{plan.target.workers} server worker(s))")
    if f.p50 is not None and f.p90 is not None and f.p99 is not None and f.max_ms is not None:
        print(f"latency ms: p50 {f.p50:.1f} p90 {f.p90:.1f} p99 {f.p99:.1f} max {f.max_ms:.1f}")
    else:
        print("latency ms: no successful enrollment")
    print(f"errors: {f.errors}" + (f" (first: {f.first_error})" if f.first_error else ""))
    print(f"clients that got nothing: {f.starved}")


def per_process(use: ServerUse, values: dict[int, float] | dict[int, int], fmt: str) -> str:
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
    if f.shares is not None:
        sh = f.shares
        print(f"machine CPU during the load: {sh.busy:.0%} of {os.cpu_count()} cores busy "
              f"(server {sh.server:.0%}, load generator {sh.load:.0%}, anything else {sh.others:.0%})")


def print_database_use(f: Figures) -> None:
    """PostgreSQL only: the durable commits the load cost, and the WAL it wrote."""
    d = f.database
    if d is None or f.commits_per_enrollment is None:
        return
    print(f"database during the load: {d.write_transactions} write transactions "
          f"({f.commits_per_enrollment:.2f} per enrollment), {d.wal_bytes / 2**20:.1f} MiB of WAL "
          f"({d.wal_bytes / max(f.enrollments, 1) / 1024:.1f} KiB per enrollment)")


def latency_rows(workers: list[WorkerResult]) -> list[tuple[float, float, int, int]]:
    """Every successful enrollment in the order they finished: (seconds from
    the start of the load, latency ms, load process, client)."""
    start = min(w.started for w in workers)
    return sorted((end - start, latency * 1000, p, c)
                  for p, w in enumerate(workers) for c, r in enumerate(w.clients)
                  for end, latency in zip(r.finished, r.latencies))


def write_latency_log(path: Path, workers: list[WorkerResult]) -> None:
    rows = latency_rows(workers)
    with open(path, "w") as out:
        out.write("finished_s,latency_ms,load_process,client\n")
        out.writelines(f"{t:.6f},{ms:.3f},{p},{c}\n" for t, ms, p, c in rows)
    print(f"latency log: {len(rows)} enrollments in {path}")
