"""Real ``twistd -n est`` nodes sharing one PostgreSQL database and the
suite's SoftHSM2 token, for tests/test_e2e_nodes.py.

Each node has its own config file, port and state directory (its TLS key
and certificate, the CA certificate files: copied from the first node, as
an operator copies them to a second machine) and the same ``[store] url``,
token and CA key label. Each twistd is the leader of its own process group,
so ``kill()`` SIGKILLs the master and its workers at once, as a machine
losing power would.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from cryptography import x509

from estappliance.client import HttpsConnection
from estappliance.client.http import HttpResponse, TLSError

from bench.ports import free_port

from . import support

BIN = Path(sys.executable).parent
USER = "dev"
PASSWORD = "pw-" + uuid.uuid4().hex
EST = "/.well-known/est"


def toml_str(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    import base64
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}



class Node:
    """One node: its config, state and (once started) its twistd process."""

    def __init__(self, base: Path, name: str, store_url: str, ca_label: str, *, workers: int = 1,
                 lease_seconds: int = 6) -> None:
        self.name = name
        self.base = base / name
        self.state = self.base / "state"
        self.config = self.base / "estappliance.toml"
        self.log_path = self.base / "twistd.log"
        self.store_url = store_url
        self.ca_label = ca_label
        self.workers = workers
        self.lease_seconds = lease_seconds
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_pem(self) -> Path:
        return self.state / "ca" / "ca.pem"

    def anchor(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_pem.read_bytes())

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SOFTHSM2_CONF"] = str(support.hsm_dir() / "softhsm2.conf")
        for name in ("EST_CONFIG", "EST_SERVER", "EST_TOKEN_PIN", "EST_TEST_STORE"):
            env.pop(name, None)
        return env

    def write_config(self) -> None:
        hsm = support.hsm_dir()
        s = self.state
        self.state.mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"""\
[server]
host = "127.0.0.1"
port = {self.port}
server_names = ["localhost", "127.0.0.1"]
tls_key = {toml_str(s / "tls" / "server.key")}
tls_cert = {toml_str(s / "tls" / "server.pem")}
realm = "nodes"
max_body = 65536
retry_after = 7
workers = {self.workers}

[token]
module = {toml_str(support.SOFTHSM_LIB)}
label = {toml_str(support.TOKEN_LABEL)}
softhsm2_conf = {toml_str(hsm / "softhsm2.conf")}
pin_file = {toml_str(hsm / "pin")}

[ca]
key_label = {toml_str(self.ca_label)}
signer_key_label = {toml_str(self.ca_label + "-signer")}
key_type = "ec-p256"
subject = "CN=Two Nodes Test CA,O=estappliance tests"
validity_days = 3650
cert_file = {toml_str(s / "ca" / "ca.pem")}
chain_file = {toml_str(s / "ca" / "chain.pem")}

[store]
path = {toml_str(s / "est.sqlite")}
url = {toml_str(self.store_url)}

[crl]
lease_seconds = {self.lease_seconds}

[profiles.default]
validity_days = 365
key_types = ["ec-p256", "rsa2048"]
key_usage = ["digitalSignature", "keyEncipherment"]
extended_key_usage = ["clientAuth"]
copy_san = true

[labels.default]
profile = "default"
auth = ["basic", "cert"]
cert_anchors = ["ca"]

[labels.digest]
profile = "default"
auth = ["digest"]

[labels.manual]
profile = "default"
auth = ["basic", "cert"]
cert_anchors = ["ca"]
approval = "manual"
""")

    def copy_ca_files_from(self, other: Node) -> None:
        """What an operator copies to a second machine: the CA certificate
        files and the TLS server key and certificate."""
        for part in ("ca", "tls"):
            shutil.copytree(other.state / part, self.state / part, dirs_exist_ok=True)

    def run(self, *argv: object, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        args = [str(a) for a in argv]
        proc = subprocess.run(args, env=self.env, cwd=self.base, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}")
        return proc

    def estctl(self, *args: object, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return self.run(BIN / "estctl", "-c", self.config, *args, check=check)

    # -- the process -----------------------------------------------------------------

    def spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "twistd"), "-n", "--pidfile=", "est", "-c", str(self.config)],
                env=self.env, cwd=self.base, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self.proc

    def start(self, deadline: float = 60) -> None:
        """Blocking: start twistd, and return once it serves (with workers:
        once every worker said it is ready)."""
        self.spawn()
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited with {self.proc.returncode} at start:\n{self.log()}")
            if self.workers == 1 or self.log().count(" ready") >= self.workers:
                try:
                    if self.request("GET", f"{EST}/cacerts", timeout=5).status == 200:
                        return
                except (TLSError, OSError):
                    pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"node {self.name} did not serve within {deadline} s:\n{self.log()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pids(self) -> set[int]:
        """The master and its workers."""
        if self.proc is None:
            return set()
        # twistd leads a session of its own (start_new_session): its workers are in it.
        out = subprocess.run(["ps", "-o", "pid=,stat=", "-s", str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        return {int(line.split()[0]) for line in out.splitlines() if not line.split()[1].startswith("Z")}

    def kill(self) -> None:
        """SIGKILL the whole process group (master and workers), and reap the master."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def shutdown(self) -> None:
        """For cleanup: SIGTERM, then SIGKILL what is left of the group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- talking to it ---------------------------------------------------------------

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
                timeout: float = 30, **kw: object) -> HttpResponse:
        """One exchange on a fresh connection (blocking)."""
        conn = HttpsConnection("127.0.0.1", self.port, anchors=[self.anchor()], timeout=timeout, **kw)
        try:
            return conn.request(method, path, headers or {}, body)
        finally:
            conn.close()


def make_nodes(base: Path, store_url: str, workers: tuple[int, ...], lease_seconds: int = 6) -> list[Node]:
    """Blocking: configs for one node per ``workers`` entry on ``store_url``,
    the CA made once (``estctl init`` on the first), its files copied to the
    others, and the client ``dev`` (Basic, every label) added."""
    label = f"ca-{uuid.uuid4().hex[:12]}"
    nodes = [Node(base, name, store_url, label, workers=n, lease_seconds=lease_seconds)
             for name, n in zip("ab", workers)]
    for node in nodes:
        node.write_config()
    first = nodes[0]
    first.estctl("init")
    for node in nodes[1:]:
        node.copy_ca_files_from(first)
    password_file = base / "dev.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    first.estctl("client", "add", USER, "--password-file", password_file, "--labels", "*")
    return nodes


def destroy_ca_keys(label: str) -> None:
    """Blocking, on the PKCS#11 thread's behalf: remove the nodes' token keys."""
    token = support.token()
    for name in (label, label + "-signer"):
        token.destroy_keypair(name)
