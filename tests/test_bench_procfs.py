"""The benchmark's /proc readers (bench/procfs.py): the server's CPU ms,
memory, machine load and connections all come from these parsers."""
from __future__ import annotations

import os

from twisted.trial import unittest

from bench import procfs


def stat_line(pid: int, name: str, utime: int, stime: int, ppid: int = 1, start: int = 4242) -> str:
    """A /proc/<pid>/stat line (fields 1..52) with the given CPU times."""
    fields = ["0"] * 52
    fields[0], fields[1], fields[2], fields[3] = str(pid), f"({name})", "S", str(ppid)
    fields[13], fields[14], fields[21] = str(utime), str(stime), str(start)  # fields 14, 15, 22
    return " ".join(fields) + "\n"


class StatTests(unittest.TestCase):
    def test_cpu_ms_is_utime_plus_stime_in_clock_ticks(self):
        fields = procfs.stat_fields(stat_line(77, "twistd", utime=150, stime=50))
        self.assertEqual(procfs.cpu_ticks_of(fields), 200)
        self.assertEqual(procfs.ticks_to_ms(200), 200 * 1000 / os.sysconf("SC_CLK_TCK"))

    def test_a_command_name_with_spaces_and_parentheses(self):
        fields = procfs.stat_fields(stat_line(77, "odd) (name x", utime=3, stime=4, ppid=12, start=999))
        self.assertEqual((fields[1], procfs.cpu_ticks_of(fields), fields[19]), ("12", 7, "999"))

    def test_this_process_is_read_live(self):
        fields = procfs.proc_stat(os.getpid())
        self.assertEqual(int(fields[1]), os.getppid())
        self.assertEqual(procfs.start_time(os.getpid()), fields[19])
        self.assertIsNone(procfs.cpu_ticks(2**22 + 1))  # above pid_max: no such process


class MachineTests(unittest.TestCase):
    def test_busy_leaves_out_idle_and_iowait(self):
        text = "cpu  10 20 30 400 50 6 7 8 0 0\ncpu0 5 10 15 200 25 3 3 4 0 0\n"
        self.assertEqual(procfs.machine_ticks_of(text), (81, 531))


class MemoryAndSocketTests(unittest.TestCase):
    def test_rss_in_kib(self):
        self.assertEqual(procfs.rss_kib_of("Name:\ttwistd\nVmPeak:\t  90000 kB\nVmRSS:\t   73216 kB\n"), 73216)
        self.assertIsNone(procfs.rss_kib_of("Name:\tkthreadd\n"))  # kernel threads have none

    def test_established_connections_to_one_port(self):
        tcp = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
               "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 111 1\n"
               "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  0 0 222 1\n"
               "   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  0 0 333 1\n"
               "   3: 0100007F:1F90 0100007F:C351 06 00000000:00000000 00:00000000 00000000  0 0 0 1\n")
        self.assertEqual(procfs.established_inodes_of(tcp, 0x1F90), {"222"})  # not the listener, the client side
