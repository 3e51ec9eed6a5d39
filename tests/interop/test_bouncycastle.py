"""Bouncy Castle's EST client (org.bouncycastle.est, Debian's bcpkix) against
the sample configuration, driven by our own small Java program
(java/EstDriver.java).

The driver is compiled once per test run into trial's temp directory and runs
as one JVM (``EstDriver --batch``) for the whole module: each test sends it
one operation a line and reads its answer lines (see the driver's javadoc),
so the JVM's start-up and JIT warm-up are paid once. Each issued certificate
is checked with ``openssl verify``, its subject, SAN and key.
"""
from __future__ import annotations

import atexit
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from twisted.internet import defer, reactor
from twisted.trial import unittest

from .. import support
from ..test_e2e_interop import USER
from .server import LIMITED_USER, SampleServerCase

SOURCE = Path(__file__).resolve().parent / "java" / "EstDriver.java"
JARS = tuple(Path("/usr/share/java") / f"{name}.jar" for name in ("bcprov", "bcpkix", "bcutil", "bctls"))
CLASSPATH_JARS = os.pathsep.join(str(j) for j in JARS)
EC_PUBLIC_KEY, P256, ECDSA_SHA256 = "1.2.840.10045.2.1", "1.2.840.10045.3.1.7", "1.2.840.10045.4.3.2"
EST_EXCEPTION = "org.bouncycastle.est.ESTException"


def require_java() -> None:
    missing = [tool for tool in ("java", "javac") if not shutil.which(tool)]
    missing += [str(jar) for jar in JARS if not jar.exists()]
    if missing:
        raise unittest.SkipTest(f"needs {', '.join(missing)} (apt: default-jdk-headless, libbcprov-java,"
                                " libbcpkix-java, libbcutil-java, libbctls-java; `make system` installs them)")


# -- the driver -------------------------------------------------------------------------


@dataclass
class Outcome:
    """The lines the driver printed for one operation, its last ``OK op`` or ``ERROR op ...``."""

    lines: list[str]
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.lines) and self.lines[-1].startswith("OK ")

    @property
    def error(self) -> tuple[str, str, str]:
        """(exception class, ESTException status code or '-', message) of an ERROR line."""
        last = self.lines[-1] if self.lines else ""
        if not last.startswith("ERROR "):
            raise AssertionError(f"the driver did not fail:\n{self}")
        _, _, cls, status, message = (last.split(" ", 4) + [""])[:5]
        return cls, status, message

    def tagged(self, tag: str) -> list[str]:
        """The rest of every line starting with ``tag``."""
        return [line[len(tag) + 1:] for line in self.lines if line.startswith(tag + " ")]

    def file(self, kind: str) -> Path:
        for rest in self.tagged("WROTE"):
            k, _, path = rest.partition(" ")
            if k == kind:
                return Path(path)
        raise AssertionError(f"the driver wrote no {kind} file:\n{self}")

    def __str__(self) -> str:
        return "\n".join(self.lines) + (f"\n-- stderr (end) --\n{self.stderr}" if self.stderr else "")


class DriverDied(AssertionError):
    pass


class BcDriver:
    """One ``java EstDriver --batch`` process; one operation at a time (trial runs tests one by one)."""

    def __init__(self, classes: Path, workdir: Path):
        self.stderr_path = workdir / f"bc-driver-{int(time.time() * 1000)}.stderr"
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                ["java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp",
                 f"{classes}{os.pathsep}{CLASSPATH_JARS}", "EstDriver", "--batch"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=workdir, text=True,
                bufsize=1)
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, name="bc-driver-stdout", daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self, size: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def send(self, *words) -> None:
        """Blocking: one line to the driver (an operation, or the go-ahead enroll-pending waits for)."""
        assert self.proc.stdin is not None
        line = "\t".join(str(w) for w in words)
        if "\n" in line:
            raise ValueError("a driver line holds no newline")
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read_until(self, *tags: str, timeout: float = 60) -> Outcome:
        """Blocking: lines up to one starting with one of ``tags``, or the operation's OK/ERROR line."""
        lines: list[str] = []
        end = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                self.kill()  # the next test gets a fresh driver
                raise AssertionError(f"the driver said nothing more for {timeout} s:\n"
                                     f"{Outcome(lines, self.stderr_tail())}") from None
            if line is None:
                self.proc.wait()
                raise DriverDied(f"the driver exited ({self.proc.returncode}):\n{Outcome(lines, self.stderr_tail())}")
            lines.append(line)
            if line.startswith(("OK ", "ERROR ", *(t + " " for t in tags))):
                return Outcome(lines, "" if line.startswith("OK ") else self.stderr_tail())

    def run(self, *argv, timeout: float = 60) -> Outcome:
        """Blocking: one whole operation."""
        self.send(*argv)
        return self.read_until(timeout=timeout)

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        if self.alive and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()  # EOF: the batch ends
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


_classes: Path | None = None
_driver: BcDriver | None = None


def compiled_driver() -> Path:
    """Blocking: EstDriver.java compiled (once per test run) into a directory under trial's temp dir."""
    global _classes
    if _classes is None:
        out = Path(tempfile.mkdtemp(prefix="bc-driver-", dir=os.getcwd()))
        proc = subprocess.run(["javac", "-Xlint:all,-path", "-cp", CLASSPATH_JARS, "-d", str(out), str(SOURCE)],
                              capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise AssertionError(f"javac failed ({proc.returncode}):\n{proc.stdout.decode()}{proc.stderr.decode()}")
        _classes = out
    return _classes


def _close_driver() -> None:
    if _driver is not None:
        _driver.close()


def shared_driver() -> BcDriver:
    """Blocking: the running driver; a new one if there is none or it died (or was killed after a timeout)."""
    global _driver
    if _driver is None or not _driver.alive:
        first = _driver is None
        classes = compiled_driver()
        _driver = BcDriver(classes, classes.parent)
        if first:
            reactor.addSystemEventTrigger("before", "shutdown", _close_driver)
            atexit.register(_close_driver)
    return _driver


# -- the tests ----------------------------------------------------------------------------


class BouncyCastleTests(SampleServerCase):
    """Bouncy Castle's ESTService with BCJSSE as TLS provider, against the sample configuration."""

    @defer.inlineCallbacks
    def setUp(self):
        require_java()
        yield super().setUp()
        self.driver = yield support.in_thread(shared_driver)

    def argv(self, op: str, *options, name: str | None = None) -> list:
        return ["--server", f"127.0.0.1:{self.server.port}", "--ca", self.server.ca_pem,
                "--out", self.path(name or op), *options, op]

    def bc(self, op: str, *options, name: str | None = None) -> defer.Deferred:
        """One driver operation; fires with its Outcome."""
        return support.in_thread(self.driver.run, *self.argv(op, *options, name=name))

    def dev(self, auth: str = "basic") -> tuple:
        """HttpAuth for the client ``dev`` (allowed on every label): basic, or digest-capable."""
        return ("--user", USER, "--password-file", self.server.password_file, "--auth", auth)

    def assertOk(self, outcome: Outcome) -> None:
        self.assertTrue(outcome.ok, f"Bouncy Castle failed:\n{outcome}")

    @defer.inlineCallbacks
    def assertEnrolled(self, outcome: Outcome, cn: str, dns: str | None = None):
        """The driver succeeded and wrote a certificate for its key that passes assertIssued; fires with it."""
        self.assertOk(outcome)
        cert = outcome.file("cert")
        yield self.assertIssued(cert, outcome.file("key"), cn, dns)
        return cert

    def assertAuth(self, outcome: Outcome, expected: str) -> None:
        """What HttpAuth finally sent (``Basic``, ``Digest algorithm=MD5``...) and that it got a 200."""
        self.assertEqual(outcome.tagged("AUTH"), [f"{expected} status=200"], str(outcome))

    # -- distribution of the CA certificate and CSR attributes -------------------------------

    @defer.inlineCallbacks
    def test_cacerts(self):
        outcome = yield self.bc("cacerts")
        self.assertOk(outcome)
        self.assertEqual(outcome.tagged("CERTS"), ["1 trusted=true"])
        [received] = x509.load_pem_x509_certificates(outcome.file("cacerts").read_bytes())
        self.assertEqual(received, x509.load_pem_x509_certificate(self.server.ca_pem.read_bytes()))

    @defer.inlineCallbacks
    def test_csrattrs(self):
        """The sample's default profile: EC P-256 first, so the key type, curve and ECDSA-SHA256."""
        outcome = yield self.bc("csrattrs")
        self.assertOk(outcome)
        self.assertEqual(outcome.tagged("ATTR"), [f"{EC_PUBLIC_KEY} {P256}"], str(outcome))
        self.assertEqual(outcome.tagged("OID"), [ECDSA_SHA256], str(outcome))

    # -- /simpleenroll with HTTP authentication ----------------------------------------------

    @defer.inlineCallbacks
    def test_enroll_basic(self):
        outcome = yield self.bc("enroll", *self.dev("basic"), "--subject", "CN=bc-basic", "--dns", "bc-basic.example")
        yield self.assertEnrolled(outcome, "bc-basic", "bc-basic.example")
        self.assertAuth(outcome, "Basic")

    @defer.inlineCallbacks
    def test_enroll_digest_capable_auth_default_label(self):
        """The digest-capable HttpAuth answers the first challenge only: on the default label that is Basic."""
        outcome = yield self.bc("enroll", *self.dev("digest"), "--subject", "CN=bc-digest-default")
        yield self.assertEnrolled(outcome, "bc-digest-default")
        self.assertAuth(outcome, "Basic")

    @defer.inlineCallbacks
    def test_enroll_digest_md5_legacy_label(self):
        """The label ``legacy`` challenges with MD5 Digest only; Bouncy Castle answers it and is enrolled."""
        outcome = yield self.bc("enroll", *self.dev("digest"), "--label", "legacy", "--subject", "CN=bc-legacy")
        cert = yield self.assertEnrolled(outcome, "bc-legacy")
        self.assertAuth(outcome, "Digest algorithm=MD5")
        row = yield self.issued_row(cert)
        self.assertEqual((row[1], row[3], row[4]), ("valid", "legacy", USER))

    @defer.inlineCallbacks
    def test_enroll_pop_tls12_tls_unique(self):
        """simpleEnrollPoP: challengePassword = base64 tls-unique of the connection the CSR is sent on (the
        server refuses a challengePassword that is not that connection's binding)."""
        outcome = yield self.bc("enroll-pop", *self.dev("basic"), "--tls", "1.2", "--subject", "CN=bc-pop")
        yield self.assertEnrolled(outcome, "bc-pop")
        self.assertAuth(outcome, "Basic")
        bindings = outcome.tagged("BINDING")
        self.assertTrue(bindings, str(outcome))
        for binding in bindings:  # one per connection: the first got the 401
            self.assertRegex(binding, r"^tls-unique TLSv1\.2 [A-Za-z0-9+/]{16}$")  # 12-byte Finished
        self.assertEqual(len(set(bindings)), len(bindings))

    @defer.inlineCallbacks
    def test_reenroll_with_tls_client_certificate(self):
        first = yield self.bc("enroll", *self.dev("basic"), "--subject", "CN=bc-renew", "--dns", "bc-renew.example",
                              name="first")
        cert = yield self.assertEnrolled(first, "bc-renew", "bc-renew.example")
        second = yield self.bc("reenroll", "--tls-cert", cert, "--tls-key", first.file("key"), name="second")
        renewed = yield self.assertEnrolled(second, "bc-renew", "bc-renew.example")
        self.assertEqual(second.tagged("AUTH"), [])  # no HttpAuth: the TLS client certificate alone
        old, new = yield defer.gatherResults([self.pubkey_of_cert(cert), self.pubkey_of_cert(renewed)])
        self.assertNotEqual(old, new)
        row = yield self.issued_row(renewed)
        self.assertEqual((row[1], row[3], row[4]), ("valid", "default", USER))

    @defer.inlineCallbacks
    def test_serverkeygen(self):
        outcome = yield self.bc("serverkeygen", *self.dev("basic"), "--subject", "CN=bc-keygen")
        cert = yield self.assertEnrolled(outcome, "bc-keygen")  # the returned private key is the certificate's
        self.assertAuth(outcome, "Basic")
        csr_key = yield self.pubkey_of_key(outcome.file("csr-key"))
        certified = yield self.pubkey_of_cert(cert)
        self.assertNotEqual(csr_key, certified)  # the server made the key, not just certified ours

    @defer.inlineCallbacks
    def test_manual_approval_202_retry_after_then_certificate(self):
        """Label ``manual``: 202 + Retry-After, the operator approves, Bouncy Castle's retry gets the certificate."""
        cn = f"bc-manual-{int(time.time() * 1000)}"
        argv = self.argv("enroll-pending", *self.dev("basic"), "--label", "manual", "--subject", f"CN={cn}")
        yield support.in_thread(self.driver.send, *argv)
        waiting = yield support.in_thread(self.driver.read_until, "PENDING")
        if not waiting.lines[-1].startswith("PENDING "):
            self.fail(f"no 202 from the label 'manual':\n{waiting}")
        try:
            m = re.fullmatch(r"PENDING notBefore=(\d+) now=(\d+)", waiting.lines[-1])
            self.assertIsNotNone(m, str(waiting))
            delay = (int(m.group(1)) - int(m.group(2))) / 1000  # notBefore = time of the 202 + Retry-After
            self.assertTrue(abs(delay - self.server.retry_after) <= 2, (delay, self.server.retry_after, str(waiting)))
            rows = yield support.in_thread(self.server.pending)
            mine = [r for r in rows if r["subject"] == f"CN={cn}"]
            self.assertEqual(len(mine), 1, rows)
            self.assertEqual((mine[0]["state"], mine[0]["label"], mine[0]["client"]), ("pending", "manual", USER))
            yield support.in_thread(self.server.estctl, "pending", "approve", mine[0]["id"])
        finally:
            # the driver asks again whatever happened, and its answer is read here, not by the next test
            yield support.in_thread(self.driver.send, "continue")
            outcome = yield support.in_thread(self.driver.read_until)
        cert = yield self.assertEnrolled(outcome, cn)
        row = yield self.issued_row(cert)
        self.assertEqual((row[1], row[3], row[4]), ("valid", "manual", USER))

    # -- refusals: what Bouncy Castle surfaces ------------------------------------------------

    @defer.inlineCallbacks
    def test_wrong_password_401(self):
        bad = self.path("bad.password")
        bad.write_text("not-the-password\n")
        outcome = yield self.bc("enroll", "--user", USER, "--password-file", bad, "--subject", "CN=bc-bad")
        self.assertEqual(outcome.error[:2], (EST_EXCEPTION, "401"), str(outcome))
        self.assertEqual(outcome.tagged("AUTH"), ["Basic status=401"], str(outcome))

    @defer.inlineCallbacks
    def test_client_not_allowed_on_label_403(self):
        outcome = yield self.bc("enroll", "--user", LIMITED_USER, "--password-file", self.server.limited_password_file,
                                "--label", "manual", "--subject", "CN=bc-limited")
        self.assertEqual(outcome.error[:2], (EST_EXCEPTION, "403"), str(outcome))
        self.assertEqual(outcome.tagged("AUTH"), ["Basic status=403"], str(outcome))

    @defer.inlineCallbacks
    def test_unknown_label_404(self):
        outcome = yield self.bc("enroll", *self.dev("basic"), "--label", "nosuchlabel", "--subject", "CN=bc-nolabel")
        self.assertEqual(outcome.error[:2], (EST_EXCEPTION, "404"), str(outcome))
        self.assertEqual(outcome.tagged("AUTH"), ["none status=404"], str(outcome))  # no challenge: no label

    @defer.inlineCallbacks
    def test_wrong_password_digest_legacy_401(self):
        """The same refusal after an MD5 Digest exchange: the final 401 carries a fresh challenge."""
        bad = self.path("bad.password")
        bad.write_text("not-the-password\n")
        outcome = yield self.bc("enroll", "--user", USER, "--password-file", bad, "--auth", "digest",
                                "--label", "legacy", "--subject", "CN=bc-bad-digest")
        self.assertEqual(outcome.error[:2], (EST_EXCEPTION, "401"), str(outcome))
        self.assertEqual(outcome.tagged("AUTH"), ["Digest algorithm=MD5 status=401"], str(outcome))
        challenges = outcome.tagged("CHALLENGE")
        self.assertEqual(len(challenges), 1, str(outcome))
        self.assertTrue(challenges[0].startswith("Digest "), challenges)
        self.assertNotIn("algorithm", challenges[0])  # MD5 by default (RFC 2617), as libest and BC expect
