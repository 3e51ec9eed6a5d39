"""The systemd unit (checked by ``systemd-analyze verify`` where it is
installed) and its reload path for real: SIGHUP to a running ``twistd est``
(one process, and a master with two workers) brings a new TLS certificate and
a changed label table to new connections, while an open keep-alive connection
goes on working; a bad configuration is refused and nothing changes."""
from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial import unittest

from . import support
from .test_e2e_interop import BIN, REPO, EstServer, require_tools
from .test_workers import children, wait_for

UNIT = REPO / "etc" / "systemd" / "estappliance.service"


class UnitFileTests(unittest.TestCase):
    def directives(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for line in UNIT.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith(("#", "[")):
                key, _, value = line.partition("=")
                out.setdefault(key.strip(), []).append(value.strip())
        return out

    def test_systemd_analyze_verify(self):
        """The unit as installed under a prefix: here the venv running the tests."""
        if shutil.which("systemd-analyze") is None:
            raise unittest.SkipTest("systemd-analyze is not installed")
        unit_dir = Path(self.mktemp())
        unit_dir.mkdir()
        installed = unit_dir / UNIT.name
        installed.write_text(UNIT.read_text().replace("/opt/estappliance/bin", str(BIN)))
        result = subprocess.run(["systemd-analyze", "verify", str(installed)], capture_output=True, text=True)
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))

    def test_hardening_and_lifecycle(self):
        d = self.directives()
        self.assertIn("twistd --nodaemon --pidfile= est", d["ExecStart"][0])
        self.assertNotIn(d["User"][0], ("root", "0"))
        self.assertEqual(d["AmbientCapabilities"], ["CAP_NET_BIND_SERVICE"])
        self.assertEqual(d["CapabilityBoundingSet"], ["CAP_NET_BIND_SERVICE"])
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                           ("Restart", "on-failure"), ("ReadWritePaths", "/var/lib/estappliance")):
            self.assertEqual(d[key], [value], key)
        self.assertEqual(d["ExecReload"], ["/bin/kill -HUP $MAINPID"])


def new_tls_files(key_path: Path, cert_path: Path, cn: str) -> bytes:
    """A new self-signed TLS key and certificate in place (renamed in); its DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    for path, data in ((key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption())),
                       (cert_path, cert.public_bytes(serialization.Encoding.PEM))):
        tmp = path.with_suffix(".new")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return cert.public_bytes(serialization.Encoding.DER)


class ReloadTests(unittest.TestCase):
    timeout = 180
    workers = 1

    def setUp(self):
        require_tools()
        self.server = EstServer(Path(self.mktemp()), workers=self.workers)
        self.addCleanup(self.server.shutdown)
        return support.in_thread(self._start)

    def _start(self):
        self.server.prepare()
        self.server.start()
        if self.workers > 1:
            assert wait_for(lambda: self.server.log().count(" ready") >= self.workers), self.server.log()

    def connect(self) -> ssl.SSLSocket:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the test compares the certificate itself
        return ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.server.port), timeout=10))

    @staticmethod
    def get(conn: ssl.SSLSocket, path: str) -> int:
        """One request on a keep-alive connection; its status."""
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        return int(head.split()[1])

    def fresh(self, path: str) -> tuple[bytes, int]:
        """A new connection: (its server certificate's DER, the status of GET path)."""
        with self.connect() as conn:
            return conn.getpeercert(binary_form=True), self.get(conn, path)

    def test_sighup_new_cert_and_label_for_new_connections_keep_alive_survives(self):
        def run():
            s = self.server
            old_cert, status = self.fresh("/.well-known/est/cacerts")
            self.assertEqual(status, 200)
            self.assertEqual(self.fresh("/.well-known/est/fleet/cacerts")[1], 404)
            kept = [self.connect() for _ in range(2 * self.workers)]  # open on every worker
            for conn in kept:
                self.assertEqual(self.get(conn, "/.well-known/est/cacerts"), 200)
            new_cert = new_tls_files(s.state / "tls" / "server.key", s.state / "tls" / "server.pem", "reloaded")
            with open(s.config, "a") as f:
                f.write('\n[labels.fleet]\nprofile = "default"\nauth = ["basic"]\n')
            os.kill(s.proc.pid, signal.SIGHUP)
            # Every worker reloads: many fresh connections all see the new certificate.
            self.assertTrue(wait_for(lambda: all(self.fresh("/healthz")[0] == new_cert for _ in range(6)), 10),
                            s.log())
            for _ in range(2 * self.workers):
                cert, status = self.fresh("/.well-known/est/fleet/cacerts")
                self.assertEqual((cert == new_cert, status), (True, 200))
            for conn in kept:  # the connections open across the reload go on, with their old certificate
                self.assertEqual(self.get(conn, "/.well-known/est/cacerts"), 200)
                self.assertEqual(conn.getpeercert(binary_form=True), old_cert)
                self.assertEqual(self.get(conn, "/.well-known/est/fleet/cacerts"), 200)
                conn.close()
            self.assertIn("reloaded", s.log())
            self.assertEqual(s.proc.poll(), None)
            if self.workers > 1:
                self.assertEqual(len(children(s.proc.pid)), self.workers)
        return support.in_thread(run)

    def test_a_bad_configuration_is_refused_and_nothing_changes(self):
        def run():
            s = self.server
            before, _ = self.fresh("/healthz")
            new_tls_files(s.state / "tls" / "server.key", s.state / "tls" / "server.pem", "never-served")
            s.config.write_text(s.config.read_text() + "\n[labels.broken]\nprofile = \"no-such-profile\"\n")
            os.kill(s.proc.pid, signal.SIGHUP)
            self.assertTrue(wait_for(lambda: s.log().count("reload refused") >= self.workers, 10), s.log())
            time.sleep(0.2)
            cert, status = self.fresh("/.well-known/est/cacerts")
            self.assertEqual((cert, status), (before, 200))
            self.assertEqual(s.proc.poll(), None)
        return support.in_thread(run)


class WorkersReloadTests(ReloadTests):
    workers = 2
