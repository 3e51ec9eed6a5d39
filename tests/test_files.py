"""estappliance.files: the one file writer, all or nothing."""
from __future__ import annotations

import os
import subprocess
import sys
import stat
from pathlib import Path
from unittest import mock

from twisted.trial import unittest

from estappliance.files import exclusive, write_atomically


class WriteAtomicallyTests(unittest.TestCase):
    def setUp(self):
        self.dir = Path(self.mktemp())

    def test_creates_parents_writes_bytes_and_mode(self):
        target = self.dir / "a" / "b" / "key.pem"
        write_atomically(target, b"secret", 0o600)
        self.assertEqual(target.read_bytes(), b"secret")
        self.assertEqual(stat.S_IMODE(target.stat().st_mode), 0o600)

    def test_replaces_and_leaves_no_temporary_file(self):
        target = self.dir / "ca.pem"
        write_atomically(target, b"old")
        write_atomically(target, b"new")
        self.assertEqual(target.read_bytes(), b"new")
        self.assertEqual(os.listdir(self.dir), ["ca.pem"])

    def test_a_failed_write_keeps_the_old_file(self):
        target = self.dir / "ca.pem"
        write_atomically(target, b"old")
        with mock.patch("estappliance.files.os.fsync", side_effect=OSError(28, "No space left on device")):
            self.assertRaises(OSError, write_atomically, target, b"new")
        self.assertEqual(target.read_bytes(), b"old")
        self.assertEqual(os.listdir(self.dir), ["ca.pem"])


class ExclusiveTests(unittest.TestCase):
    def setUp(self):
        self.lock = Path(self.mktemp()) / "ca" / ".ca-files.lock"

    def test_a_second_holder_without_waiting_is_told_so_and_gets_it_after(self):
        with exclusive(self.lock) as first:
            self.assertTrue(first)
            with exclusive(self.lock, wait=False) as second:
                self.assertFalse(second)
        with exclusive(self.lock, wait=False) as again:
            self.assertTrue(again)

    def test_a_holder_killed_leaves_no_stale_lock(self):
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys, time; from pathlib import Path; from estappliance.files import exclusive\n"
            f"with exclusive(Path({str(self.lock)!r})):\n"
            "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
        self.addCleanup(holder.stdout.close)
        self.addCleanup(holder.wait)
        self.addCleanup(holder.kill)
        self.assertEqual(holder.stdout.readline().strip(), "held")
        with exclusive(self.lock, wait=False) as got:
            self.assertFalse(got)
        holder.kill()
        holder.wait()
        with exclusive(self.lock, wait=False) as got:
            self.assertTrue(got)
