"""web/ticket_keys.py: the session-ticket key set on a pyOpenSSL context reads
back as set, two contexts given the same key resume each other's sessions
(TLS 1.2 and 1.3, in memory) and contexts with different keys do not, the key
of a period is the same everywhere and changes with the period, and a process
that cannot set keys warns once and keeps OpenSSL's own."""
from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from OpenSSL._util import lib as _ossl
from twisted.internet import task
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from estappliance.web import ticket_keys as tk
from estappliance.web.tls import ServerContextFactory, build_context


def write_server_files(where: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    where.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = where / "server.key", where / "server.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def _pump(a: SSL.Connection, b: SSL.Connection) -> None:
    """Move every byte waiting in either memory BIO to the other side."""
    moved = True
    while moved:
        moved = False
        for src, dst in ((a, b), (b, a)):
            try:
                data = src.bio_read(65536)
            except SSL.WantReadError:
                continue
            dst.bio_write(data)
            moved = True


def _step(conn: SSL.Connection) -> bool:
    try:
        conn.do_handshake()
        return True
    except SSL.WantReadError:
        return False


def client_context(version: int) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(version)
    ctx.set_max_proto_version(version)
    return ctx


def handshake(server_ctx: SSL.Context, client_ctx: SSL.Context, session: SSL.Session | None = None
              ) -> tuple[bool, SSL.Session]:
    """One in-memory handshake of a new client connection (offering
    ``session``) with a server on ``server_ctx``: (whether it resumed, the
    client's session after reading the server's tickets)."""
    client = SSL.Connection(client_ctx, None)
    client.set_connect_state()
    if session is not None:
        client.set_session(session)
    server = SSL.Connection(server_ctx, None)
    server.set_accept_state()
    for _ in range(20):
        done = [_step(client), _step(server)]
        _pump(client, server)
        if all(done):
            break
    else:
        raise AssertionError("the handshake did not finish")
    # TLS 1.3 tickets come after the handshake: let the client read them.
    server.send(b"x")
    _pump(client, server)
    assert client.recv(1) == b"x"
    reused = bool(_ossl.SSL_session_reused(server._ssl))
    # A clean close: OpenSSL drops (makes unresumable) the session of a connection freed without one.
    client.shutdown()
    server.shutdown()
    _pump(client, server)
    return reused, client.get_session()


class TicketKeyContextTests(unittest.TestCase):
    def setUp(self):
        self.key_file, self.cert_file = write_server_files(Path(self.mktemp()))

    def context(self) -> SSL.Context:
        return build_context(self.key_file, self.cert_file, [])

    def test_set_keys_read_back(self):
        ctx = self.context()
        keys = os.urandom(80)
        tk.set_ticket_keys(ctx, keys)
        self.assertEqual(tk.ticket_keys(ctx), keys)
        with self.assertRaises(ValueError):
            tk.set_ticket_keys(ctx, keys[:48])
        self.assertEqual(tk.ticket_keys(ctx), keys)

    def test_each_context_has_its_own_key_until_set(self):
        self.assertNotEqual(tk.ticket_keys(self.context()), tk.ticket_keys(self.context()))

    def resumes_across(self, version: int, same_key: bool) -> bool:
        one, two = self.context(), self.context()
        keys = os.urandom(80)
        tk.set_ticket_keys(one, keys)
        tk.set_ticket_keys(two, keys if same_key else os.urandom(80))
        client = client_context(version)
        reused, session = handshake(one, client)
        self.assertFalse(reused)
        again, _ = handshake(one, client, session)
        self.assertTrue(again)  # the same context resumes in any case
        other, _ = handshake(two, client, session)
        return other

    def test_tls12_ticket_of_one_context_resumes_on_another_with_the_same_key(self):
        self.assertTrue(self.resumes_across(SSL.TLS1_2_VERSION, same_key=True))
        self.assertFalse(self.resumes_across(SSL.TLS1_2_VERSION, same_key=False))

    def test_tls13_ticket_of_one_context_resumes_on_another_with_the_same_key(self):
        self.assertTrue(self.resumes_across(SSL.TLS1_3_VERSION, same_key=True))
        self.assertFalse(self.resumes_across(SSL.TLS1_3_VERSION, same_key=False))


class PeriodKeyTests(unittest.TestCase):
    def test_same_secret_and_period_same_key_everywhere(self):
        secret = os.urandom(32)
        self.assertEqual(tk.period_keys(secret, 7), tk.period_keys(secret, 7))
        self.assertEqual(len(tk.period_keys(secret, 7)), 80)
        self.assertNotEqual(tk.period_keys(secret, 7), tk.period_keys(secret, 8))
        self.assertNotEqual(tk.period_keys(secret, 7), tk.period_keys(os.urandom(32), 7))
        # The key name (first 16 bytes) differs per period too, so OpenSSL tells old tickets apart.
        self.assertNotEqual(tk.period_keys(secret, 7)[:16], tk.period_keys(secret, 8)[:16])

    def test_period_number_and_time_left(self):
        now = [tk.PERIOD * 5 + 100.0]
        keys = tk.SessionTicketKeys(os.urandom(32), clock=lambda: now[0])
        self.assertEqual(keys.period_number(), 5)
        self.assertEqual(keys.seconds_left(), tk.PERIOD - 100)
        self.assertEqual(keys.current(), tk.period_keys(keys.secret, 5))


class SessionTicketKeysTests(unittest.TestCase):
    def setUp(self):
        self.key_file, self.cert_file = write_server_files(Path(self.mktemp()))
        self.secret = os.urandom(32)
        self.now = [tk.PERIOD * 10 + 5.0]

    def keys(self, secret=None) -> tk.SessionTicketKeys:
        return tk.SessionTicketKeys(secret, clock=lambda: self.now[0])

    def test_factory_sets_the_period_key_on_every_context_it_holds(self):
        keys = self.keys(self.secret)
        factory = ServerContextFactory(self.key_file, self.cert_file, [], keys)
        self.assertEqual(tk.ticket_keys(factory.getContext()), tk.period_keys(self.secret, 10))
        # A reload (SIGHUP) or a CA switch puts in a new context: it gets the key too.
        factory.replace(build_context(self.key_file, self.cert_file, []))
        self.assertEqual(tk.ticket_keys(factory.getContext()), tk.period_keys(self.secret, 10))
        factory.reload(self.key_file, self.cert_file, [])
        self.assertEqual(tk.ticket_keys(factory.getContext()), tk.period_keys(self.secret, 10))

    def test_rotation_at_the_period_boundary(self):
        keys = self.keys(self.secret)
        factory = ServerContextFactory(self.key_file, self.cert_file, [], keys)
        clock = task.Clock()
        clock.advance(self.now[0])
        rotation = tk.TicketKeyRotation(keys, clock)
        rotation.startService()
        self.addCleanup(rotation.stopService)
        step = keys.seconds_left() - 10
        self.now[0] += step
        clock.advance(step)
        self.assertEqual(tk.ticket_keys(factory.getContext()), tk.period_keys(self.secret, 10))
        self.now[0] += 11
        clock.advance(11)
        self.assertEqual(tk.ticket_keys(factory.getContext()), tk.period_keys(self.secret, 11))
        self.now[0] += tk.PERIOD
        clock.advance(tk.PERIOD)
        self.assertEqual(tk.ticket_keys(factory.getContext()), tk.period_keys(self.secret, 12))

    def test_secret_had_after_start_is_applied_to_the_context_in_use(self):
        keys = self.keys(None)
        factory = ServerContextFactory(self.key_file, self.cert_file, [], keys)
        own = tk.ticket_keys(factory.getContext())
        self.assertNotEqual(own, tk.period_keys(self.secret, 10))  # OpenSSL's own meanwhile
        keys.use_secret(self.secret)
        self.assertEqual(tk.ticket_keys(factory.getContext()), tk.period_keys(self.secret, 10))

    def test_a_module_file_other_than_the_loaded_one_is_not_used(self):
        """Offsets read from another file (a copy, or an upgrade on disk) are
        never applied to the module in memory."""
        copy = Path(self.mktemp())
        shutil.copyfile(tk._openssl_module(), copy)
        self.patch(tk, "_openssl_module", lambda: copy)
        tk._ssl_ctx_ctrl.cache_clear()
        self.addCleanup(tk._ssl_ctx_ctrl.cache_clear)
        with self.assertRaises(tk.TicketKeysUnavailable) as caught:
            tk.set_ticket_keys(build_context(self.key_file, self.cert_file, []), os.urandom(80))
        self.assertIn("not loaded in this process", str(caught.exception))

    def test_symbol_not_found_warns_once_and_keeps_opensslS_keys(self):
        fake = Path(self.mktemp())
        fake.write_bytes(b"\x7fELF not really")
        self.patch(tk, "_openssl_module", lambda: fake)
        tk._ssl_ctx_ctrl.cache_clear()
        self.addCleanup(tk._ssl_ctx_ctrl.cache_clear)
        self.patch(tk.SessionTicketKeys, "_warned", False)
        warnings = []
        observer = warnings.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        keys = self.keys(self.secret)
        factory = ServerContextFactory(self.key_file, self.cert_file, [], keys)
        factory.replace(build_context(self.key_file, self.cert_file, []))
        ours = [e for e in warnings if "TLS session tickets stay per worker" in e.get("log_format", "")]
        self.assertEqual(len(ours), 1)
        self.assertIn("cannot read the symbols", ours[0]["reason"])
        self.flushLoggedErrors()
