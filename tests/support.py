"""Real parts for the tests: a SoftHSM2 token, a CA in it, a TLS listener.

One SoftHSM2 token serves the whole test run (created on first use in trial's
temp directory); each test CA gets its own key label in it, and its own state
directory. Servers listen on 127.0.0.1 only, on a port the OS picks.
"""
from __future__ import annotations

import base64
import contextlib
import io
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from pyasn1.codec.der import decoder, encoder
from twisted.internet import defer, reactor, threads
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest

from estappliance.admin import cli as estctl_cli
from estappliance.ca import setup
from estappliance.client import EstClient, HttpsConnection
from estappliance.client.http import HttpResponse
from estappliance.config import Config, from_dict
from estappliance.ra.passwords import hash_password
from estappliance.service import Appliance, build, site, tls_factory
from estappliance.store import Store, on_read_thread, on_store_thread
from estappliance.token import Token, on_token_thread

SOFTHSM_LIB = os.environ.get("EST_TEST_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "est-test"
USER_PIN = "4711-test"
SO_PIN = "9999-test"

_hsm_dir: Path | None = None


def hsm_dir() -> Path:
    """The SoftHSM2 state for this test run, created (and SOFTHSM2_CONF set) once."""
    global _hsm_dir
    if _hsm_dir is None:
        base = Path(tempfile.mkdtemp(prefix="hsm-", dir=os.getcwd()))
        tokens = base / "tokens"
        tokens.mkdir()
        conf = base / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
                        "slots.removable = false\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL, "--pin", USER_PIN,
                        "--so-pin", SO_PIN], check=True, capture_output=True)
        (base / "pin").write_text(USER_PIN + "\n")
        _hsm_dir = base
    return _hsm_dir


def token() -> Token:
    base = hsm_dir()
    return Token(SOFTHSM_LIB, TOKEN_LABEL, lambda: USER_PIN, base / "softhsm2.conf")


def store_section() -> dict:
    """The tests' [store]: a SQLite file in the test's state directory, or
    with EST_TEST_STORE=postgresql a fresh database on the suite's own
    PostgreSQL server (to run any test module on PostgreSQL)."""
    if os.environ.get("EST_TEST_STORE") == "postgresql":
        from tests.postgres_server import shared_server
        return {"path": "est.sqlite", "url": shared_server().create_database()}
    return {"path": "est.sqlite"}


def store_table(cfg: Config) -> dict:
    """``cfg``'s [store] as a TOML table (for a config file a tool reads)."""
    table: dict = {"path": cfg.store.path}
    if cfg.store.url is not None:
        table["url"] = cfg.store.url
    return table


def config(state: Path, **sections) -> Config:
    """A config whose state lives in ``state``; ``sections`` override tables."""
    base = hsm_dir()
    raw = {
        "server": {"host": "127.0.0.1", "port": 0, "server_names": ["localhost", "127.0.0.1"],
                   "max_body": 16384, "retry_after": 7},
        "token": {"module": SOFTHSM_LIB, "label": TOKEN_LABEL, "pin_file": str(base / "pin"),
                  "softhsm2_conf": str(base / "softhsm2.conf")},
        "ca": {"key_label": f"ca-{uuid.uuid4().hex[:12]}", "key_type": "ec-p256",
               "subject": "CN=Test EST CA,O=estappliance tests"},
        "store": store_section(),
    }
    for name, table in sections.items():
        raw[name] = {**raw.get(name, {}), **table}
    state.mkdir(parents=True, exist_ok=True)
    return from_dict(raw, state / "estappliance.toml")


def init_ca(cfg: Config) -> defer.Deferred:
    """``estctl init`` for a test config, run on the PKCS#11 thread."""
    def run():
        store = Store(cfg.store)
        try:
            return setup.init_root(cfg, token(), store)
        finally:
            store.close()
    return on_token_thread(run)


class TokenLabels:
    """TestCase mixin: ``self.token`` (the shared test token) and
    ``new_label()``; the keys made under those labels are destroyed after
    each test."""

    label_prefix = "t"

    def setUp(self):
        self.token = token()
        self.labels = []

    def tearDown(self):
        def destroy():
            for label in self.labels:
                self.token.destroy_keypair(label)
        return on_token_thread(destroy)

    def new_label(self) -> str:
        self.labels.append(f"{self.label_prefix}-{uuid.uuid4().hex[:10]}")
        return self.labels[-1]


@dataclass
class RunningServer:
    appliance: Appliance
    port: int
    listener: object
    ca_cert: x509.Certificate

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def store(self) -> Store:
        return self.appliance.store

    def add_client(self, name: str, password: str, labels=("default",)) -> defer.Deferred:
        return on_store_thread(self.store.clients.add_client, name, hash_password(password), labels)

    def count_certificates(self) -> defer.Deferred:
        return on_store_thread(self.store.certificates.count_certificates)

    def estctl(self, *argv) -> defer.Deferred:
        """estctl in-process with this server's config, on the PKCS#11 thread
        (estctl calls the token and the store directly): fires with
        (exit status, stdout plus any exit message)."""
        config = self.appliance.config

        def run():
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    args = estctl_cli.parser().parse_args(list(argv))
                    args.func(args, config)
                except SystemExit as e:
                    return (e.code if isinstance(e.code, int) else 1), out.getvalue() + str(e.code or "")
            return 0, out.getvalue()
        return on_token_thread(run)

    def client(self, **kw) -> EstClient:
        """An EstClient for this server that trusts its CA (blocking: use it in_thread)."""
        kw.setdefault("anchors", [self.ca_cert])
        return EstClient(self.url, **kw)

    def raw(self, method: str, path: str, headers: dict | None = None, body: bytes = b"", **kw) -> defer.Deferred:
        """One raw HTTP exchange on a fresh connection, for what our own client
        would never send; fires with the HttpResponse. ``kw``: HttpsConnection's
        (client_cert, client_key, ...)."""
        def go() -> HttpResponse:
            conn = HttpsConnection("127.0.0.1", self.port, anchors=[self.ca_cert], **kw)
            try:
                return conn.request(method, path, headers or {}, body)
            finally:
                conn.close()
        return in_thread(go)

    def stop(self) -> defer.Deferred:
        d = defer.maybeDeferred(self.listener.stopListening)
        d.addCallback(lambda _: on_read_thread(self.appliance.registrar.authenticator.reads.close))
        d.addCallback(lambda _: on_store_thread(self.store.close))
        return d


@defer.inlineCallbacks
def start_server(testcase, **sections):
    """Init a CA and serve it over TLS on 127.0.0.1; stopped at test cleanup."""
    state = Path(testcase.mktemp())
    cfg = config(state, **sections)
    ca_cert = yield init_ca(cfg)
    appliance = build(cfg)
    listener = reactor.listenSSL(0, site(appliance), tls_factory(appliance), interface="127.0.0.1")
    server = RunningServer(appliance, listener.getHost().port, listener, ca_cert)
    testcase.addCleanup(server.stop)
    return server


_client_pool: ThreadPool | None = None


def in_thread(fn, *args, **kwargs) -> defer.Deferred:
    """Run a blocking client call off the reactor (the server runs on it)."""
    global _client_pool
    if _client_pool is None:
        _client_pool = ThreadPool(4, 64, name="test-clients")
        _client_pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", _client_pool.stop)
    return threads.deferToThreadPool(reactor, _client_pool, fn, *args, **kwargs)


def run_tool(*argv, input: bytes | None = None, timeout: float = 60) -> defer.Deferred:
    """Run an outside tool (openssl, curl) off the reactor; fires with CompletedProcess."""
    return in_thread(subprocess.run, list(argv), input=input, capture_output=True, timeout=timeout)


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None


# -- independent decoding ---------------------------------------------------------------

PYASN1ALT_VECTORS = Path("/work/shared/spec/vectors/pyasn1alt")


def pyasn1alt_vector(name: str) -> bytes:
    """DER of a published sample from pyasn1-alt-modules (stored base64); the
    test is skipped where the samples are not present."""
    path = PYASN1ALT_VECTORS / name
    if not path.exists():
        raise unittest.SkipTest(f"{path} not present")
    return base64.b64decode(path.read_text())


def decode_exact(testcase, der: bytes, spec, *, open_types: bool = False):
    """Decode with pyasn1(-alt-modules): no trailing bytes, byte-exact re-encoding."""
    obj, rest = decoder.decode(der, asn1Spec=spec, decodeOpenTypes=open_types)
    name = type(spec).__name__
    testcase.assertEqual(rest, b"", f"{name}: {len(rest)} trailing bytes")
    testcase.assertEqual(encoder.encode(obj), der, f"{name}: pyasn1 re-encoding differs")
    return obj


class ExactDecoding:
    """TestCase mixin: ``self.decode(der, spec)`` with the checks of decode_exact."""

    def decode(self, der: bytes, spec):
        return decode_exact(self, der, spec)
