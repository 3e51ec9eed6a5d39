"""The server's processes seen through /proc: their CPU time over the timed
load, their memory at its end, and the connections each holds."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from . import procfs


@dataclass(frozen=True)
class ServerProcesses:
    """The master's pid (and, with several nodes, the other masters'); their
    descendants (the workers) are looked up each time. ``database``: the
    PostgreSQL postmaster the nodes share, whose processes (and their CPU) are
    part of the server's, as SQLite's work is inside the workers."""

    master: int
    other_masters: tuple[int, ...] = ()
    database: int | None = None

    @property
    def masters(self) -> tuple[int, ...]:
        return (self.master, *self.other_masters)

    def appliance_pids(self) -> list[int]:
        return [pid for m in self.masters for pid in (m, *procfs.descendants(m))]

    def database_pids(self) -> list[int]:
        return [] if self.database is None else [self.database, *procfs.descendants(self.database)]

    def pids(self) -> list[int]:
        return self.appliance_pids() + self.database_pids()

    def role(self, pid: int) -> str:
        if pid in self.database_pids():
            return "postgres"
        return "worker" if procfs.is_worker(pid) else "master" if pid in self.masters else "child"

    def cpu(self) -> dict[int, int]:
        return {pid: t for pid in self.pids() if (t := procfs.cpu_ticks(pid)) is not None}

    def rss(self) -> dict[int, int]:
        """The appliance's processes only: PostgreSQL's share its buffers (and has its own budget)."""
        return {pid: r for pid in self.appliance_pids() if (r := procfs.rss_kib(pid)) is not None}

    def connections(self, ports: tuple[int, ...]) -> dict[int, int]:
        """Established client connections each process holds (how the kernel spread them)."""
        established = set().union(*(procfs.established_inodes(port) for port in ports))
        return {pid: sum(1 for i in procfs.socket_inodes(pid) if i in established) for pid in self.appliance_pids()}


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

    def __init__(self, server: ServerProcesses | None, ports: tuple[int, ...], seconds: float):
        self.server = server
        self.ports = ports
        self.seconds = seconds
        self.before: dict[int, int] = {}
        self.database_before: set[int] = set()
        self.machine_before = (0, 0)
        self.connections: dict[int, int] = {}
        self.use: ServerUse | None = None

    def start(self) -> None:
        if self.server is not None:
            self.before, self.machine_before = self.server.cpu(), procfs.machine_ticks()
            self.database_before = set(self.server.database_pids())
            # Connections are counted while the clients still hold them.
            timer = threading.Timer(0.9 * self.seconds, self._count_connections)
            timer.daemon = True
            timer.start()

    def _count_connections(self) -> None:
        if self.server is not None:
            self.connections = self.server.connections(self.ports)

    def stop(self) -> None:
        if self.server is None:
            return
        after, rss, conns = self.server.cpu(), self.server.rss(), self.connections
        busy, total = (now - then for now, then in zip(procfs.machine_ticks(), self.machine_before))
        cpu = {p: procfs.ticks_to_ms(t - self.before.get(p, 0)) for p, t in after.items()}
        note = None
        # PostgreSQL starts and ends helpers (autovacuum workers) by itself: only the appliance's must stay.
        database = self.database_before | set(self.server.database_pids())
        if after.keys() - database != self.before.keys() - database:
            note = (f"server processes changed during the load (before {sorted(self.before)}, "
                    f"after {sorted(after)}): a process ended or restarted; CPU per enrollment not computed")
        self.use = ServerUse(cpu, {p: k / 1024 for p, k in rss.items()}, conns,
                             {p: self.server.role(p) for p in {*after, *rss, *conns}}, busy / max(total, 1), note)
