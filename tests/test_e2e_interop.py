"""Interop: the real ``twistd -n est`` process, checked with other projects'
tools (curl, the openssl CLI) and with our own ``est`` command.

Each server here is set up the way an operator does it (see the Makefile):
``softhsm/init-token.sh STATE LABEL``, ``estctl init``, ``estctl client add``,
then ``twistd -n --pidfile= est -c CONFIG`` as a child process. Every server has
its own state directory and SoftHSM2 token (its own SOFTHSM2_CONF), so nothing
is shared with the token tests.support makes for the in-process tests. One
server serves InteropTests (started by the first test, stopped when trial shuts
down); LifecycleTests and RsaCaTests start and stop one per test. Everything listens on and
talks to 127.0.0.1 only.
"""
from __future__ import annotations

import atexit
import base64
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from twisted.internet import defer, reactor
from twisted.trial import unittest

from bench.ports import free_port

from . import support

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOOLS = ("curl", "openssl", "softhsm2-util")
TOKEN_LABEL = "interop"
REALM = "interop-realm"
CA_SUBJECT = "CN=Interop Test CA,O=estappliance interop"
USER = "dev"
CMC_RA = ObjectIdentifier("1.3.6.1.5.5.7.3.28")
EST = "/.well-known/est"


def require_tools() -> None:
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        raise unittest.SkipTest(f"needs {', '.join(missing)} on PATH")


def _toml_str(value) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class EstServer:
    """One estappliance instance under ``base``: token, CA, a client, twistd."""

    def __init__(self, base: Path, ca_key_type: str = "ec-p256", workers: int = 1,
                 auth: tuple[str, ...] = ("basic", "cert")):
        self.base = base.resolve()
        self.ca_key_type = ca_key_type
        self.workers = workers
        self.auth = auth
        self.state = self.base / "state"
        self.config = self.base / "estappliance.toml"
        self.password = "pw-" + uuid.uuid4().hex
        self.password_file = self.base / "dev.password"
        self.ca_pem = self.state / "ca" / "ca.pem"
        self.log_path = self.base / "twistd.log"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SOFTHSM2_CONF"] = str(self.state / "softhsm2.conf")
        for name in ("EST_CONFIG", "EST_SERVER", "EST_TOKEN_PIN"):
            env.pop(name, None)
        return env

    def run(self, *argv, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Blocking: one command with this server's environment, in its base dir."""
        argv = [str(a) for a in argv]
        proc = subprocess.run(argv, env=self.env, cwd=self.base, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                                 f"{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}")
        return proc

    def estctl(self, *args, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(BIN / "estctl", "-c", self.config, *args, check=check)

    def prepare(self) -> None:
        """Blocking: token, config, CA and the client ``dev`` (allowed every label)."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.run("bash", REPO / "softhsm" / "init-token.sh", self.state, TOKEN_LABEL)
        self.port = free_port()
        s = self.state
        self.config.write_text(f"""\
[server]
host = "127.0.0.1"
port = {self.port}
server_names = ["localhost", "127.0.0.1"]
tls_key = {_toml_str(s / "tls" / "server.key")}
tls_cert = {_toml_str(s / "tls" / "server.pem")}
realm = {_toml_str(REALM)}
max_body = 65536
retry_after = 10
workers = {self.workers}

[token]
module = {_toml_str(support.SOFTHSM_LIB)}
label = {_toml_str(TOKEN_LABEL)}
softhsm2_conf = {_toml_str(s / "softhsm2.conf")}
pin_file = {_toml_str(s / "token.pin")}

[ca]
key_label = "est-ca"
key_type = {_toml_str(self.ca_key_type)}
subject = {_toml_str(CA_SUBJECT)}
validity_days = 3650
cert_file = {_toml_str(self.ca_pem)}
chain_file = {_toml_str(s / "ca" / "chain.pem")}

[store]
path = {_toml_str(s / "est.sqlite")}

[profiles.default]
validity_days = 365
key_types = ["ec-p256", "ec-p384", "ec-p521", "rsa2048", "rsa3072", "rsa4096"]
key_usage = ["digitalSignature", "keyEncipherment"]
extended_key_usage = ["clientAuth"]
copy_san = true

[labels.default]
profile = "default"
auth = [{", ".join(_toml_str(a) for a in self.auth)}]
cert_anchors = ["ca"]
""")
        self.estctl("init")
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        self.estctl("client", "add", USER, "--password-file", self.password_file, "--labels", "*")

    def start(self, deadline: float = 20) -> None:
        """Blocking: start twistd and wait until its port completes a verified TLS handshake."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "twistd"), "-n", "--pidfile=", "est", "-c", str(self.config)],
                env=self.env, cwd=self.base, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        end = time.monotonic() + deadline
        last: Exception | None = None
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"twistd exited with {self.proc.returncode} at start:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    with ctx.wrap_socket(sock, server_hostname="127.0.0.1"):
                        return
            except OSError as e:  # ssl.SSLError included
                last = e
                time.sleep(0.05)
        self.kill()
        raise AssertionError(f"twistd did not accept TLS on 127.0.0.1:{self.port} within {deadline} s "
                             f"(last error: {last!r}):\n{self.log()}")

    def stop(self, timeout: float = 20) -> int:
        """Blocking: SIGTERM, then wait; the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"twistd ignored SIGTERM for {timeout} s:\n{self.log()}") from None
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def shutdown(self) -> None:
        """For cleanup: stop quietly whatever state the process is in."""
        if self.proc is None:
            return
        try:
            self.stop()
        except AssertionError:
            pass

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# -- the server InteropTests share -------------------------------------------------

class SharedServer:
    """One server for a whole test run: made (prepared and started) by the
    first test that asks, stopped when trial shuts down. A failed start is
    remembered, so later tests fail at once with its reason."""

    def __init__(self, make: Callable[[], EstServer]):
        self._make = make
        self._lock = threading.Lock()
        self._server: EstServer | None = None
        self._error: BaseException | None = None

    def get(self) -> EstServer:
        """Blocking: the server, made on first use."""
        with self._lock:
            if self._error is not None:
                raise AssertionError(f"the shared server failed to start: {self._error}")
            if self._server is None:
                server = self._make()
                try:
                    server.prepare()
                    server.start()
                except BaseException as e:
                    self._error = e
                    server.shutdown()
                    raise
                self._server = server
                reactor.addSystemEventTrigger("before", "shutdown", self.stop)
                atexit.register(self.stop)
            return self._server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()


_interop_server = SharedServer(lambda: EstServer(Path(tempfile.mkdtemp(prefix="interop-", dir=os.getcwd()))))


def shared_server() -> EstServer:
    """Blocking: the one server for InteropTests, made on first use."""
    return _interop_server.get()


# -- answers read with curl -------------------------------------------------------


class HttpAnswer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, stderr: str):
        self.status = status
        self.headers = headers
        self.body = body
        self.stderr = stderr

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def parse_header_dump(raw: bytes) -> tuple[int, dict[str, str]]:
    """The last header block curl's -D wrote (after any ``100 Continue``)."""
    blocks = [b for b in raw.replace(b"\r\n", b"\n").split(b"\n\n") if b.strip()]
    lines = blocks[-1].decode("latin-1").split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


class InteropBase(unittest.TestCase):
    timeout = 60
    server: EstServer

    def setUp(self):
        require_tools()
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir(parents=True)
        self._n = 0

    def path(self, name: str) -> Path:
        self._n += 1
        return self.tmp / f"{self._n:02d}-{name}"

    @defer.inlineCallbacks
    def tool(self, *argv, input: bytes | None = None, check: bool = True):
        """An outside tool, off the reactor; fires with its CompletedProcess."""
        argv = [str(a) for a in argv]
        proc = yield support.run_tool(*argv, input=input)
        if check and proc.returncode != 0:
            self.fail(f"{' '.join(argv)} exited {proc.returncode}:\n"
                      f"{proc.stdout.decode(errors='replace')}{proc.stderr.decode(errors='replace')}")
        return proc

    @defer.inlineCallbacks
    def curl(self, path: str, *args, verbose: bool = False):
        """curl against the server, verifying it with the CA file; fires with an HttpAnswer."""
        headers, body = self.path("headers"), self.path("body")
        argv = ["curl", "-sS", "--max-time", "30", "--cacert", self.server.ca_pem,
                "-D", headers, "-o", body, *args]
        if verbose:
            argv.append("-v")
        proc = yield self.tool(*argv, self.server.url + path)
        status, hdrs = parse_header_dump(headers.read_bytes())
        return HttpAnswer(status, hdrs, body.read_bytes() if body.exists() else b"",
                          proc.stderr.decode(errors="replace"))

    # -- openssl --------------------------------------------------------------------

    @defer.inlineCallbacks
    def openssl_csr(self, cn: str, newkey: tuple[str, ...], san: str | None = None):
        """An openssl-made key and DER CSR; fires with (key path, base64 CSR path)."""
        key, der = self.path(f"{cn}.key"), self.path(f"{cn}.csr.der")
        extra = ("-addext", f"subjectAltName={san}") if san else ()
        yield self.tool("openssl", "req", "-new", *newkey, "-nodes", "-keyout", key, "-subj", f"/CN={cn}",
                        *extra, "-outform", "DER", "-out", der)
        b64 = self.path(f"{cn}.csr.b64")
        b64.write_bytes(base64.encodebytes(der.read_bytes()))  # what `base64 FILE` writes
        return key, b64

    @defer.inlineCallbacks
    def certs_from_body(self, body: bytes, name: str):
        """base64 certs-only body -> `openssl pkcs7 -print_certs`; fires with (PEM path, the process)."""
        p7 = self.path(f"{name}.p7")
        p7.write_bytes(base64.b64decode(body))
        pem = self.path(f"{name}.pem")
        proc = yield self.tool("openssl", "pkcs7", "-inform", "DER", "-in", p7, "-print_certs", "-out", pem)
        return pem, proc

    @defer.inlineCallbacks
    def pubkey_of_key(self, key: Path):
        proc = yield self.tool("openssl", "pkey", "-in", key, "-pubout")
        return proc.stdout

    @defer.inlineCallbacks
    def pubkey_of_cert(self, cert: Path):
        pub = yield self.tool("openssl", "x509", "-in", cert, "-noout", "-pubkey")
        # through `openssl pkey -pubin -pubout` too, so both sides come out of the same printer
        proc = yield self.tool("openssl", "pkey", "-pubin", "-pubout", input=pub.stdout)
        return proc.stdout

    @defer.inlineCallbacks
    def assertVerifies(self, cert: Path, purpose: str | None = None):
        args = ("-purpose", purpose) if purpose else ()
        proc = yield self.tool("openssl", "verify", "-CAfile", self.server.ca_pem, *args, cert, check=False)
        out = proc.stdout.decode(errors="replace")
        self.assertEqual((proc.returncode, out.strip()), (0, f"{cert}: OK"), proc.stderr.decode(errors="replace"))

    @defer.inlineCallbacks
    def subject_line(self, cert: Path):
        proc = yield self.tool("openssl", "x509", "-in", cert, "-noout", "-subject")
        return proc.stdout.decode().strip()

    @defer.inlineCallbacks
    def serial_of(self, cert: Path):
        proc = yield self.tool("openssl", "x509", "-in", cert, "-noout", "-serial")
        return int(proc.stdout.decode().strip().partition("=")[2], 16)

    # -- enrollment with curl -----------------------------------------------------------

    def assertCertsOnly(self, answer: HttpAnswer):
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.header("content-type"), "application/pkcs7-mime; smime-type=certs-only")
        self.assertEqual(answer.header("content-transfer-encoding"), "base64")

    @defer.inlineCallbacks
    def curl_enroll(self, csr_b64: Path, *auth, name: str = "cert"):
        """POST a CSR; checks the certs-only answer; fires with (answer, cert PEM path)."""
        answer = yield self.curl(f"{EST}/simpleenroll", *auth, "-H", "Content-Type: application/pkcs10",
                                 "--data-binary", f"@{csr_b64}")
        self.assertCertsOnly(answer)
        pem, _ = yield self.certs_from_body(answer.body, name)
        self.assertEqual(pem.read_text().count("-----BEGIN CERTIFICATE-----"), 1)
        return answer, pem

    def basic(self) -> tuple[str, ...]:
        return ("-u", f"{USER}:{self.server.password}")


class InteropTests(InteropBase):
    """One running twistd, many outside clients."""

    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.server = yield support.in_thread(shared_server)

    # -- /cacerts ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_cacerts_with_curl_and_openssl_pkcs7(self):
        answer = yield self.curl(f"{EST}/cacerts")
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.header("content-type"), "application/pkcs7-mime")
        self.assertEqual(answer.header("content-transfer-encoding"), "base64")
        self.assertEqual(int(answer.header("content-length")), len(answer.body))
        pem, _ = yield self.certs_from_body(answer.body, "cacerts")
        printed = pem.read_text()
        self.assertIn(self.server.ca_pem.read_text().strip(), printed)
        self.assertEqual(printed.count("-----BEGIN CERTIFICATE-----"), 1)
        expected = yield self.subject_line(self.server.ca_pem)  # subject=O = ..., CN = Interop Test CA
        self.assertIn("CN = Interop Test CA", expected)
        self.assertIn(expected, printed.splitlines())
        head = yield self.curl(f"{EST}/cacerts", "--head")  # (curl -I writes the headers to -o too)
        self.assertEqual((head.status, head.header("content-type"), head.header("content-length")),
                         (200, "application/pkcs7-mime", str(len(answer.body))))

    # -- /simpleenroll with openssl-made CSRs ---------------------------------------------

    @defer.inlineCallbacks
    def check_openssl_enrollment(self, cn: str, newkey: tuple[str, ...]):
        key, csr = yield self.openssl_csr(cn, newkey, san=f"DNS:{cn}.example")
        _, cert = yield self.curl_enroll(csr, *self.basic(), name=cn)
        yield self.assertVerifies(cert)
        yield self.assertVerifies(cert, purpose="sslclient")
        subject = yield self.subject_line(cert)
        self.assertEqual(subject, f"subject=CN = {cn}")
        ext = yield self.tool("openssl", "x509", "-in", cert, "-noout", "-ext", "subjectAltName")
        self.assertIn(f"DNS:{cn}.example", ext.stdout.decode())
        theirs = yield self.pubkey_of_key(key)
        ours = yield self.pubkey_of_cert(cert)
        self.assertIn(b"-----BEGIN PUBLIC KEY-----", theirs)
        self.assertEqual(ours, theirs)
        return cert

    def test_enroll_openssl_ec_p256_csr(self):
        return self.check_openssl_enrollment(
            "interop-ec", ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"))

    def test_enroll_openssl_rsa2048_csr(self):
        return self.check_openssl_enrollment("interop-rsa", ("-newkey", "rsa:2048"))

    @defer.inlineCallbacks
    def test_reenroll_with_issued_certificate_as_tls_client_cert(self):
        """The default label takes certificate authentication: no password the second time."""
        key, csr = yield self.openssl_csr("interop-tlsclient", ("-newkey", "ec", "-pkeyopt",
                                                                 "ec_paramgen_curve:P-256"))
        _, first = yield self.curl_enroll(csr, *self.basic(), name="first")
        key2, csr2 = yield self.openssl_csr("interop-tlsclient-2", ("-newkey", "ec", "-pkeyopt",
                                                                     "ec_paramgen_curve:P-256"))
        _, second = yield self.curl_enroll(csr2, "--cert", first, "--key", key, name="second")
        yield self.assertVerifies(second)
        subject = yield self.subject_line(second)
        self.assertEqual(subject, "subject=CN = interop-tlsclient-2")
        theirs = yield self.pubkey_of_key(key2)
        ours = yield self.pubkey_of_cert(second)
        self.assertEqual(ours, theirs)
        a, b = yield defer.gatherResults([self.serial_of(first), self.serial_of(second)])
        self.assertNotEqual(a, b)

    @defer.inlineCallbacks
    def test_curl_over_tls12_and_tls13(self):
        for flags, version in ((("--tlsv1.2", "--tls-max", "1.2"), "TLSv1.2"), (("--tlsv1.3",), "TLSv1.3")):
            cn = f"interop-{version.lower()}"
            _, csr = yield self.openssl_csr(cn, ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"))
            answer = yield self.curl(f"{EST}/simpleenroll", *flags, *self.basic(), "-H",
                                     "Content-Type: application/pkcs10", "--data-binary", f"@{csr}",
                                     verbose=True)
            self.assertCertsOnly(answer)
            self.assertRegex(answer.stderr, rf"SSL connection using {re.escape(version)} ")
            cert, _ = yield self.certs_from_body(answer.body, cn)
            yield self.assertVerifies(cert)

    # -- the TLS server certificate, seen by openssl s_client ---------------------------------

    @defer.inlineCallbacks
    def test_s_client_verifies_server_chain(self):
        proc = yield self.tool("openssl", "s_client", "-connect", f"127.0.0.1:{self.server.port}",
                               "-CAfile", self.server.ca_pem, "-verify_return_error", "-verify_ip", "127.0.0.1",
                               input=b"", check=False)
        out = proc.stdout.decode(errors="replace")
        self.assertEqual(proc.returncode, 0, out + proc.stderr.decode(errors="replace"))
        self.assertIn("Verify return code: 0 (ok)", out)
        leaf = self.path("server.pem")
        match = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", out, re.S)
        self.assertIsNotNone(match, out)
        leaf.write_text(match.group(0))
        yield self.assertVerifies(leaf, purpose="sslserver")
        ext = yield self.tool("openssl", "x509", "-in", leaf, "-noout", "-ext", "extendedKeyUsage,subjectAltName")
        text = ext.stdout.decode()
        self.assertIn("TLS Web Server Authentication", text)
        self.assertIn("CMC Registration Authority", text)  # openssl's name for id-kp-cmcRA
        self.assertIn("IP Address:127.0.0.1", text)
        self.assertIn("DNS:localhost", text)
        # and the OIDs themselves, read by a second implementation
        cert = x509.load_pem_x509_certificate(leaf.read_bytes())
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertIn(ExtendedKeyUsageOID.SERVER_AUTH, eku)
        self.assertIn(CMC_RA, eku)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertIn("127.0.0.1", [str(ip) for ip in san.get_values_for_type(x509.IPAddress)])

    # -- refusals through curl --------------------------------------------------------------

    @defer.inlineCallbacks
    def assertRefused(self, status: int, path: str, *args):
        answer = yield self.curl(path, *args)
        self.assertEqual(answer.status, status, answer.body)
        if status == 401:  # a challenge: empty, as Bouncy Castle's client needs
            self.assertEqual((answer.body, answer.header("content-length")), (b"", "0"))
            return answer
        self.assertTrue((answer.header("content-type") or "").startswith("text/plain"), answer.headers)
        text = answer.body.decode("utf-8")
        self.assertTrue(text.endswith("\n") and text.count("\n") == 1 and text.strip(), repr(text))
        self.assertNotIn("Traceback", text)
        self.assertNotIn("-----BEGIN", text)
        return answer

    def enroll_args(self, *auth, data: str, content_type: str = "application/pkcs10"):
        return (*auth, "-H", f"Content-Type: {content_type}", "--data-binary", data)

    @defer.inlineCallbacks
    def a_csr(self):
        _, csr = yield self.openssl_csr("refused", ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"))
        return csr

    @defer.inlineCallbacks
    def test_refused_without_credentials_401_basic_challenge(self):
        csr = yield self.a_csr()
        answer = yield self.assertRefused(401, f"{EST}/simpleenroll",
                                          *self.enroll_args(data=f"@{csr}"))
        self.assertEqual(answer.header("www-authenticate"), f'Basic realm="{REALM}"')

    @defer.inlineCallbacks
    def test_curl_anyauth_answers_the_basic_challenge(self):
        """curl --anyauth sends nothing first, reads WWW-Authenticate, then retries with Basic."""
        _, csr = yield self.openssl_csr("interop-anyauth", ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"))
        answer = yield self.curl(f"{EST}/simpleenroll", "--anyauth", *self.basic(), "-H",
                                 "Content-Type: application/pkcs10", "--data-binary", f"@{csr}", verbose=True)
        self.assertCertsOnly(answer)
        self.assertRegex(answer.stderr, r"< HTTP/1\.1 401")
        self.assertRegex(answer.stderr, r"> Authorization: Basic ")
        cert, _ = yield self.certs_from_body(answer.body, "anyauth")
        yield self.assertVerifies(cert)

    @defer.inlineCallbacks
    def test_refused_wrong_password_401(self):
        csr = yield self.a_csr()
        answer = yield self.assertRefused(401, f"{EST}/simpleenroll",
                                          *self.enroll_args("-u", f"{USER}:not-the-password", data=f"@{csr}"))
        self.assertEqual(answer.header("www-authenticate"), f'Basic realm="{REALM}"')
        # The body is empty (Bouncy Castle); the reason is in the server's log.
        self.assertIn("401 /.well-known/est/simpleenroll: wrong username or password", self.server.log())

    @defer.inlineCallbacks
    def test_refused_wrong_content_type_415(self):
        csr = yield self.a_csr()
        yield self.assertRefused(415, f"{EST}/simpleenroll",
                                 *self.enroll_args(*self.basic(), content_type="application/json", data=f"@{csr}"))

    @defer.inlineCallbacks
    def test_refused_put_simpleenroll_405(self):
        answer = yield self.assertRefused(405, f"{EST}/simpleenroll", "-X", "PUT", *self.basic())
        self.assertEqual(answer.header("allow"), "GET, POST")
        # GET picks up a result announced in the PAL (RFC 8295 9); here there is none
        answer = yield self.assertRefused(404, f"{EST}/simpleenroll", *self.basic())
        self.assertIn("no enrollment result", answer.body.decode())

    @defer.inlineCallbacks
    def test_refused_unknown_paths_404(self):
        for path in (f"{EST}/nosuchop", f"{EST}/nolabel/cacerts", "/index.html", "/"):
            yield self.assertRefused(404, path)

    @defer.inlineCallbacks
    def test_refused_garbage_body_400(self):
        yield self.assertRefused(400, f"{EST}/simpleenroll",
                                 *self.enroll_args(*self.basic(), data="this is not base64 !!!"))
        not_a_csr = self.path("not-a-csr.b64")
        not_a_csr.write_bytes(base64.b64encode(b"\x30\x03\x02\x01\x01"))
        yield self.assertRefused(400, f"{EST}/simpleenroll",
                                 *self.enroll_args(*self.basic(), data=f"@{not_a_csr}"))

    # -- the project's own `est` command ----------------------------------------------------

    @defer.inlineCallbacks
    def test_est_cacerts_insecure_bootstrap_prints_fingerprint(self):
        out = self.path("bootstrap.pem")
        proc = yield self.tool(BIN / "est", "cacerts", "--server", self.server.url, "--insecure-bootstrap",
                               "-o", out)
        stderr = proc.stderr.decode()
        fp = yield self.tool("openssl", "x509", "-in", self.server.ca_pem, "-noout", "-fingerprint", "-sha256")
        expected = fp.stdout.decode().strip().partition("=")[2].lower()  # AB:CD:... -> ab:cd:...
        self.assertEqual(len(expected), 32 * 3 - 1)
        self.assertIn(f"SHA-256 {expected}", stderr)
        self.assertEqual(proc.stdout, b"")
        self.assertEqual(out.read_text(), self.server.ca_pem.read_text())

    @defer.inlineCallbacks
    def test_est_enroll_writes_cert_openssl_verifies(self):
        key, cert = self.path("est.key"), self.path("est.pem")
        proc = yield self.tool(BIN / "est", "enroll", "--server", self.server.url, "--anchor",
                               self.server.ca_pem, "--user", USER, "--password-file", self.server.password_file,
                               "--subject", "CN=est-cli", "--key-out", key, "-o", cert)
        self.assertIn("enrolled: CN=est-cli", proc.stderr.decode())
        yield self.assertVerifies(cert)
        subject = yield self.subject_line(cert)
        self.assertEqual(subject, "subject=CN = est-cli")
        self.assertEqual(stat.S_IMODE(key.stat().st_mode), 0o600)
        theirs = yield self.pubkey_of_key(key)
        ours = yield self.pubkey_of_cert(cert)
        self.assertEqual(ours, theirs)

    @defer.inlineCallbacks
    def test_est_enroll_wrong_password_exit_1_one_line(self):
        bad = self.path("bad.password")
        bad.write_text("not-the-password\n")
        cert = self.path("never.pem")
        proc = yield self.tool(BIN / "est", "enroll", "--server", self.server.url, "--anchor",
                               self.server.ca_pem, "--user", USER, "--password-file", bad,
                               "--subject", "CN=est-cli-bad", "--key-out", self.path("bad.key"), "-o", cert,
                               check=False)
        stderr = proc.stderr.decode()
        self.assertEqual(proc.returncode, 1, stderr)
        self.assertEqual(stderr.count("\n"), 1, stderr)
        self.assertTrue(stderr.startswith("est: "), stderr)
        self.assertIn("401", stderr)
        self.assertNotIn("Traceback", stderr)
        self.assertFalse(cert.exists())


class RsaCaTests(InteropBase):
    """A CA whose key is RSA-2048 in the token: openssl checks the token's RSA signatures."""

    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.server = EstServer(self.tmp / "est-rsa", ca_key_type="rsa2048")
        self.addCleanup(support.in_thread, self.server.shutdown)
        yield support.in_thread(self.server.prepare)
        yield support.in_thread(self.server.start)

    @defer.inlineCallbacks
    def test_rsa_ca_chain_and_issued_certificate_verify(self):
        text = yield self.tool("openssl", "x509", "-in", self.server.ca_pem, "-noout", "-text")
        self.assertIn("Public-Key: (2048 bit)", text.stdout.decode())
        yield self.assertVerifies(self.server.ca_pem)
        proc = yield self.tool("openssl", "s_client", "-connect", f"127.0.0.1:{self.server.port}",
                               "-CAfile", self.server.ca_pem, "-verify_return_error", "-verify_ip", "127.0.0.1",
                               input=b"", check=False)
        self.assertIn("Verify return code: 0 (ok)", proc.stdout.decode(errors="replace"))
        key, csr = yield self.openssl_csr("rsa-ca-client", ("-newkey", "ec", "-pkeyopt",
                                                             "ec_paramgen_curve:P-256"))
        _, cert = yield self.curl_enroll(csr, *self.basic(), name="rsa-ca-client")
        yield self.assertVerifies(cert)
        text = yield self.tool("openssl", "x509", "-in", cert, "-noout", "-text")
        self.assertIn("Signature Algorithm: sha256WithRSAEncryption", text.stdout.decode())


class TwistdPluginTests(InteropBase):
    def test_twistd_help_lists_est(self):
        proc = subprocess.run([str(BIN / "twistd"), "--help"], capture_output=True, timeout=60, cwd=self.tmp)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout.decode(), r"(?m)^\s+est\s+HSM-backed EST server")
        proc = subprocess.run([str(BIN / "twistd"), "est", "--help"], capture_output=True, timeout=60,
                              cwd=self.tmp)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("--config=", proc.stdout.decode())


class LifecycleTests(InteropBase):
    """A server of its own per test: stopping it is part of the test."""

    @defer.inlineCallbacks
    def setUp(self):
        super().setUp()
        self.server = EstServer(self.tmp / "est")
        self.addCleanup(support.in_thread, self.server.shutdown)
        yield support.in_thread(self.server.prepare)
        yield support.in_thread(self.server.start)

    def assertStoppedCleanly(self, code: int) -> None:
        """A clean stop on SIGTERM: the whole shutdown logged, no traceback.

        Exit status: 0, or death by the SIGTERM itself. twistd re-raises the
        signal that stopped the reactor once its shutdown is complete
        (twisted/scripts/twistd.py: ``app._exitWithSignal(runner._exitSignal)``),
        so a parent (a shell: 143; systemd: a clean stop) can tell why it ended.
        """
        log = self.server.log()
        self.assertIn(code, (0, -signal.SIGTERM), log)
        self.assertIn("Received SIGTERM, shutting down.", log)
        self.assertIn(f"(TLS Port {self.server.port} Closed)", log)
        self.assertIn("Main loop terminated.", log)
        self.assertIn("Server Shut Down.", log)
        self.assertNotIn("Traceback", log)
        self.assertNotIn("Unhandled", log)

    @defer.inlineCallbacks
    def test_sigterm_stops_cleanly_and_issued_certs_are_listed(self):
        _, csr = yield self.openssl_csr("life-curl", ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"))
        _, by_curl = yield self.curl_enroll(csr, *self.basic(), name="life-curl")
        by_est = self.path("life-est.pem")
        yield self.tool(BIN / "est", "enroll", "--server", self.server.url, "--anchor", self.server.ca_pem,
                        "--user", USER, "--password-file", self.server.password_file, "--subject", "CN=life-est",
                        "--key-out", self.path("life-est.key"), "-o", by_est)
        serials = yield defer.gatherResults([self.serial_of(by_curl), self.serial_of(by_est)])

        code = yield support.in_thread(self.server.stop)
        self.assertStoppedCleanly(code)
        with self.assertRaises(OSError):  # the port is closed
            socket.create_connection(("127.0.0.1", self.server.port), timeout=2).close()

        listing = yield support.in_thread(self.server.estctl, "cert", "list")
        rows = [line.split("\t") for line in listing.stdout.decode().splitlines()]
        by_serial = {int(row[0], 16): row for row in rows}
        for serial, cn in zip(serials, ("life-curl", "life-est")):
            self.assertIn(serial, by_serial, listing.stdout)
            row = by_serial[serial]
            self.assertEqual((row[1], row[3], row[4], row[5]), ("valid", "default", USER, f"CN={cn}"))
        self.assertEqual(len(rows), 4, listing.stdout)  # plus the TLS server and content signer certificates

    @defer.inlineCallbacks
    def test_restart_serves_same_ca_and_clients(self):
        before = yield self.curl(f"{EST}/cacerts")
        code = yield support.in_thread(self.server.stop)
        self.assertStoppedCleanly(code)
        yield support.in_thread(self.server.start)
        after = yield self.curl(f"{EST}/cacerts")
        self.assertEqual((after.status, after.body), (200, before.body))
        _, csr = yield self.openssl_csr("after-restart", ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"))
        _, cert = yield self.curl_enroll(csr, *self.basic(), name="after-restart")
        yield self.assertVerifies(cert)
