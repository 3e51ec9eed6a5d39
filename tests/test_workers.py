"""Several worker processes behind one port (``[server] workers``), with the
real ``twistd est``: shared serial space, shared Digest nonces, a worker's
death neither seen by clients nor final, and a clean stop of them all."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from cryptography import x509
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import BasicAuth, DigestAuth, EstClient, make_csr, new_key

from . import support
from .test_e2e_interop import USER, EstServer, require_tools


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wait_for(predicate, timeout: float = 15.0, step: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class WorkerTests(unittest.TestCase):
    timeout = 120

    def setUp(self):
        require_tools()
        self.server = EstServer(Path(self.mktemp()), workers=2, auth=("basic", "digest", "cert"))
        self.addCleanup(self.server.shutdown)
        return support.in_thread(self._start)

    def _start(self):
        self.server.prepare()
        self.server.start()
        self.anchor = x509.load_pem_x509_certificates(self.server.ca_pem.read_bytes())
        assert wait_for(lambda: len(children(self.server.proc.pid)) == 2), self.server.log()

    def enroll(self, cn: str, auth=None) -> x509.Certificate:
        with EstClient(self.server.url, anchors=self.anchor,
                       auth=auth or BasicAuth(USER, self.server.password)) as client:
            return client.simpleenroll(make_csr(new_key(), f"CN={cn}"))

    @defer.inlineCallbacks
    def test_two_workers_issue_unique_serials(self):
        certs = yield defer.gatherResults([support.in_thread(self.enroll, f"w-{i}") for i in range(40)],
                                          consumeErrors=True)
        self.assertEqual(len({c.serial_number for c in certs}), 40)
        listing = yield support.in_thread(self.server.estctl, "cert", "list")
        listed = {int(line.split("\t")[0], 16) for line in listing.stdout.decode().splitlines()}
        self.assertTrue({c.serial_number for c in certs} <= listed)
        self.assertEqual(len(children(self.server.proc.pid)), 2)

    @defer.inlineCallbacks
    def test_digest_nonce_from_one_worker_accepted_by_the_other(self):
        """Each enrollment here opens new connections, which the kernel spreads
        over both workers; the nonce a challenge carried must be good anywhere."""
        def answer_elsewhere(i):
            auth = DigestAuth(USER, self.server.password)
            with EstClient(self.server.url, anchors=self.anchor, auth=auth) as first:
                first._request("POST", "simpleenroll", b"", "application/pkcs10")  # the 401 challenge
            with EstClient(self.server.url, anchors=self.anchor, auth=auth) as second:
                return second.simpleenroll(make_csr(new_key(), f"CN=digest-{i}"))
        certs = yield defer.gatherResults([support.in_thread(answer_elsewhere, i) for i in range(12)],
                                          consumeErrors=True)
        self.assertEqual(len(certs), 12)

    @defer.inlineCallbacks
    def test_a_dead_worker_is_replaced_and_clients_are_served_meanwhile(self):
        before = children(self.server.proc.pid)
        os.kill(before[0], signal.SIGKILL)
        certs = yield defer.gatherResults([support.in_thread(self.enroll, f"during-{i}") for i in range(10)],
                                          consumeErrors=True)
        self.assertEqual(len(certs), 10)
        after = yield support.in_thread(
            wait_for, lambda: (lambda c: c if len(c) == 2 and before[0] not in c else None)(
                children(self.server.proc.pid)))
        self.assertTrue(after, self.server.log())
        self.assertIn("restarting", self.server.log())
        cert = yield support.in_thread(self.enroll, "after-restart")
        self.assertEqual(cert.subject.rfc4514_string(), "CN=after-restart")

    @defer.inlineCallbacks
    def test_sigterm_stops_master_and_workers(self):
        workers = children(self.server.proc.pid)
        yield support.in_thread(self.server.stop)

        def gone():
            return all(not Path(f"/proc/{pid}").exists() for pid in workers)
        ok = yield support.in_thread(wait_for, gone)
        self.assertTrue(ok)

    @defer.inlineCallbacks
    def test_workers_stop_when_the_master_is_killed(self):
        workers = children(self.server.proc.pid)
        self.server.proc.kill()
        self.server.proc.wait()

        def gone():
            return all(not Path(f"/proc/{pid}").exists() or
                       "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in workers)
        ok = yield support.in_thread(wait_for, gone)
        self.assertTrue(ok, "orphaned workers kept running")
