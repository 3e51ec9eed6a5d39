"""Two nodes, one database: real ``twistd -n est`` processes on their own
ports sharing one PostgreSQL database and one SoftHSM2 token (issue 13,
points 2 and 3, end to end).

- Under concurrent enrollments and package downloads spread over both
  nodes, one node (master and workers) is SIGKILLed; its clients go on
  with the other. Nothing answered is lost, nothing is recorded twice.
- A request waiting for approval on one node is approved with ``estctl``
  run with the other node's config, and fetched from either.
- Exactly one node holds the CRL schedule's lease; when it dies the other
  takes it over within a term and a renewal (``[crl] lease_seconds``, short
  here).
- The database going away (stopped, killed, or hung: SIGSTOP) gives 503 +
  Retry-After and a not-ready ``/readyz`` within seconds; when it is back,
  service resumes by itself.
- A CA key update made with ``estctl`` on one node: the other node's TLS
  chain, TLS and content-signer certificates and CA certificate file follow
  within seconds.
- A database at an older schema version: the node refuses to start, exits
  non-zero and says ``estctl store migrate``.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import make_csr, new_key
from estappliance.client.cmc import CertRequestSpec, FullCmcClient
from estappliance.client.est import BasicAuth, DigestAuth, EstClient
from estappliance.client.http import HttpsConnection, TLSError
from estappliance.config import load
from estappliance.pki.cms import read_certs_only
from estappliance.pki.crlsonly import read_crls_only
from estappliance.pki.encoding import decode_body
from estappliance.pki.rollover import authority_key_identifier as aki, key_identifier
from estappliance.ra.passwords import hash_password
from estappliance.service import CRL_SCHEDULE_LEASE
from estappliance.store import Store
from estappliance.token import on_token_thread

from . import support
from .nodes_support import EST, PASSWORD, USER, Node, basic, destroy_ca_keys, make_nodes
from .test_workers import wait_for
from .postgres_server import PostgresMissing, PostgresServer, _children_of, shared_server

LEASE_SECONDS = 9  # [crl] lease_seconds of these nodes: renewed every 3 s


def require_postgres() -> None:
    try:
        shared_server()
    except PostgresMissing as e:
        raise unittest.SkipTest(str(e))


def der_csr(key, cn: str) -> bytes:
    return base64.b64encode(make_csr(key, f"CN={cn}").public_bytes(serialization.Encoding.DER))


def issued_certificate(body: bytes) -> x509.Certificate:
    certs = read_certs_only(decode_body(body))
    assert len(certs) == 1, certs
    return certs[0]


def end_entity_crl(body: bytes) -> x509.CertificateRevocationList:
    """The CRL (not the ARL: that one is limited to CA certificates) of a /crls answer."""
    def is_arl(crl: x509.CertificateRevocationList) -> bool:
        try:
            return crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value.only_contains_ca_certs
        except x509.ExtensionNotFound:
            return False
    return next(c for c in map(x509.load_der_x509_crl, read_crls_only(decode_body(body))) if not is_arl(c))


def rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


class NodesCase(unittest.TestCase):
    timeout = 240
    workers: tuple[int, ...] = (2, 1)

    def setUp(self):
        require_postgres()
        self.base = Path(self.mktemp()).resolve()
        self.base.mkdir(parents=True)
        self.url = self.database_url()
        return support.in_thread(self._start)

    def database_url(self) -> str:
        return shared_server().create_database()

    def _start(self) -> None:
        self.nodes = make_nodes(self.base, self.url, self.workers, LEASE_SECONDS)
        self.addCleanup(on_token_thread, destroy_ca_keys, self.nodes[0].ca_label)
        for node in self.nodes:
            self.addCleanup(support.in_thread, node.shutdown)
            node.start()

    def open_store(self) -> Store:
        return Store(load(self.nodes[0].config).store)


# -- a) a node killed mid-load ---------------------------------------------------------------

CLIENTS = 8
ENROLLMENTS_EACH = 15
PACKAGES_EACH = 4
KILL_AFTER = 50  # answered requests (of every kind) before node a is killed


@dataclasses.dataclass
class Attempt:
    client: str
    kind: str  # enroll | fetch
    node: str
    cn: str | None = None  # the enrollment's subject CN (unique per attempt)
    answered: bool = False
    refused: bool = False  # the connection was refused: nothing reached the node

    @property
    def cut(self) -> bool:
        """Sent, or being sent, when the node died: no answer came."""
        return not self.answered and not self.refused


class Load:
    """Client threads; each does its enrollments (HTTP Basic) and package
    downloads (its certificate) in turn, round robin over the nodes it has
    not seen fail; on a lost connection it notes the attempt and goes on
    with the other node."""

    def __init__(self, nodes: list[Node], kill_after: int, on_kill_point) -> None:
        self.nodes = nodes
        self.kill_after = kill_after
        self.on_kill_point = on_kill_point
        self.lock = threading.Lock()
        self.answered = 0
        self.kill_fired = False
        self.attempts: list[Attempt] = []
        self.received: list[x509.Certificate] = []
        self.downloads: dict[str, list[bytes]] = collections.defaultdict(list)  # client -> bodies
        self.devices: dict[str, tuple] = {}  # client -> (key, certificate) of its first enrollment
        self.errors: list[str] = []

    def run(self, clients: list[str]) -> None:
        threads = [threading.Thread(target=self._client, args=(name, i), name=f"load-{name}")
                   for i, name in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)

    def _note_answer(self) -> None:
        with self.lock:
            self.answered += 1
            fire = self.answered >= self.kill_after and not self.kill_fired
            self.kill_fired = self.kill_fired or fire
        if fire:
            self.on_kill_point()

    def _client(self, name: str, index: int) -> None:
        try:
            alive = list(self.nodes)
            turn = index
            work = ["enroll"] * ENROLLMENTS_EACH
            for n in range(PACKAGES_EACH):  # downloads spread between the enrollments
                work.insert(2 + 3 * n, "fetch")
            for seq, kind in enumerate(work):
                while True:
                    node = alive[turn % len(alive)]
                    turn += 1
                    attempt = Attempt(name, kind, node.name)
                    with self.lock:
                        self.attempts.append(attempt)
                    try:
                        if kind == "enroll":
                            attempt.cn = f"load-{name}-{seq}-{node.name}-{len(self.attempts)}"
                            self._enroll(node, name, attempt.cn)
                        else:
                            self._fetch(node, name)
                    except (TLSError, OSError) as e:
                        attempt.refused = isinstance(e, ConnectionRefusedError)
                        if len(alive) == 1:
                            raise
                        alive.remove(node)  # that node is gone: the other one
                        continue
                    attempt.answered = True
                    self._note_answer()
                    break
        except Exception as e:  # the test fails on any, with its reason
            with self.lock:
                self.errors.append(f"{name}: {type(e).__name__}: {e}")

    def _enroll(self, node: Node, client: str, cn: str) -> None:
        key = new_key()
        resp = node.request("POST", f"{EST}/simpleenroll",
                            {**basic(client, "pw-" + client), "Content-Type": "application/pkcs10"},
                            der_csr(key, cn), timeout=60)
        if resp.status != 200:
            raise AssertionError(f"enroll on {node.name}: {resp.status} {resp.body[:200]!r}")
        cert = issued_certificate(resp.body)
        with self.lock:
            self.received.append(cert)
            self.devices.setdefault(client, (key, cert))

    def _fetch(self, node: Node, client: str) -> None:
        """/pal, then /firmware, as the device: TLS client authentication with
        the certificate of the client's first enrollment (on either node)."""
        key, cert = self.devices[client]
        device = {"client_cert": [cert], "client_key": key}
        pal = node.request("GET", f"{EST}/pal", timeout=60, **device)
        if pal.status != 200:
            raise AssertionError(f"/pal on {node.name}: {pal.status} {pal.body[:200]!r}")
        resp = node.request("GET", f"{EST}/firmware", timeout=60, **device)
        if resp.status != 200:
            raise AssertionError(f"/firmware on {node.name}: {resp.status} {resp.body[:200]!r}")
        with self.lock:
            self.downloads[client].append(decode_body(resp.body))


def package_content(client: str, n: int) -> bytes:
    """A distinct DER body per package (an OCTET STRING naming it)."""
    text = f"firmware {n} for {client}".encode()
    return b"\x04" + bytes([len(text)]) + text


class KilledNodeTests(NodesCase):
    def prepare_clients(self, names: list[str]) -> dict[int, tuple[str, bytes]]:
        """Blocking: the clients (Basic, label default) and their packages;
        returns package id -> (client, content)."""
        store = self.open_store()
        try:
            queued = {}
            for name in names:
                store.clients.add_client(name, hash_password("pw-" + name), ["default"])
                for n in range(PACKAGES_EACH):
                    content = package_content(name, n)
                    p = store.packages.queue_package(label="default", pal_type="0026", target_kind="client",
                                                     target=name, content=content)
                    queued[p.id] = (name, content)
            return queued
        finally:
            store.close()

    @defer.inlineCallbacks
    def test_sigkill_of_a_node_mid_load_loses_and_duplicates_nothing(self):
        a, b = self.nodes
        names = [f"dev{i}" for i in range(CLIENTS)]
        queued = yield support.in_thread(self.prepare_clients, names)
        killed_at: list[float] = []

        def kill_a():
            killed_at.append(time.monotonic())
            a.kill()

        load = Load(self.nodes, KILL_AFTER, kill_a)
        started = time.monotonic()
        yield support.in_thread(load.run, names)
        took = time.monotonic() - started
        self.assertEqual(load.errors, [])
        self.assertEqual(len(killed_at), 1, "the load ended before the kill point")
        self.assertFalse(a.running)
        self.assertTrue(wait_for(lambda: not a.pids(), 10), "a process of the killed node is left")

        # What did not get an answer: only attempts on the killed node, at
        # most one per client (each goes on with node b after its first loss).
        lost = [t for t in load.attempts if not t.answered]
        self.assertEqual({t.node for t in lost} - {"a"}, set())
        self.assertLessEqual(len(lost), CLIENTS)
        self.assertEqual(len(collections.Counter(t.client for t in lost)), len(lost))

        # Certificates: every one a client received is in the store once, by
        # serial and by DER; the store's others for this load are only those
        # of enrollments in flight on node a when it died.
        stored = rows(self.url, "SELECT serial, der, subject FROM certificates WHERE subject LIKE %s",
                      ("CN=load-%",))
        serials = collections.Counter(r[0] for r in stored)
        ders = collections.Counter(bytes(r[1]) for r in stored)
        self.assertEqual([s for s, n in serials.items() if n > 1], [])
        self.assertEqual(len(ders), len(stored))
        self.assertEqual(len(load.received), CLIENTS * ENROLLMENTS_EACH)
        for cert in load.received:
            der = cert.public_bytes(serialization.Encoding.DER)
            self.assertEqual(serials[format(cert.serial_number, "x")], 1)
            self.assertEqual(ders[der], 1)
        self.assertEqual(len({c.serial_number for c in load.received}), len(load.received))
        received_ders = {c.public_bytes(serialization.Encoding.DER) for c in load.received}
        orphans = [r[2] for r in stored if bytes(r[1]) not in received_ders]
        in_flight = {f"CN={t.cn}" for t in lost if t.kind == "enroll" and t.cut}
        self.assertLessEqual(set(orphans), in_flight)  # hence len(orphans) <= enrollments cut by the kill
        self.assertEqual(len(stored), len(load.received) + len(orphans))

        # Packages: one delivery row per package and client; each package's
        # downloads counter is what its client received, plus at most the
        # downloads of that client in flight when node a died.
        deliveries = rows(self.url, "SELECT package_id, client, downloads FROM deliveries WHERE package_id IN ("
                          + ",".join(str(i) for i in queued) + ")")
        self.assertEqual(len({(p, c) for p, c, _ in deliveries}), len(deliveries))
        by_content = {content: pid for pid, (_, content) in queued.items()}
        for name in names:
            got = collections.Counter(by_content[body] for body in load.downloads[name])
            self.assertLessEqual({queued[pid][0] for pid in got}, {name})  # only its own
            in_flight_fetches = sum(1 for t in lost if t.client == name and t.kind == "fetch" and t.cut)
            counted = {p: n for p, c, n in deliveries if c == name}
            self.assertEqual(set(counted), {pid for pid, (c, _) in queued.items() if c == name})
            extra = 0
            for pid, n in counted.items():
                self.assertGreaterEqual(n, got[pid], f"package {pid} of {name}")
                extra += n - got[pid]
            self.assertLessEqual(extra, in_flight_fetches, name)
            self.assertEqual(sum(got.values()), PACKAGES_EACH)
            # Every package reached its client, but one downloaded by a dying node.
            self.assertGreaterEqual(len(got), PACKAGES_EACH - in_flight_fetches)

        # Node b still serves, and estctl works with either node's config.
        listing = yield support.in_thread(b.estctl, "cert", "list")
        self.assertEqual(len([line for line in listing.stdout.decode().splitlines() if "CN=load-" in line]),
                         len(stored))
        self.summary = (f"{len(load.received)} enrollments and {sum(map(len, load.downloads.values()))} downloads "
                        f"by {CLIENTS} clients in {took:.1f} s; node a killed after {KILL_AFTER} answers; "
                        f"{sum(t.cut for t in lost)} requests cut in flight and {sum(t.refused for t in lost)} refused;"
                        f" {len(orphans)} certificates recorded but not received")
        print("\n" + self.summary)


# -- b) a pending request approved with the other node's estctl; one package, two nodes at once -

class AcrossNodesTests(NodesCase):
    workers = (1, 1)

    @defer.inlineCallbacks
    def test_request_made_on_a_approved_with_estctl_of_b_fetched_from_b_and_a(self):
        a, b = self.nodes
        key = new_key()
        headers = {**basic(), "Content-Type": "application/pkcs10"}

        def post(node):
            return support.in_thread(node.request, "POST", f"{EST}/manual/simpleenroll", headers,
                                     der_csr(key, "waiting-on-a"))
        resp = yield post(a)
        self.assertEqual(resp.status, 202, resp.body)
        self.assertEqual(resp.header("retry-after"), "7")
        listing = yield support.in_thread(b.estctl, "pending", "list")
        waiting = [line.split("\t") for line in listing.stdout.decode().splitlines() if "CN=waiting-on-a" in line]
        self.assertEqual(len(waiting), 1, listing.stdout)
        self.assertEqual(waiting[0][1], "pending")
        # Not yet approved: b says so too, and files no second request.
        resp = yield post(b)
        self.assertEqual(resp.status, 202, resp.body)
        approved = yield support.in_thread(b.estctl, "pending", "approve", waiting[0][0])
        self.assertIn("approved", approved.stdout.decode())
        resp = yield post(b)
        self.assertEqual(resp.status, 200, resp.body)
        cert = issued_certificate(resp.body)
        self.assertEqual(cert.subject.rfc4514_string(), "CN=waiting-on-a")
        self.assertEqual(cert.public_key(), key.public_key())
        cert.verify_directly_issued_by(a.anchor())
        resp = yield post(a)
        self.assertEqual(resp.status, 200, resp.body)
        self.assertEqual(issued_certificate(resp.body), cert)
        stored = rows(self.url, "SELECT serial FROM certificates WHERE subject=%s", ("CN=waiting-on-a",))
        self.assertEqual(stored, [(format(cert.serial_number, "x"),)])
        pending = rows(self.url, "SELECT state, serial FROM pending")
        self.assertEqual(pending, [("issued", format(cert.serial_number, "x"))])


    @defer.inlineCallbacks
    def test_a_digest_challenge_of_a_is_answered_on_b_and_its_replay_refused_on_a(self):
        """The Digest nonce key is shared (sealed in the database): b accepts
        an answer to a's challenge; its nonce count is claimed in the
        database: the same header sent to a again is a replay. The client's
        H(A1)s were sealed by estctl and opened by each node in the token."""
        a, b = self.nodes
        path = f"{EST}/digest/simpleenroll"
        csr_headers = {"Content-Type": "application/pkcs10"}
        challenged = yield support.in_thread(a.request, "POST", path, csr_headers, b"")
        self.assertEqual(challenged.status, 401)
        auth = DigestAuth(USER, PASSWORD)
        self.assertTrue(auth.use_challenge(challenged.header_values("www-authenticate")))
        header = auth.header("POST", path)
        resp = yield support.in_thread(b.request, "POST", path, {**csr_headers, "Authorization": header},
                                       der_csr(new_key(), "digest-across"))
        self.assertEqual(resp.status, 200, resp.body)
        issued_certificate(resp.body).verify_directly_issued_by(a.anchor())
        replay = yield support.in_thread(a.request, "POST", path, {**csr_headers, "Authorization": header},
                                         der_csr(new_key(), "digest-replay"))
        self.assertEqual(replay.status, 401)
        stored = rows(self.url, "SELECT digest_ha1_sha256 FROM clients WHERE name=%s", (USER,))
        self.assertTrue(stored[0][0].startswith("sealed:"), stored)

    @defer.inlineCallbacks
    def test_full_pki_requests_on_either_node_echo_their_nonces(self):
        """/fullcmc on each node: the response echoes the request's
        transactionId and senderNonce (the client checks), with a fresh
        senderNonce of the server's: nothing per node to share."""
        a, b = self.nodes
        for node in (a, b):
            est = EstClient(f"https://127.0.0.1:{node.port}", anchors=[node.anchor()], auth=BasicAuth(USER, PASSWORD))
            self.addCleanup(est.close)
            client = FullCmcClient(est, [node.anchor()], sleep=lambda s: None)
            key = new_key()
            result = yield support.in_thread(client.enroll, [CertRequestSpec(key, f"CN=cmc-on-{node.name}")])
            self.assertEqual(result.failures, {})
            result.certificates[1].verify_directly_issued_by(a.anchor())

    @defer.inlineCallbacks
    def test_a_package_fetched_from_both_nodes_at_the_same_moment_is_one_delivery(self):
        """The same client asks both nodes for its firmware at once (a device
        retrying through the load balancer): both get the same package, and
        the store has one delivery with both downloads counted."""
        a, b = self.nodes
        key = new_key()
        resp = yield support.in_thread(a.request, "POST", f"{EST}/simpleenroll",
                                       {**basic(), "Content-Type": "application/pkcs10"},
                                       der_csr(key, "device-on-two-nodes"))
        self.assertEqual(resp.status, 200, resp.body)
        device = {"client_cert": [issued_certificate(resp.body)], "client_key": key}
        store = yield support.in_thread(self.open_store)
        self.addCleanup(store.close)
        for n in range(5):
            content = package_content("dev", 100 + n)
            package = yield support.in_thread(store.packages.queue_package, label="default", pal_type="0026",
                                              target_kind="client", target="dev", content=content)
            barrier = threading.Barrier(2)

            def fetch(node):
                barrier.wait(10)
                return node.request("GET", f"{EST}/firmware", **device)
            answers = yield defer.gatherResults([support.in_thread(fetch, node) for node in (a, b)])
            self.assertEqual([r.status for r in answers], [200, 200], [r.body for r in answers])
            self.assertEqual([decode_body(r.body) for r in answers], [content, content])
            delivered = rows(self.url, "SELECT client, downloads FROM deliveries WHERE package_id=%s", (package.id,))
            self.assertEqual(delivered, [("dev", 2)])
            downloads = rows(self.url, "SELECT count(*) FROM audit WHERE operation='download' AND detail LIKE %s",
                             (f"package {package.id} %",))
            self.assertEqual(downloads, [(2,)])


    @defer.inlineCallbacks
    def test_a_revocation_made_with_estctl_of_b_is_listed_by_both_nodes_at_once(self):
        """Both nodes re-issue a CRL that misses a revocation on demand; asked
        at the same moment, they must not both take the next CRL number."""
        a, b = self.nodes
        resp = yield support.in_thread(a.request, "POST", f"{EST}/simpleenroll",
                                       {**basic(), "Content-Type": "application/pkcs10"},
                                       der_csr(new_key(), "to-be-revoked"))
        self.assertEqual(resp.status, 200, resp.body)
        serial = issued_certificate(resp.body).serial_number
        yield support.in_thread(b.estctl, "cert", "revoke", format(serial, "x"), "--reason", "keyCompromise")
        barrier = threading.Barrier(2)

        def crls(node):
            barrier.wait(10)
            return node.request("GET", f"{EST}/crls")
        answers = yield defer.gatherResults([support.in_thread(crls, node) for node in (a, b)])
        numbers = []
        for node, answer in zip((a, b), answers):
            self.assertEqual(answer.status, 200, answer.body)
            crl = end_entity_crl(answer.body)
            self.assertIsNotNone(crl.get_revoked_certificate_by_serial_number(serial), node.name)
            numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
        stored = rows(self.url, "SELECT number, der FROM crls WHERE kind='crl'")
        self.assertEqual(len({n for n, _ in stored}), len(stored))
        for number in numbers:
            self.assertIn(number, {n for n, _ in stored})


# -- b2) a CA key update made with estctl on one node, followed by the other ------------------

class KeyUpdateAcrossNodesTests(NodesCase):
    """``estctl ca rollover`` and ``switch`` run on one node; the other
    node's files (its TLS certificate and the chain after it, the CA
    certificate, the content signer) follow within seconds, without a
    restart, and stay as they are through one."""

    def _start(self) -> None:
        super()._start()
        self.addCleanup(on_token_thread, self.destroy_generation_keys)

    def destroy_generation_keys(self) -> None:
        token = support.token()
        for (label,) in rows(self.url, "SELECT key_label FROM ca_generations WHERE key_label <> %s",
                             (self.nodes[0].ca_label,)):
            token.destroy_keypair(label)

    @staticmethod
    def tls_chain(node: Node, anchor: x509.Certificate) -> list[x509.Certificate]:
        """Blocking: what the node's TLS server sends, verified against ``anchor`` alone."""
        conn = HttpsConnection("127.0.0.1", node.port, anchors=[anchor], timeout=10)
        try:
            conn.connect()
            return [c.to_cryptography() for c in conn._conn.get_peer_cert_chain()]
        finally:
            conn.close()

    @staticmethod
    def chains_at_once(node: Node, anchor: x509.Certificate) -> list[list[x509.Certificate]]:
        """Blocking: the chains of two connections per worker held open at
        once (the master hands each newcomer to the worker holding fewer, so
        every worker answers)."""
        conns = [HttpsConnection("127.0.0.1", node.port, anchors=[anchor], timeout=10)
                 for _ in range(2 * node.workers)]
        try:
            for conn in conns:
                conn.connect()
            return [[c.to_cryptography() for c in conn._conn.get_peer_cert_chain()] for conn in conns]
        finally:
            for conn in conns:
                conn.close()

    def reaches_with(self, node: Node, anchor: x509.Certificate) -> bool:
        try:
            self.tls_chain(node, anchor)
            return True
        except (TLSError, OSError):
            return False

    def test_a_key_update_made_on_one_node_reaches_the_other(self):
        return support.in_thread(self._story)

    def _story(self) -> None:
        a, b = self.nodes
        old = a.anchor()
        # 1. The rollover, run on b: a's TLS chain gains OldWithNew (both of its workers),
        #    so a device that already trusts only the new root reaches a.
        b.estctl("ca", "rollover")
        (new_der, old_with_new_der), = rows(self.url, "SELECT cert, old_with_new FROM ca_generations"
                                                      " WHERE state='next'")
        new, old_with_new = x509.load_der_x509_certificate(new_der), x509.load_der_x509_certificate(old_with_new_der)
        self.assertTrue(wait_for(lambda: all(chain[1:] == [old_with_new] for chain in self.chains_at_once(a, old)),
                                 20), a.log())
        self.assertTrue(self.reaches_with(a, new))
        # 2. The switch, run on a: b's TLS server certificate is re-issued under the new key,
        #    its CA certificate file is the new root, and b signs with the new key.
        a.estctl("ca", "switch")
        # (checked with the old root, which verifies b's chain before and after: b may not even
        # have re-read the chain its own estctl rollover wrote yet)
        self.assertTrue(wait_for(lambda: key_identifier(new) == aki(self.tls_chain(b, old)[0]), 20), b.log())
        self.assertTrue(self.reaches_with(b, new))
        self.assertEqual(b.anchor(), new)
        resp = b.request("POST", f"{EST}/simpleenroll", {**basic(), "Content-Type": "application/pkcs10"},
                         der_csr(new_key(), "after-the-switch-on-b"))
        self.assertEqual(resp.status, 200, resp.body)
        self.assertEqual(aki(issued_certificate(resp.body)), key_identifier(new))
        signer = x509.load_pem_x509_certificate((b.state / "ca" / "signer.pem").read_bytes())
        self.assertEqual(aki(signer), key_identifier(new))
        # a device that knows only the old root still reaches b: NewWithOld follows while the old key retires
        self.assertEqual(self.tls_chain(b, old)[1:], [x509.load_der_x509_certificate(new_with_old)
                                                      for (new_with_old,) in rows(
                                                          self.url, "SELECT new_with_old FROM ca_generations"
                                                                    " WHERE state='current'")])
        # 3. b restarted: nothing is issued again; each node re-issued its own TLS certificate once.
        b.shutdown()
        b.start()
        self.assertEqual(aki(self.tls_chain(b, new)[0]), key_identifier(new))
        for node in (a, b):
            tls = str(node.state / "tls" / "server.pem")
            audited = rows(self.url, "SELECT count(*) FROM audit WHERE detail LIKE %s",
                           (f"switch: TLS server certificate {tls} re-issued%",))
            self.assertEqual(audited, [(1,)], node.name)
            self.assertNotIn("Traceback", node.log())


# -- c) the CRL schedule's lease --------------------------------------------------------------

class CrlLeaseTests(NodesCase):
    workers = (2, 1)

    def holder(self) -> tuple[str, float] | None:
        found = rows(self.url, "SELECT holder, expires_at FROM leases WHERE name=%s", (CRL_SCHEDULE_LEASE,))
        return (found[0][0], found[0][1]) if found else None

    def node_of(self, holder: str) -> Node:
        pid = int(holder.split(":")[1])
        owners = [n for n in self.nodes if pid in n.pids()]
        self.assertEqual(len(owners), 1, f"{holder} is no node's process")
        return owners[0]

    @defer.inlineCallbacks
    def test_one_node_holds_the_lease_and_the_other_takes_over_when_it_dies(self):
        first = yield support.in_thread(wait_for, self.holder, 2 * LEASE_SECONDS)
        self.assertTrue(first, "no node took the CRL schedule's lease")
        # Two renewals later: still one holder, the same one, and only its log
        # says it took the lease (the other node tried and was refused).
        yield support.in_thread(time.sleep, 2 * LEASE_SECONDS / 3 + 0.5)
        holder, expires = yield support.in_thread(self.holder)
        self.assertEqual(holder, first[0])
        self.assertGreater(expires, first[1])  # renewed
        owner = self.node_of(holder)
        other = next(n for n in self.nodes if n is not owner)
        self.assertEqual(owner.log().count("lease crl-schedule taken by"), 1)
        self.assertNotIn("lease crl-schedule taken by", other.log())
        yield support.in_thread(owner.kill)
        killed = time.monotonic()
        # The term runs out, and the other node's next renewal takes it.
        taken = yield support.in_thread(
            wait_for, lambda: (lambda h: h if h and h[0] != holder else None)(self.holder()), 60)
        took = time.monotonic() - killed
        self.assertTrue(taken, "the lease was not taken over within a minute")
        self.assertIs(self.node_of(taken[0]), other)
        # Not before the dead holder's term ran out (renewed at most a third
        # of a term before the kill); within a minute, as the issue asks (by
        # design within a term and a renewal: the figure printed).
        self.assertGreaterEqual(took, LEASE_SECONDS * 2 / 3 - 0.5)
        self.assertLessEqual(took, 60)
        self.assertIn("lease crl-schedule taken by", other.log())
        print(f"\nCRL lease ({LEASE_SECONDS} s term) taken over {took:.1f} s after its holder was killed")


# -- d) the database going away ---------------------------------------------------------------

class DatabaseAwayTests(NodesCase):
    """On a PostgreSQL server of this test's own, stopped and started again."""

    workers = (2, 1)

    def database_url(self) -> str:
        self.pg = PostgresServer()
        self.pg.start()
        self.addCleanup(support.in_thread, self.pg.destroy)
        return self.pg.create_database()

    def enroll(self, node: Node, cn: str):
        return node.request("POST", f"{EST}/simpleenroll", {**basic(), "Content-Type": "application/pkcs10"},
                            der_csr(new_key(), cn), timeout=30)

    def ready(self, node: Node):
        return node.request("GET", "/readyz", timeout=30)

    def answers_within(self, node: Node, cn: str, status: int, deadline: float):
        """Blocking: enroll until the answer has ``status`` (each try on a new
        connection); (the answer, seconds it took)."""
        started = time.monotonic()
        while True:
            resp = self.enroll(node, cn)
            took = time.monotonic() - started
            if resp.status == status or took > deadline:
                return resp, took
            time.sleep(0.2)

    @defer.inlineCallbacks
    def test_503_with_retry_after_while_the_database_is_down_then_service_resumes(self):
        for node in self.nodes:
            yield support.in_thread(wait_for, lambda: self.ready(node).status == 200, 2 * LEASE_SECONDS)
            resp = yield support.in_thread(self.enroll, node, f"before-{node.name}")
            self.assertEqual(resp.status, 200, resp.body)
        # A clean shutdown of the database, a crash (every session cut at
        # once), and a database that holds every query without answering
        # (SIGSTOP: as a server cut off behind a network that still accepts).
        figures = []
        for how, away, back in (("stopped", self.pg.stop, self.pg.start), ("killed", self.pg.kill, self.pg.start),
                                ("hung", self.freeze_database, self.thaw_database)):
            yield support.in_thread(away)
            figures += (yield self.database_down(how))
            yield support.in_thread(back)
            figures += (yield self.database_back(how))
        for node in self.nodes:
            self.assertTrue(node.running)
            self.assertNotIn("Traceback", node.log())
        print("\n" + "\n".join(figures))

    def freeze_database(self) -> None:
        self.frozen = [self.pg.pid, *_children_of(self.pg.pid)]
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)
        self.addCleanup(self.thaw_database)

    def thaw_database(self) -> None:
        for pid in self.frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    @defer.inlineCallbacks
    def database_down(self, how: str):
        figures = []
        for node in self.nodes:
            started = time.monotonic()
            resp = yield support.in_thread(self.enroll, node, f"down-{how}-{node.name}")
            took = time.monotonic() - started
            self.assertEqual(resp.status, 503, resp.body)
            self.assertEqual(resp.header("retry-after"), "7")
            self.assertLess(took, 10)
            self.assertEqual(resp.body.count(b"\n"), 1, resp.body)  # a one-line reason, no traceback
            # Every worker of the node (new connections are spread over them).
            for i in range(2 * node.workers):
                again = yield support.in_thread(self.enroll, node, f"down-{how}-{node.name}-{i}")
                self.assertEqual((again.status, again.header("retry-after")), (503, "7"), again.body)
            ready = yield support.in_thread(wait_for, lambda: self.ready(node).status == 503, 10)
            self.assertTrue(ready, f"node {node.name}: /readyz still ready with the database {how}")
            body = (yield support.in_thread(self.ready, node)).body
            self.assertIn(b'"store"', body)
            figures.append(f"database {how}: node {node.name} answers 503 after {took:.2f} s")
        return figures

    @defer.inlineCallbacks
    def database_back(self, how: str):
        figures = []
        restarted = time.monotonic()
        for node in self.nodes:
            resp, took = yield support.in_thread(self.answers_within, node, f"after-{how}-{node.name}", 200, 30)
            since = time.monotonic() - restarted
            self.assertEqual(resp.status, 200, resp.body)
            for i in range(2 * node.workers):
                again = yield support.in_thread(self.enroll, node, f"after-{how}-{node.name}-{i}")
                self.assertEqual(again.status, 200, again.body)
            ready = yield support.in_thread(wait_for, lambda: self.ready(node).status == 200, 10)
            self.assertTrue(ready, f"node {node.name}: /readyz not ready again")
            figures.append(f"database {how}, started again: node {node.name} enrolls after {took:.2f} s of"
                           f" trying ({since:.2f} s after the start)")
        return figures


# -- e) an older schema -----------------------------------------------------------------------

class OlderSchemaTests(NodesCase):
    workers = (1, 2)  # one process, and a master with workers

    def _start(self) -> None:
        self.nodes = make_nodes(self.base, self.url, self.workers, LEASE_SECONDS)
        self.addCleanup(on_token_thread, destroy_ca_keys, self.nodes[0].ca_label)
        for node in self.nodes:
            self.addCleanup(node.shutdown)

    @defer.inlineCallbacks
    def test_a_node_on_an_older_schema_refuses_to_serve_and_says_migrate(self):
        yield support.in_thread(rows, self.url, "UPDATE meta SET value='3' WHERE key='schema_version' RETURNING key")
        for node in self.nodes:
            proc = yield support.in_thread(node.spawn)
            try:
                status = yield support.in_thread(proc.wait, 60)
            except Exception:
                self.fail(f"node {node.name} ({node.workers} workers) still runs on an older schema:\n{node.log()}")
            self.assertNotEqual(status, 0, node.log())
            self.assertIn("estctl store migrate", node.log())
            self.assertTrue(wait_for(lambda: not node.pids(), 10), "a process of the refused node is left")
