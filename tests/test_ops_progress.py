"""Long work shows progress on a terminal and nothing when piped:
``estctl backup``/``restore`` and ``est sync`` run under a pseudo-terminal
(pty) and with pipes, against a real ``twistd est``."""
from __future__ import annotations

import contextlib
import io
import os
import pty
import select
import subprocess
from pathlib import Path

from twisted.trial import unittest

from estappliance.progress import Progress

from . import support
from .test_e2e_interop import BIN, USER, EstServer, require_tools


def run_on_pty(argv: list[str], env: dict, cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """Blocking: run with stdout and stderr on a pseudo-terminal; (exit status, all it wrote)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, env={**env, "COLUMNS": "100", "TERM": "xterm"}, cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout), out.decode(errors="replace")


class ProgressUnitTests(unittest.TestCase):
    def test_quiet_unless_a_terminal(self):
        stream = io.StringIO()  # not a TTY
        with Progress(stream) as p:
            t = p.task("work", total=3)
            for _ in range(3):
                t.advance()
        self.assertEqual(stream.getvalue(), "")

    def test_drawn_when_enabled(self):
        stream = io.StringIO()
        with Progress(stream, enabled=True) as p:
            t = p.task("counting things", total=2)
            t.advance(2)
        self.assertIn("counting things", stream.getvalue())
        self.assertIn("2/2", stream.getvalue())


    def test_piped_standard_output_stays_where_it_goes(self):
        """make bench | tee: the figures printed while a bar is drawn reach the pipe."""
        bars, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), Progress(bars, enabled=True) as p:
            p.task("scenarios", total=1)
            print("enrollments: 42")
        self.assertEqual(out.getvalue(), "enrollments: 42\n")
        self.assertNotIn("enrollments", bars.getvalue())


class TerminalTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        require_tools()
        self.server = EstServer(Path(self.mktemp()))
        self.addCleanup(self.server.shutdown)

    def test_estctl_backup_and_restore(self):
        def run():
            s = self.server
            s.prepare()
            estctl = [str(BIN / "estctl"), "-c", str(s.config)]
            code, out = run_on_pty(estctl + ["backup", str(s.base / "b1")], s.env, s.base)
            self.assertEqual(code, 0, out)
            self.assertIn("copying the store", out)
            self.assertIn("copying files", out)
            self.assertIn("\x1b[", out)  # drawn with terminal control sequences
            piped = s.estctl("backup", s.base / "b2")
            self.assertEqual(piped.stderr, b"")
            self.assertNotIn(b"copying", piped.stdout)
            code, out = run_on_pty(estctl + ["restore", "--force", str(s.base / "b1")], s.env, s.base)
            self.assertEqual(code, 0, out)
            self.assertIn("checking the backup", out)
            piped = s.estctl("restore", "--force", s.base / "b2")
            self.assertEqual(piped.stderr, b"")
        return support.in_thread(run)

    def test_est_sync(self):
        def run():
            s = self.server
            s.prepare()
            s.start()
            common = ["--server", s.url, "--anchor", str(s.ca_pem)]
            est = str(BIN / "est")
            # An RSA certificate: symmetric keys are encrypted to it (keyEncipherment).
            s.run(est, "enroll", *common, "--user", USER, "--password-file", s.password_file, "--subject",
                  "CN=syncing", "--key-type", "rsa2048", "--key-out", s.base / "dev.key", "-o", s.base / "dev.pem")
            sync = [est, "sync", *common, "--cert", str(s.base / "dev.pem"), "--key", str(s.base / "dev.key")]
            s.estctl("publish", "symmetric-key", "--client", USER, "--key-id", "k-1")
            code, out = run_on_pty(sync + ["--state", str(s.base / "d1")], s.env, s.base)
            self.assertEqual(code, 0, out)
            self.assertIn("PAL round 1", out)
            self.assertIn("1/1", out)
            self.assertIn("sync: 1 package(s) handled", out)
            s.estctl("publish", "symmetric-key", "--client", USER, "--key-id", "k-2")
            piped = s.run(*sync, "--state", s.base / "d2")
            self.assertIn(b"sync: 1 package(s) handled", piped.stdout)
            self.assertNotIn(b"PAL round", piped.stderr + piped.stdout)
            self.assertNotIn(b"\x1b[", piped.stderr + piped.stdout)
        return support.in_thread(run)
