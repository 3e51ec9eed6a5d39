"""The benchmark's figures (bench/figures.py, report.py, suite.py): from a
known list of latencies and CPU times, the enrollments/s, percentiles, CPU
per enrollment and the suite's verdicts it prints must come out right."""
from __future__ import annotations

from twisted.trial import unittest

from bench import figures, report, suite
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
    def figures(self, rate: float, p99: float) -> figures.Figures:
        return figures.Figures(enrollments=int(rate * 5), seconds=5.0, rate=rate, p50=p99 / 2, p90=p99, p99=p99,
                               max_ms=p99, errors=0, first_error=None, starved=0, raw=RAW, load_cpu_ms=0.0,
                               cpu_ms_per_enrollment=1.5, rss_max_mib=80.0, shares=None)

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
