"""One short real run of the suite machinery (bench/suite.py and all it
uses): a fresh SoftHSM2 token, CA and store made with the project's set-up
code, a prefilled store, twistd with one worker, the raw sign rate through
estappliance.token, the load, the figures, the table and the picture.
Tiny scale; no figure's size is asserted, only that it was measured."""
from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

from twisted.trial import unittest

import bench
from bench import suite
from bench.options import parser
from estappliance.store import Store


class SuiteRunTests(unittest.TestCase):
    timeout = 240

    def run_suite(self, *argv: str, scenarios: tuple[int, ...]) -> tuple[int, str]:
        args = parser().parse_args(["--suite", "--suite-clients", "2", "--processes", "1", "--workers", "1",
                                    "--seconds", "0.5", "--raw-seconds", "0.2", "--suite-prefill", "300", *argv])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = suite.run_suite(args, [s for s in suite.suite_scenarios(args) if s.number in scenarios])
        return status, out.getvalue()

    def test_scenarios_one_and_five_at_tiny_scale(self):
        state = Path(self.mktemp()).resolve() / "state"
        png = Path(self.mktemp()) / "bench.png"
        status, out = self.run_suite("--state", str(state), "--plot", str(png), scenarios=(1, 5))
        self.assertEqual(status, 0, out)
        self.assertRegex(out, r"token raw sign: \d+/s \(ec-p256, 1 process\)")
        enrolled = [int(n) for n in re.findall(r"^enrollments: (\d+) in", out, re.M)]
        self.assertEqual(len(enrolled), 2, out)
        self.assertTrue(all(enrolled), out)
        self.assertIn("clients that got nothing: 0", out)
        self.assertRegex(out, r"server CPU per enrollment: \d+\.\d\d ms")
        self.assertIn("prefill: inserting 300 certificate rows", out)
        self.assertRegex(out, r"\(5\) P-256, keep-alive, Basic, store prefilled \(300\) +enroll/s")
        self.assertEqual(png.read_bytes()[:4], b"\x89PNG")
        # The store holds the imported rows and a certificate for each enrollment counted (and the warm-up's).
        store = Store(state / "est.sqlite")
        self.addCleanup(store.close)
        self.assertGreaterEqual(len(store.certificates.certificates("bench")), 300 + enrolled[1])


class PostgresScenariosTests(unittest.TestCase):
    """Scenarios 7-9 (issue 13) at tiny scale: a real PostgreSQL cluster per
    scenario (bench/postgres.py, durable), one node, two nodes, a prefill."""

    timeout = 400

    def test_one_node_two_nodes_and_a_prefilled_database(self):
        args = parser().parse_args(["--suite", "--suite-clients", "2", "--processes", "2", "--workers", "1",
                                    "--seconds", "1", "--raw-seconds", "0.2", "--suite-prefill", "300"])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = suite.run_suite(args, [s for s in suite.suite_scenarios(args) if s.number in (7, 8, 9)])
        text = out.getvalue()
        self.assertEqual(status, 0, text)
        clusters = re.findall(r"^database: PostgreSQL \(pid \d+, fsync on, synchronous_commit on\), "
                              r"postgresql://est@/est\?host=(\S+)/sock&", text, re.M)
        self.assertEqual(len(clusters), 3, text)
        for cluster in clusters:  # each removed after its scenario
            self.assertFalse(Path(cluster).exists(), cluster)
        enrolled = [int(n) for n in re.findall(r"^enrollments: (\d+) in", text, re.M)]
        self.assertEqual(len(enrolled), 3, text)
        self.assertTrue(all(enrolled), text)
        commits = [int(n) for n in re.findall(r"^database during the load: (\d+) write transactions", text, re.M)]
        self.assertEqual(len(commits), 3, text)
        self.assertTrue(all(commits), text)
        # Scenario 8: two twistd on their own ports; each load process's client is connected to one of them.
        two_nodes = text.split("== (8)")[1].split("== (9)")[0]
        servers = re.findall(r"^server: pid (\d+), 1 worker\(s\), port (\d+)", two_nodes, re.M)
        self.assertEqual(len(servers), 2, two_nodes)
        self.assertNotEqual(servers[0][1], servers[1][1])
        connections = re.search(r"^server connections near the end: (.*)$", two_nodes, re.M)
        self.assertIsNotNone(connections, two_nodes)
        for pid, _ in servers:
            self.assertRegex(connections.group(1), rf"master {pid} [1-9]")
        self.assertIn("clients that got nothing: 0", two_nodes)
        self.assertRegex(text, r"prefill: 300 rows in \d+\.\d s")
        for row in (r"\(7\) as \(1\), one node on PostgreSQL +enroll/s",
                    r"\(8\) as \(7\), two nodes, half the workers each +enroll/s +\d+  >= 1 x \d+ \(7\)",
                    r"\(9\) as \(7\), PostgreSQL prefilled \(300\) +enroll/s +\d+  >= 0.9 x \d+ \(7\)",
                    r"prefill s +\d+\.\d"):
            self.assertRegex(text, row)


class BuiltFromTheProjectsPartsTests(unittest.TestCase):
    def test_no_private_token_or_store_access(self):
        """The token only through estappliance.token, the store only through Store."""
        for path in sorted(Path(bench.__file__).parent.glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for name in names:
                    self.assertNotIn(name.split(".")[0], ("pkcs11", "sqlite3"), path.name)
