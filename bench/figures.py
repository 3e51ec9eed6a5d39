"""What one run measured, computed from the load processes' latencies, the
token's raw rate and the server's /proc figures; None where not measured."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .database import DatabaseUse
from .load import WorkerResult
from .rawsign import RawSign
from .watch import ServerUse


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


@dataclass
class Figures:
    enrollments: int
    seconds: float
    rate: float  # enrollments/s
    p50: float | None  # latency, ms
    p90: float | None
    p99: float | None
    max_ms: float | None
    errors: int
    first_error: str | None
    starved: int  # clients that got no certificate at all
    raw: RawSign
    load_cpu_ms: float  # the load generator's own CPU time during the load
    cpu_ms_per_enrollment: float | None
    rss_max_mib: float | None
    shares: CpuShares | None  # who kept the machine's CPUs busy during the load
    prefill_seconds: float | None = None  # how long --prefill's import took (None: none this run)
    database: DatabaseUse | None = None  # PostgreSQL: its write transactions and WAL during the load

    @property
    def commits_per_enrollment(self) -> float | None:
        if self.database is None or not self.enrollments:
            return None
        return self.database.write_transactions / self.enrollments


def cpu_shares(use: ServerUse | None, seconds: float, load_cpu_ms: float, cpus: int) -> CpuShares | None:
    if use is None:
        return None
    capacity = seconds * 1000 * cpus  # CPU ms the machine had during the load
    return CpuShares(use.machine_busy, sum(use.cpu_ms.values()) / capacity, load_cpu_ms / capacity)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def figures(workers: list[WorkerResult], raw: RawSign, use: ServerUse | None, cpus: int | None = None) -> Figures:
    clients = [c for w in workers for c in w.clients]
    ok = sum(c.ok for c in clients)
    elapsed = max(w.finished for w in workers) - min(w.started for w in workers)
    latencies = sorted(x * 1000 for c in clients for x in c.latencies)
    p50, p90, p99 = (percentile(latencies, p) for p in (50, 90, 99)) if latencies else (None, None, None)
    cpu = sum(use.cpu_ms.values()) / ok if use and ok and not use.note else None  # no note: same processes
    load_cpu_ms = sum(w.cpu_seconds for w in workers) * 1000
    return Figures(
        enrollments=ok, seconds=elapsed, rate=ok / elapsed, p50=p50, p90=p90, p99=p99,
        max_ms=latencies[-1] if latencies else None, errors=sum(c.errors for c in clients),
        first_error=next((c.first_error for c in clients if c.first_error), None),
        starved=sum(1 for c in clients if not c.ok), raw=raw,
        load_cpu_ms=load_cpu_ms, cpu_ms_per_enrollment=cpu,
        rss_max_mib=max(use.rss_mib.values()) if use and use.rss_mib else None,
        shares=cpu_shares(use, elapsed, load_cpu_ms, cpus or os.cpu_count() or 1))
