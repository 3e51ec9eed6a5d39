"""The server the interop modules share: ``twistd -n est`` with the sample
configuration etc/estappliance.toml exactly, but for its [server] port and
workers.

The config is copied to BASE/etc/, so its relative paths (``../var/...``)
land in BASE/var/: the layout ``make run`` makes in the checkout. The token,
CA and clients are made the way the Makefile does it (softhsm/init-token.sh,
``estctl init``, ``estctl client add``). One server serves every test module
of this package: started by the first test that asks, stopped when trial
shuts down.
"""
from __future__ import annotations

import os
import re
import tempfile
import tomllib
import uuid
from pathlib import Path

from twisted.internet import defer

from .. import support
from ..test_e2e_interop import REPO, USER, EstServer, InteropBase, SharedServer, free_port

SAMPLE = REPO / "etc" / "estappliance.toml"
WORKERS = 2  # the sample's own number: the master hands connections to two workers, as under `make run`
# A second client, allowed only the label "default" (for 403 elsewhere).
LIMITED_USER = "limited"


def sample_config(port: int, workers: int = WORKERS) -> str:
    """The sample's text with [server] port and workers replaced, nothing else."""
    text = SAMPLE.read_text()
    section = re.search(r"(?ms)^\[server\][^\n]*\n.*?(?=^\[)", text)
    if section is None:
        raise AssertionError(f"{SAMPLE}: no [server] table followed by another")
    body, ports = re.subn(r"(?m)^port\s*=\s*\d+", f"port = {port}", section.group(0))
    body, workers_set = re.subn(r"(?m)^workers\s*=\s*\d+", f"workers = {workers}", body)
    if (ports, workers_set) != (1, 1):
        raise AssertionError(f"{SAMPLE}: expected one 'port = N' and one 'workers = N' line in [server]")
    result = text[:section.start()] + body + text[section.end():]
    expected = tomllib.loads(text)
    expected["server"].update(port=port, workers=workers)
    if tomllib.loads(result) != expected:
        raise AssertionError("rewriting port and workers changed more of the sample than that")
    return result


class SampleServer(EstServer):
    """An EstServer whose config is the sample's; see the module docstring."""

    def __init__(self, base: Path, workers: int = WORKERS):
        super().__init__(base, workers=workers)
        self.settings = tomllib.loads(SAMPLE.read_text())
        self.etc = self.base / "etc"
        self.config = self.etc / "estappliance.toml"
        self.state = self.base / "var"  # what the sample's "../var/" names
        self.ca_pem = (self.etc / self.settings["ca"]["cert_file"]).resolve()
        self.realm: str = self.settings["server"]["realm"]
        self.retry_after: int = self.settings["server"]["retry_after"]
        self.limited_password = "pw-" + uuid.uuid4().hex
        self.limited_password_file = self.base / f"{LIMITED_USER}.password"

    def prepare(self) -> None:
        """Blocking: token, config, CA; clients ``dev`` (every label) and ``limited`` (``default`` only)."""
        self.etc.mkdir(parents=True, exist_ok=True)
        self.run("bash", REPO / "softhsm" / "init-token.sh", self.state, self.settings["token"]["label"])
        self.port = free_port()
        self.config.write_text(sample_config(self.port, self.workers))
        self.estctl("init")
        for name, password, path, labels in ((USER, self.password, self.password_file, "*"),
                                             (LIMITED_USER, self.limited_password, self.limited_password_file,
                                              "default")):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
            self.estctl("client", "add", name, "--password-file", path, "--labels", labels)

    def pending(self) -> list[dict[str, str]]:
        """Blocking: ``estctl pending list``, one dict a waiting request."""
        out = self.estctl("pending", "list").stdout.decode()
        keys = ("id", "state", "created", "label", "client", "operation", "subject")
        return [dict(zip(keys, line.split("\t"))) for line in out.splitlines() if line.strip()]

    def certificates(self) -> dict[int, list[str]]:
        """Blocking: ``estctl cert list`` by serial (columns: serial, status, not after, label, client, subject)."""
        out = self.estctl("cert", "list").stdout.decode()
        rows = [line.split("\t") for line in out.splitlines() if line.strip()]
        return {int(row[0], 16): row for row in rows}


_sample_server = SharedServer(
    lambda: SampleServer(Path(tempfile.mkdtemp(prefix="interop-sample-", dir=os.getcwd()))))


def shared_sample_server() -> SampleServer:
    """Blocking: the one sample-config server of this package, made on first use."""
    server = _sample_server.get()
    assert isinstance(server, SampleServer)
    return server


class SampleServerCase(InteropBase):
    """Tests against the shared sample-config server (``self.server``), with InteropBase's tools."""

    timeout = 120
    server: SampleServer

    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.server = yield support.in_thread(shared_sample_server)

    @defer.inlineCallbacks
    def assertIssued(self, cert: Path, key: Path, cn: str, dns: str | None = None):
        """What a user checks: ``openssl verify`` (also as a TLS client certificate), the subject, the
        SAN, and that the certificate certifies ``key``."""
        yield self.assertVerifies(cert)
        yield self.assertVerifies(cert, purpose="sslclient")
        subject = yield self.subject_line(cert)
        self.assertEqual(subject, f"subject=CN = {cn}")
        if dns is not None:
            ext = yield self.tool("openssl", "x509", "-in", cert, "-noout", "-ext", "subjectAltName")
            self.assertIn(f"DNS:{dns}", ext.stdout.decode())
        theirs = yield self.pubkey_of_key(key)
        ours = yield self.pubkey_of_cert(cert)
        self.assertIn(b"-----BEGIN PUBLIC KEY-----", theirs)
        self.assertEqual(ours, theirs)

    @defer.inlineCallbacks
    def issued_row(self, cert: Path):
        """``estctl cert list``'s row for ``cert``: serial, status, not after, label, client, subject."""
        serial = yield self.serial_of(cert)
        rows = yield support.in_thread(self.server.certificates)
        self.assertIn(serial, rows)
        return rows[serial]
