"""TLS sessions resume on any worker and any node (web/ticket_keys.py): two
real ``twistd est`` nodes on one store and one token, the first with two
workers. A ticket from one worker resumes on the other (the connections are
seen in /proc to be held by different workers); a session made with
``openssl s_client`` on one node resumes on the other node, TLS 1.2 and 1.3;
the resumed handshakes are counted on /metrics. A device whose certificate
comes from an intermediate CA (it sends the intermediate in the full
handshake; a ticket keeps only its own certificate) is still authenticated
when its session resumes on the other node."""
from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from twisted.trial import unittest

from . import support
from .ops_support import OperatedServer, metric_value
from .test_e2e_interop import free_port, require_tools
from .test_workers import children, wait_for

VERSIONS = {"tls1_2": ssl.TLSVersion.TLSv1_2, "tls1_3": ssl.TLSVersion.TLSv1_3}
REQUEST = b"GET /.well-known/est/cacerts HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"


def second_node(first: OperatedServer, base: Path) -> OperatedServer:
    """Another node of the same appliance: the same store, token and
    certificates (the same config), its own ports and metrics directory."""
    node = OperatedServer(base, workers=1)
    base.mkdir(parents=True)
    node.state, node.ca_pem = first.state, first.ca_pem
    node.port, node.admin_port = free_port(), free_port()
    text = first.config.read_text()
    for old, new in ((f"port = {first.port}\n", f"port = {node.port}\n"),
                     (f"port = {first.admin_port}\n", f"port = {node.admin_port}\n"),
                     (str(first.base / "metrics"), str(base / "metrics"))):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    node.config.write_text(text)
    return node


def manufacturer_pki(where: Path) -> tuple[Path, Path]:
    """A root, an issuing CA under it and a device certificate from that CA
    (files in ``where``): (the device's chain file, leaf then intermediate; its key)."""
    from .test_ra import issue, issue_ca, make_ca
    where.mkdir(parents=True)
    root_key, root = make_ca("CN=Resumption Manufacturer Root")
    inter_key, inter = issue_ca(root_key, root, "CN=Resumption Manufacturer Issuing CA")
    device_key, device = issue(inter_key, inter, "CN=resuming-device")
    pem = serialization.Encoding.PEM
    (where / "root.pem").write_bytes(root.public_bytes(pem))
    (where / "device-chain.pem").write_bytes(device.public_bytes(pem) + inter.public_bytes(pem))
    (where / "device.key").write_bytes(device_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))
    return where / "device-chain.pem", where / "device.key"


class SessionResumptionTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        require_tools()
        base = Path(self.mktemp()).resolve()
        self.device = manufacturer_pki(base / "mfr")
        self.a = OperatedServer(base / "a", workers=2,
                                extra=f'\n[metrics]\ndir = "{base / "a" / "metrics"}"\n'
                                      f'\n[trust_anchors]\nmfr = "{base / "mfr" / "root.pem"}"\n'
                                      '\n[labels.devices]\nprofile = "default"\nauth = ["cert"]\n'
                                      'cert_anchors = ["mfr"]\n')
        self.addCleanup(self.a.shutdown)
        self.base = base
        return support.in_thread(self._start)

    def _start(self):
        self.a.prepare()
        self.b = second_node(self.a, self.base / "b")
        self.addCleanup(self.b.shutdown)
        self.a.start()
        assert wait_for(lambda: self.a.log().count(" ready") >= 2), self.a.log()
        self.b.start()

    # -- helpers -------------------------------------------------------------------------

    def client_context(self, version: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.a.ca_pem))
        ctx.check_hostname = False
        ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
        return ctx

    def connect(self, port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None,
                request: bytes = REQUEST) -> ssl.SSLSocket:
        """A connection with one request answered (so a TLS 1.3 client has read its tickets), left open."""
        conn = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), session=session)
        conn.sendall(request.replace(b"1.0", b"1.1"))
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += conn.recv(65536)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer[:200])
        return conn

    @contextlib.contextmanager
    def resumed(self, ctx: ssl.SSLContext, first_port: int, second_port: int, request: bytes = REQUEST
                ) -> Iterator[tuple[ssl.SSLSocket, ssl.SSLSocket]]:
        """A new session on ``first_port``, then one offering its ticket on
        ``second_port`` (each with ``request`` answered 200); both closed after."""
        first = self.connect(first_port, ctx, request=request)
        try:
            self.assertFalse(first.session_reused)
            second = self.connect(second_port, ctx, first.session, request=request)
            try:
                yield first, second
            finally:
                second.close()
        finally:
            first.close()

    def worker_of(self, conn: ssl.SSLSocket) -> int:
        """The pid of node a's worker holding ``conn`` (its socket in /proc)."""
        port = conn.getsockname()[1]
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if (int(fields[1].rpartition(":")[2], 16) == self.a.port
                    and int(fields[2].rpartition(":")[2], 16) == port):
                inodes.add(f"socket:[{fields[9]}]")
        holders = [pid for pid in children(self.a.proc.pid)
                   if inodes & {str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir()}]
        self.assertEqual(len(holders), 1, holders)
        return holders[0]

    def s_client(self, port: int, version: str, *session_args: str) -> str:
        done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", f"-{version}",
                               "-CAfile", str(self.a.ca_pem), "-ign_eof", *session_args],
                              input=REQUEST, capture_output=True, timeout=30)
        out = done.stdout.decode(errors="replace")
        self.assertIn("HTTP/1.0 200", out)
        return out

    def resumed_count(self, node: OperatedServer) -> float:
        return metric_value(node.admin_get("/metrics")[2].decode(), "est_tls_handshakes_total",
                            kind="resumed") or 0

    # -- tests ---------------------------------------------------------------------------

    def test_a_session_resumes_on_the_other_worker(self):
        def run():
            for version in VERSIONS:
                # The master hands a newcomer to the worker holding fewer: the other one.
                with self.resumed(self.client_context(version), self.a.port, self.a.port) as (first, second):
                    self.assertNotEqual(self.worker_of(first), self.worker_of(second))
                    self.assertTrue(second.session_reused, version)
        return support.in_thread(run)

    def test_a_device_certificate_from_an_intermediate_is_accepted_on_a_resumed_session(self):
        """The resumed handshake carries no certificates: node b knows the
        device's certificate from the ticket and completes its path with the
        intermediate node a kept in the store."""
        pal = b"GET /.well-known/est/devices/pal HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"

        def run():
            chain, key = self.device
            for version in VERSIONS:
                ctx = self.client_context(version)
                ctx.load_cert_chain(chain, key)
                with self.resumed(ctx, self.a.port, self.b.port, pal) as (_, resumed):
                    self.assertTrue(resumed.session_reused, version)
        return support.in_thread(run)

    def test_openssl_session_from_one_node_resumes_on_the_other(self):
        def run():
            before = self.resumed_count(self.b)
            for version in VERSIONS:
                saved = str(self.base / f"{version}.session")
                out = self.s_client(self.a.port, version, "-sess_out", saved)
                self.assertIn("New, TLSv1.", out)
                out = self.s_client(self.b.port, version, "-sess_in", saved)
                self.assertIn(f"Reused, TLSv1.{version[-1]}", out)
            # Node b counted both as resumed handshakes.
            self.assertEqual(self.resumed_count(self.b) - before, 2)
        return support.in_thread(run)
