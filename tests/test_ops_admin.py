"""The admin listener of a real ``twistd est`` with two workers: the master
answers /healthz, sums its workers' probes in /readyz (503 within seconds of
the token going away, 200 again once it is back) and their metrics in
/metrics (prometheus_client's multiprocess mode)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cryptography import x509
from twisted.trial import unittest

from estappliance.client import BasicAuth, EstClient, make_csr, new_key

from . import support
from .ops_support import OperatedServer, metric_value
from .test_e2e_interop import USER, require_tools
from .test_workers import children, wait_for

HEALTH = "\n[health]\ncache_seconds = 0.5\ntimeout_seconds = 1\n[metrics]\nstore_cache_seconds = 0.1\n"


class AdminListenerTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        require_tools()
        self.server = OperatedServer(Path(self.mktemp()), extra=HEALTH, workers=2)
        self.addCleanup(self.server.shutdown)
        return support.in_thread(self._start)

    def _start(self):
        self.server.prepare()
        self.server.start()
        assert wait_for(lambda: self.server.log().count(" ready") >= 2), self.server.log()
        self.anchor = x509.load_pem_x509_certificates(self.server.ca_pem.read_bytes())

    def enroll(self, cn: str) -> x509.Certificate:
        with EstClient(self.server.url, anchors=self.anchor, auth=BasicAuth(USER, self.server.password)) as c:
            return c.simpleenroll(make_csr(new_key(), f"CN={cn}"))

    def test_master_readyz_follows_the_workers_token(self):
        def run():
            status, ctype, body = self.server.admin_get("/healthz")
            self.assertEqual((status, ctype, json.loads(body)), (200, "application/json", {"status": "ok"}))
            body = self.server.wait_ready()
            self.assertEqual(body["checks"], {"worker 0": "ok", "worker 1": "ok"})
            tokens = self.server.state / "softhsm" / "tokens"
            hidden = self.server.state / "softhsm" / "tokens.away"
            os.rename(tokens, hidden)
            try:
                started = time.monotonic()
                answer = wait_for(lambda: (lambda s: s[0] == 503 and s)(self.server.admin_get("/readyz")), 10)
                self.assertTrue(answer, "the master's /readyz stayed 200 with the token gone")
                self.assertLess(time.monotonic() - started, 5)
                checks = json.loads(answer[2])["checks"]
                self.assertIn("token: token unavailable", checks.values())
                # Both workers see it; the EST listener's own /readyz (a worker's probe) says the same.
                both = wait_for(lambda: list(json.loads(self.server.admin_get("/readyz")[2])["checks"].values())
                                == ["token: token unavailable"] * 2, 5)
                self.assertTrue(both, self.server.admin_get("/readyz"))
                self.assertEqual(self.server_raw("/readyz")[0], 503)
            finally:
                os.rename(hidden, tokens)
            self.server.wait_ready(15)
        return support.in_thread(run)

    def server_raw(self, path: str) -> tuple[int, bytes]:
        from estappliance.client import HttpsConnection
        conn = HttpsConnection("127.0.0.1", self.server.port, anchors=self.anchor)
        try:
            resp = conn.request("GET", path, {}, b"")
            return resp.status, resp.body
        finally:
            conn.close()

    def test_metrics_sum_over_both_workers(self):
        def scrape() -> str:
            status, ctype, body = self.server.admin_get("/metrics")
            self.assertEqual(status, 200)
            self.assertTrue(ctype.startswith("text/plain; version="), ctype)
            return body.decode()

        def run():
            self.server.wait_ready()
            before = scrape()
            for i in range(12):
                self.enroll(f"m-{i}")
            # Both workers served (the master shares connections evenly) ...
            pids = children(self.server.proc.pid)
            self.assertEqual(len(pids), 2)
            files = os.listdir(self.server.state / "metrics")
            self.assertTrue(all(any(str(pid) in f for f in files) for pid in pids), files)
            # ... and /metrics is their sum.
            text = scrape()

            def grew(name, **labels):
                return (metric_value(text, name, **labels) or 0) - (metric_value(before, name, **labels) or 0)
            self.assertEqual(grew("est_requests_total", operation="simpleenroll", label="default", status="200"), 12)
            self.assertEqual(grew("est_request_duration_seconds_count", operation="simpleenroll"), 12)
            self.assertEqual(grew("est_certificates_issued_total", label="default"), 12)
            self.assertEqual(grew("est_certificates_recorded"), 12)
            self.assertEqual(grew("est_tls_handshakes_total", kind="new"), 12)
            self.assertGreaterEqual(grew("est_token_operations_total", mechanism="ECDSA", outcome="ok"), 12)
            self.assertGreaterEqual(grew("est_token_operation_seconds_count", mechanism="ECDSA"), 12)
            self.assertEqual(grew("est_store_commit_batch_size_sum"), 12)
            self.assertGreater(grew("est_store_commit_seconds_count"), 0)
            self.assertEqual(metric_value(text, "est_certificates_expiring_30d"), 0.0)
            self.assertEqual(metric_value(text, "est_pending_approvals"), 0.0)
            left = metric_value(text, "est_crl_next_update_seconds", kind="crl")
            self.assertTrue(left is not None and 23 * 3600 < left <= 24 * 3600, left)
            self.assertLess(metric_value(text, "est_crl_age_seconds", kind="crl"), 3600)
        return support.in_thread(run)

    def test_metrics_directory_is_emptied_at_start(self):
        def run():
            stale = self.server.state / "metrics" / "counter_999999.db"
            self.server.stop()
            stale.write_bytes(b"left over")
            self.server.start()
            assert wait_for(lambda: self.server.log().count(" ready") >= 4), self.server.log()
            self.assertFalse(stale.exists())
            self.assertEqual(self.server.admin_get("/metrics")[0], 200)
        return support.in_thread(run)


class SingleProcessAdminTests(unittest.TestCase):
    """One process: the admin listener is its own, /readyz its own probe."""

    timeout = 120

    def setUp(self):
        require_tools()
        self.server = OperatedServer(Path(self.mktemp()), extra=HEALTH, workers=1)
        self.addCleanup(self.server.shutdown)

    def test_readyz_and_resumed_tls_handshakes(self):
        import socket
        import ssl

        def handshake(ctx, session=None) -> ssl.SSLSocket:
            conn = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.server.port), timeout=10),
                                   server_hostname="127.0.0.1", session=session)
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            conn.recv(4096)
            return conn

        def run():
            self.server.prepare()
            self.server.start()
            body = self.server.wait_ready()
            self.assertEqual(body["checks"], {"token": "ok", "store": "ok", "ca": "ok", "crl": "ok"})
            before = self.server.admin_get("/metrics")[2].decode()
            ctx = ssl.create_default_context(cafile=str(self.server.ca_pem))
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            first = handshake(ctx)
            second = handshake(ctx, first.session)
            self.assertTrue(second.session_reused)
            first.close()
            second.close()
            after = self.server.admin_get("/metrics")[2].decode()
            for kind in ("new", "resumed"):
                grew = ((metric_value(after, "est_tls_handshakes_total", kind=kind) or 0)
                        - (metric_value(before, "est_tls_handshakes_total", kind=kind) or 0))
                self.assertEqual(grew, 1, kind)
        return support.in_thread(run)
