"""The benchmark's load generator (bench/loadgen.py): it must count what the
server really answered, over keep-alive and new connections alike, or every
figure the benchmark prints is wrong. No timing is asserted here."""
from __future__ import annotations

import base64
import ssl

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import defer
from twisted.trial import unittest

from bench import loadgen
from estappliance.client import make_csr, new_key

from . import support


class ParseAnswerTests(unittest.TestCase):
    def test_incomplete_head_or_body_waits_for_more(self):
        self.assertIsNone(loadgen.parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n"))
        self.assertIsNone(loadgen.parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"))

    def test_a_whole_answer_with_its_connection_header(self):
        self.assertEqual(loadgen.parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabcd"),
                         (200, b"abcd", True))
        self.assertEqual(loadgen.parse_answer(b"HTTP/1.1 401 No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                         (401, b"", False))

    def test_what_is_not_http_is_refused(self):
        self.assertRaises(loadgen.ProtocolError, loadgen.parse_answer, b"SSH-2.0-x\r\n\r\n")
        self.assertRaises(loadgen.ProtocolError, loadgen.parse_answer, b"HTTP/1.1 200 OK\r\n\r\n")


class LoadAgainstServerTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(self)
        yield self.server.add_client("bench", "pw")
        auth = "Basic " + base64.b64encode(b"bench:pw").decode()
        self.requests = []
        for i in range(4):
            body = base64.b64encode(make_csr(new_key(), f"CN=load-{i}").public_bytes(Encoding.DER))
            self.requests.append(
                (f"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
                 f"Content-Type: application/pkcs10\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)

    def load(self, new_connection: bool, requests=None):
        context = ssl.create_default_context(cadata=self.server.ca_cert.public_bytes(Encoding.PEM).decode())
        results = [loadgen.ClientResult() for _ in range(3)]
        ready = []
        started, finished = loadgen.run_clients(
            [context] * 3, results, requests or self.requests, self.server.port, new_connection, 10.0,
            lambda status, body: status == 200, lambda: ready.append(1), 0.5)
        return results, ready, started, finished

    @defer.inlineCallbacks
    def check_counts(self, new_connection: bool):
        before = yield self.server.count_certificates()
        results, ready, started, finished = yield support.in_thread(self.load, new_connection)
        after = yield self.server.count_certificates()
        self.assertEqual(ready, [1])
        self.assertEqual([r.errors for r in results], [0, 0, 0], [r.first_error for r in results])
        self.assertTrue(all(r.ok for r in results))  # nobody starved
        self.assertEqual(sum(r.ok for r in results), after - before)  # one count per certificate issued
        for r in results:
            self.assertEqual(len(r.latencies), r.ok)
            self.assertTrue(all(started <= t <= finished for t in r.finished))

    def test_keep_alive_counts_every_certificate_issued(self):
        return self.check_counts(new_connection=False)

    def test_new_connection_counts_every_certificate_issued(self):
        """Each request says Connection: close; the answer followed by the
        server's close is a whole answer (this once counted as an error)."""
        self.requests = [r.replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\r\nConnection: close\r\n")
                         for r in self.requests]
        return self.check_counts(new_connection=True)

    @defer.inlineCallbacks
    def test_refusals_are_errors_with_the_servers_reason(self):
        wrong = [r.replace(b"Authorization: Basic ", b"Authorization: Basic x") for r in self.requests]
        results, _, _, _ = yield support.in_thread(self.load, False, wrong)
        self.assertEqual(sum(r.ok for r in results), 0)
        self.assertTrue(all(r.errors for r in results))
        self.assertIn("HTTP 401", results[0].first_error)
