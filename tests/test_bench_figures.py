"""The benchmark's figures (bench/figures.py, report.py, suite.py): from a
known list of latencies and CPU times, the enrollments/s, percentiles, CPU
per enrollment and the suite's verdicts it prints must come out right."""
from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

from twisted.trial import unittest

from bench import figures, report, suite
from bench.database import DatabaseUse
from bench.options import check_args, parser
from bench.target import BenchError, Target
from bench.load import WorkerResult
from bench.loadgen import ClientResult
from bench.rawsign import RawSign
from bench.watch import ServerUse

RAW = RawSign(one=5000.0, parallel=8000.0, processes=2)


def client(latencies_ms: list[float], start: float = 10.0) -> ClientResult:
    return ClientResult(ok=len(latencies_ms), latencies=[ms / 1000 for ms in latencies_ms],
                        finished=[start + i * 0.01 for i in range(len(latencies_ms))])


class FiguresTests(unittest.TestCase):
    def setUp(self):
        # 100 enrollments of 1..100 ms over two load processes and three
        # clients, one of which got nothing; the load ran from 10.0 to 12.0.
        self.workers = [
            WorkerResult([client([float(ms) for ms in range(1, 61)]), ClientResult(errors=2, first_error="HTTP 503")],
                         started=10.0, finished=11.9, cpu_seconds=0.15),
            WorkerResult([client([float(ms) for ms in range(61, 101)])], started=10.1, finished=12.0,
                         cpu_seconds=0.05),
        ]
        self.use = ServerUse(cpu_ms={1: 0.0, 2: 150.0, 3: 250.0}, rss_mib={1: 60.0, 2: 72.5, 3: 70.0},
                             connections={1: 0, 2: 32, 3: 32}, roles={1: "master", 2: "worker", 3: "worker"},
                             machine_busy=0.5)

    def test_rate_and_nearest_rank_percentiles(self):
        f = figures.figures(self.workers, RAW, self.use, cpus=2)
        self.assertEqual((f.enrollments, f.seconds, f.rate), (100, 2.0, 50.0))
        self.assertEqual((f.p50, f.p90, f.p99, f.max_ms), (50.0, 90.0, 99.0, 100.0))
        self.assertEqual((f.errors, f.first_error, f.starved), (2, "HTTP 503", 1))

    def test_percentile_of_a_short_list(self):
        self.assertEqual([figures.percentile([3.0, 7.0, 9.0], p) for p in (1, 34, 50, 67, 99, 100)],
                         [3.0, 7.0, 7.0, 9.0, 9.0, 9.0])

    def test_server_cpu_per_enrollment_and_machine_shares(self):
        f = figures.figures(self.workers, RAW, self.use, cpus=2)
        self.assertEqual((f.cpu_ms_per_enrollment, f.rss_max_mib, f.load_cpu_ms), (4.0, 72.5, 200.0))
        # 2 s on 2 cores = 4000 CPU ms: the server used 400, the load 200.
        self.assertAlmostEqual(f.shares.server, 0.1)
        self.assertAlmostEqual(f.shares.load, 0.05)
        self.assertAlmostEqual(f.shares.others, 0.35)

    def test_no_cpu_per_enrollment_when_the_processes_changed(self):
        self.use.note = "a worker restarted"
        self.assertIsNone(figures.figures(self.workers, RAW, self.use, cpus=2).cpu_ms_per_enrollment)

    def test_nothing_measured_without_a_server_pid_or_an_enrollment(self):
        f = figures.figures([WorkerResult([ClientResult(errors=1)], 1.0, 2.0, 0.0)], RAW, None)
        self.assertEqual((f.enrollments, f.rate, f.p50, f.cpu_ms_per_enrollment, f.shares), (0, 0.0, None, None, None))

    def test_latency_log_rows_in_the_order_they_finished(self):
        rows = report.latency_rows(self.workers)
        self.assertEqual(len(rows), 100)
        self.assertEqual(rows[:2], [(0.0, 1.0, 0, 0), (0.0, 61.0, 1, 0)])
        self.assertEqual([r[0] for r in rows], sorted(r[0] for r in rows))


class SuiteVerdictTests(unittest.TestCase):
    def figures(self, rate: float, p99: float, cpu_ms: float = 1.5, prefill_seconds: float | None = None,
                starved: int = 0) -> figures.Figures:
        return figures.Figures(enrollments=int(rate * 5), seconds=5.0, rate=rate, p50=p99 / 2, p90=p99, p99=p99,
                               max_ms=p99, errors=0, first_error=None, starved=starved, raw=RAW, load_cpu_ms=0.0,
                               cpu_ms_per_enrollment=cpu_ms, rss_max_mib=80.0, shares=None,
                               prefill_seconds=prefill_seconds)

    @staticmethod
    def shown(checks: list[suite.Check]) -> list[tuple[str, str, str, bool | None]]:
        return [(c.figure, c.shown, c.target, c.met) for c in checks]

    def test_scenario_one_targets(self):
        verdicts = [(c.figure, c.shown, c.met) for c in suite.checks_basic(self.figures(1200, 40.0), {})]
        self.assertEqual(verdicts, [("enroll/s", "1200", True), ("p99 ms", "40.0", True),
                                    ("starved clients", "0", True)])
        self.assertEqual([c.met for c in suite.checks_basic(self.figures(900, 60.0), {})], [False, False, True])

    def test_prefilled_store_within_ten_percent_of_scenario_one(self):
        done = {1: self.figures(1000, 40.0)}
        self.assertTrue(suite.checks_prefilled(self.figures(905, 45.0), done)[0].met)
        self.assertFalse(suite.checks_prefilled(self.figures(895, 45.0), done)[0].met)

    def test_rsa_against_one_session_raw_rate(self):
        checks = suite.checks_rsa(self.figures(4600, 30.0), {})
        self.assertEqual([(c.shown, c.met) for c in checks], [("4600", True), ("0.92", None), ("0.57", None)])

    # Issue 13: (7) one node on PostgreSQL, (8) two nodes, (9) PostgreSQL with 1M certificates.

    def test_postgres_one_node_against_eight_tenths_of_sqlite(self):
        done = {1: self.figures(1000, 40.0, cpu_ms=2.0)}
        self.assertEqual(self.shown(suite.checks_postgres(self.figures(850, 45.0, cpu_ms=2.2), done)), [
            ("enroll/s", "850", ">= 0.8 x 1000 (1) = 800", True),
            ("x SQLite (1)", "0.85", "(reported; (1) 1000/s)", None),
            ("p99 ms", "45.0", "(reported; (1) had 40.0)", None),
            ("CPU/enroll x (1)", "1.10", "(reported; (1) 2.00 ms)", None)])
        self.assertFalse(suite.checks_postgres(self.figures(790, 45.0), done)[0].met)

    def test_two_nodes_no_worse_than_one(self):
        done = {1: self.figures(1000, 40.0), 7: self.figures(900, 50.0, cpu_ms=2.0)}
        checks = suite.checks_two_nodes(self.figures(900, 70.0, cpu_ms=2.5), done)
        self.assertEqual(self.shown(checks), [
            ("enroll/s", "900", ">= 1 x 900 (7) = 900", True),
            ("x SQLite (1)", "0.90", "(reported; (1) 1000/s)", None),
            ("p99 ms", "70.0", "(reported; (7) had 50.0)", None),
            ("starved clients", "0", "0", True),
            ("CPU/enroll x (7)", "1.25", "(reported; (7) 2.00 ms)", None)])
        self.assertEqual([c.met for c in suite.checks_two_nodes(self.figures(899, 70.0, starved=3), done)],
                         [False, None, None, False, None])

    def test_postgres_prefilled_within_ten_percent_of_empty_with_the_prefill_time(self):
        done = {1: self.figures(1000, 40.0), 7: self.figures(900, 50.0)}
        checks = suite.checks_postgres_prefilled(self.figures(820, 55.0, prefill_seconds=93.25), done)
        self.assertEqual(self.shown(checks)[0], ("enroll/s", "820", ">= 0.9 x 900 (7) = 810", True))
        self.assertEqual(self.shown(checks)[-1], ("prefill s", "93.2", "(reported)", None))
        self.assertFalse(suite.checks_postgres_prefilled(self.figures(800, 55.0), done)[0].met)

    def test_postgres_checks_say_when_the_scenario_to_compare_with_did_not_run(self):
        checks = suite.checks_two_nodes(self.figures(900, 70.0), {})
        self.assertEqual(self.shown(checks)[:2], [("enroll/s", "900", ">= 1 x (7) (did not run)", None),
                                                  ("x SQLite (1)", "n/a", "(1 did not run)", None)])

    def test_the_database_line_counts_commits_per_enrollment(self):
        f = dataclasses.replace(self.figures(100, 40.0), database=DatabaseUse(write_transactions=50,
                                                                               wal_bytes=512 * 1024))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            report.print_database_use(f)
        self.assertEqual(out.getvalue(), "database during the load: 50 write transactions (0.10 per enrollment), "
                                         "0.5 MiB of WAL (1.0 KiB per enrollment)\n")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            report.print_database_use(self.figures(100, 40.0))  # SQLite: no line
        self.assertEqual(out.getvalue(), "")


class ScenarioChoiceTests(unittest.TestCase):
    def args(self, *argv: str):
        return parser().parse_args(["--suite", *argv])

    def test_every_scenario_by_default_and_those_named_in_their_order(self):
        self.assertEqual([s.number for s in suite.chosen_scenarios(self.args())], list(range(1, 10)))
        self.assertEqual([s.number for s in suite.chosen_scenarios(self.args("--scenarios", "9,1,7"))], [9, 1, 7])

    def test_an_unknown_scenario_is_refused(self):
        with self.assertRaises(BenchError) as caught:
            suite.chosen_scenarios(self.args("--scenarios", "1,12"))
        self.assertIn("no scenario 12", str(caught.exception))

    def test_the_postgres_scenarios_command_lines(self):
        args = self.args("--suite-prefill", "5000", "--workers", "4")
        lines = {s.number: suite.scenario_argv(args, s) for s in suite.suite_scenarios(args)}
        self.assertEqual(lines[7][-2:], ["--store", "postgresql"])
        # two nodes on the same cores: half the workers each, as many processes as (7)
        self.assertEqual(lines[8][-6:], ["--store", "postgresql", "--nodes", "2", "--workers", "2"])
        self.assertEqual(parser().parse_args(lines[8]).workers, 2)
        self.assertEqual(lines[9][-4:], ["--store", "postgresql", "--prefill", "5000"])
        for number in (7, 8, 9):
            check_args(parser().parse_args(lines[number]))  # each is a valid single run

    def test_several_nodes_need_postgres_and_a_load_process_each(self):
        for argv, reason in ((["--nodes", "2"], "needs --store postgresql"),
                             (["--store", "postgresql", "--nodes", "3", "--processes", "2"], "at least as many"),
                             (["--store", "postgresql", "--state", "/tmp/x"], "lives for one run")):
            with self.assertRaises(BenchError) as caught:
                check_args(parser().parse_args(argv))
            self.assertIn(reason, str(caught.exception))


class NodesTests(unittest.TestCase):
    def test_each_node_is_a_target_on_its_own_port(self):
        one = Target(config=Path("/x.toml"), port=1001, ca_file="ca.pem", key_type="ec-p256", user="bench",
                     password="pw", workers=2)
        self.assertEqual(one.nodes(), [one])
        two = dataclasses.replace(one, node_ports=(1001, 1002))
        self.assertEqual([(t.port, t.node_ports, t.user) for t in two.nodes()],
                         [(1001, (), "bench"), (1002, (), "bench")])
