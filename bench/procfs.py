"""Reading Linux's /proc: a process's CPU time, memory, parent, start time
and sockets; the machine's busy time; established TCP connections.
The parsers take the file's text, so the tests can feed them known lines."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ESTABLISHED = "01"  # st in /proc/net/tcp


def stat_fields(text: str) -> list[str]:
    """The fields of a /proc/<pid>/stat line after the command name (field 3
    first): the name is in parentheses and may itself hold spaces and ')'."""
    return text.rpartition(")")[2].split()


def cpu_ticks_of(fields: list[str]) -> int:
    """utime + stime (fields 14 and 15), in clock ticks."""
    return int(fields[11]) + int(fields[12])


def ticks_to_ms(ticks: float) -> float:
    return ticks * 1000 / CLOCK_TICKS


def machine_ticks_of(text: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat's first line
    (user nice system idle iowait irq softirq steal); idle and iowait are not busy."""
    fields = [int(x) for x in text.split("\n", 1)[0].split()[1:9]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def rss_kib_of(status: str) -> int | None:
    """VmRSS of a /proc/<pid>/status text, in KiB."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def established_inodes_of(tcp: str, port: int) -> set[str]:
    """Socket inodes of the established connections to local ``port`` in a /proc/net/tcp text."""
    inodes = set()
    for line in tcp.splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rpartition(":")[2], 16) == port and fields[3] == ESTABLISHED:
            inodes.add(fields[9])
    return inodes


# -- the live files ----------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    try:
        return stat_fields(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return None


def cpu_ticks(pid: int) -> int | None:
    fields = proc_stat(pid)
    return None if fields is None else cpu_ticks_of(fields)


def start_time(pid: int) -> str | None:
    """When the process started (clock ticks since boot): with the pid, it names one process."""
    fields = proc_stat(pid)
    return None if fields is None else fields[19]


def machine_ticks() -> tuple[int, int]:
    return machine_ticks_of(Path("/proc/stat").read_text())


def rss_kib(pid: int) -> int | None:
    try:
        return rss_kib_of(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None


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
        return b"estappliance.worker_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def established_inodes(port: int) -> set[str]:
    return established_inodes_of(Path("/proc/net/tcp").read_text(), port)


def socket_inodes(pid: int) -> list[str]:
    inodes = []
    with contextlib.suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(fd.path)
                if link.startswith("socket:["):
                    inodes.append(link[8:-1])
    return inodes
