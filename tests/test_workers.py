"""Several worker processes behind one port (``[server] workers``), with the
real ``twistd est``: shared serial space, shared Digest nonces, a worker's
death neither seen by clients nor final, and a clean stop of them all."""
from __future__ import annotations

import base64
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
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
        assert wait_for(lambda: self.server.log().count(" ready") >= 2), self.server.log()

    def enroll(self, cn: str, auth=None) -> x509.Certificate:
        with EstClient(self.server.url, anchors=self.anchor,
                       auth=auth or BasicAuth(USER, self.server.password)) as client:
            return client.simpleenroll(make_csr(new_key(), f"CN={cn}"))

    def test_only_the_workers_load_the_pkcs11_library(self):
        """Workers are started fresh (fork and exec): the master never loads
        the PKCS#11 library, so no worker inherits its state."""
        def maps(pid):
            return Path(f"/proc/{pid}/maps").read_text()
        module = Path(support.SOFTHSM_LIB).resolve().name
        self.assertNotIn(module, maps(self.server.proc.pid))
        for pid in children(self.server.proc.pid):
            self.assertIn(module, maps(pid))
            self.assertIn("estappliance.worker_process", Path(f"/proc/{pid}/cmdline").read_text())

    @defer.inlineCallbacks
    def test_two_workers_issue_unique_serials(self):
        certs = yield defer.gatherResults([support.in_thread(self.enroll, f"w-{i}") for i in range(40)],
                                          consumeErrors=True)
        self.assertEqual(len({c.serial_number for c in certs}), 40)
        listing = yield support.in_thread(self.server.estctl, "cert", "list")
        listed = {int(line.split("\t")[0], 16) for line in listing.stdout.decode().splitlines()}
        self.assertTrue({c.serial_number for c in certs} <= listed)
        self.assertEqual(len(children(self.server.proc.pid)), 2)

    def open_keep_alive(self, count: int) -> list[ssl.SSLSocket]:
        """``count`` connections, each with one answered request and left open."""
        ctx = ssl.create_default_context(cafile=str(self.server.ca_pem))
        ctx.check_hostname = False
        conns = []
        for _ in range(count):
            conn = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.server.port), timeout=10))
            conn.sendall(b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += conn.recv(65536)
            self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:80])
            conns.append(conn)
        return conns

    def client_ports_per_worker(self) -> list[set[int]]:
        """For each worker, the client ports of the established connections it holds (from /proc)."""
        client_port = {}
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rpartition(":")[2], 16) == self.server.port and fields[3] == "01":
                client_port[f"socket:[{fields[9]}]"] = int(fields[2].rpartition(":")[2], 16)
        held = []
        for pid in children(self.server.proc.pid):
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            held.append({client_port[link] for link in links if link in client_port})
        return held

    def test_keep_alive_clients_are_shared_evenly_between_workers(self):
        """The master hands each new connection to the worker holding fewer:
        with a burst of keep-alive clients neither worker gets more than its share."""
        conns = self.open_keep_alive(10)
        self.addCleanup(lambda: [c.close() for c in conns])
        held = self.client_ports_per_worker()
        self.assertEqual(sorted(len(h) for h in held), [5, 5])
        # Four of one worker's clients leave; the worker reports it, and the
        # next four newcomers all go to it.
        leaving = [c for c in conns if c.getsockname()[1] in held[0]][:4]
        for c in leaving:
            c.close()
            conns.remove(c)
        self.assertTrue(wait_for(lambda: sorted(len(h) for h in self.client_ports_per_worker()) == [1, 5]))
        time.sleep(0.2)  # the worker's report travels to the master
        conns += self.open_keep_alive(4)
        self.assertEqual(sorted(len(h) for h in self.client_ports_per_worker()), [5, 5])

    def test_workers_run_with_batch_scheduling(self):
        """[server] batch_scheduling (on by default): every thread of every
        worker, including those started for the load, is SCHED_BATCH."""
        self.enroll("sched")  # the PKCS#11 and store threads are running now
        for pid in children(self.server.proc.pid):
            tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            self.assertGreater(len(tasks), 1)
            self.assertEqual({os.sched_getscheduler(t) for t in tasks}, {os.SCHED_BATCH})

    @defer.inlineCallbacks
    def test_digest_nonce_from_one_worker_accepted_by_the_other(self):
        """Each enrollment here opens new connections, which the kernel spreads
        over both workers; the nonce a challenge carried must be good anywhere."""
        def answer_elsewhere(i):
            auth = DigestAuth(USER, self.server.password)
            with EstClient(self.server.url, anchors=self.anchor, auth=auth) as first:
                first.request("POST", "simpleenroll", b"", "application/pkcs10")  # the 401 challenge
            with EstClient(self.server.url, anchors=self.anchor, auth=auth) as second:
                return second.simpleenroll(make_csr(new_key(), f"CN=digest-{i}"))
        certs = yield defer.gatherResults([support.in_thread(answer_elsewhere, i) for i in range(12)],
                                          consumeErrors=True)
        self.assertEqual(len(certs), 12)

    def exchange(self, conn: ssl.SSLSocket, method: str, path: str, headers: dict[str, str] | None = None,
                 body: bytes = b"") -> tuple[int, dict[str, list[str]], bytes]:
        """One HTTP/1.1 request on a kept-alive connection: (status, headers, body)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        conn.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        raw_head, _, rest = data.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        answer: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            answer.setdefault(name.strip().lower(), []).append(value.strip())
        length = int(answer.get("content-length", ["0"])[0])
        while len(rest) < length:
            rest += conn.recv(65536)
        return int(lines[0].split()[1]), answer, rest

    def issued(self) -> int:
        return len(self.server.estctl("cert", "list").stdout.splitlines())

    def replay_is_refused(self, conn: ssl.SSLSocket, captured: str) -> None:
        """The captured header, with a CSR for another key: 401 stale, nothing issued."""
        before = self.issued()
        csr = make_csr(new_key(), "CN=attacker").public_bytes(serialization.Encoding.DER)
        status, headers, body = self.exchange(conn, "POST", "/.well-known/est/simpleenroll",
                                              {"Authorization": captured, "Content-Type": "application/pkcs10"},
                                              base64.b64encode(csr))
        self.assertEqual(status, 401, body)
        self.assertTrue(any(c.startswith("Digest") and "stale=true" in c for c in headers["www-authenticate"]),
                        headers)
        self.assertEqual(self.issued(), before)

    @defer.inlineCallbacks
    def test_a_captured_digest_header_is_refused_by_the_other_worker_and_after_a_restart(self):
        """Nonce counts live in the store: the victim's Authorization, replayed
        on a connection held by the other worker, or after the worker that
        accepted it was restarted, gets a 401 (stale) and no certificate."""
        conns = yield support.in_thread(self.open_keep_alive, 2)
        self.addCleanup(lambda: [c.close() for c in conns])
        held = self.client_ports_per_worker()
        self.assertEqual(sorted(len(h) for h in held), [1, 1])  # one connection on each worker
        victim, other = conns

        def victim_enrolls() -> str:
            status, headers, _ = self.exchange(victim, "POST", "/.well-known/est/simpleenroll",
                                               {"Content-Type": "application/pkcs10"})
            self.assertEqual(status, 401)
            auth = DigestAuth(USER, self.server.password)
            self.assertTrue(auth.use_challenge(headers["www-authenticate"]))
            captured = auth.header("POST", "/.well-known/est/simpleenroll")
            csr = make_csr(new_key(), "CN=victim").public_bytes(serialization.Encoding.DER)
            status, _, body = self.exchange(victim, "POST", "/.well-known/est/simpleenroll",
                                            {"Authorization": captured, "Content-Type": "application/pkcs10"},
                                            base64.b64encode(csr))
            self.assertEqual(status, 200, body)
            return captured
        captured = yield support.in_thread(victim_enrolls)
        yield support.in_thread(self.replay_is_refused, other, captured)
        yield support.in_thread(self.replay_is_refused, victim, captured)
        # Both workers restarted: the counts are still there.
        workers = children(self.server.proc.pid)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        fresh = yield support.in_thread(wait_for, lambda: (lambda c: c if len(c) == 2 and not set(c) & set(workers)
                                                           else None)(children(self.server.proc.pid)))
        self.assertTrue(fresh, self.server.log())
        yield support.in_thread(wait_for, lambda: self.server.log().count(" ready") >= 4)
        after = yield support.in_thread(self.open_keep_alive, 2)
        self.addCleanup(lambda: [c.close() for c in after])
        for conn in after:
            yield support.in_thread(self.replay_is_refused, conn, captured)

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
    def test_a_worker_signalled_twice_stops_once_without_a_traceback(self):
        """On a service stop a worker hears SIGTERM from the master and,
        under systemd or a process-group kill, once more."""
        pid = children(self.server.proc.pid)[0]
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGTERM)
        gone = yield support.in_thread(wait_for, lambda: not Path(f"/proc/{pid}").exists()
                                       or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2])
        self.assertTrue(gone)
        yield support.in_thread(wait_for, lambda: "restarting" in self.server.log())
        log = self.server.log()
        self.assertIn("worker stopping: SIGTERM", log)
        self.assertNotIn("Traceback", log)

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
