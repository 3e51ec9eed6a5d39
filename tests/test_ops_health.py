"""/healthz and /readyz on the EST listener of a real server (TLS, SoftHSM2):
unauthenticated tiny JSON, and a /readyz that follows the token, the store,
the CA certificate and the CRL, failing within seconds and recovering by itself."""
from __future__ import annotations

import fcntl
import json
import os
import time

import psycopg
from twisted.internet import defer, task, reactor
from twisted.trial import unittest

from estappliance.store.dialect import POSTGRESQL
from estappliance.store.sqlite_database import SqliteDatabase

from . import support

FAST = {"cache_seconds": 0.2, "timeout_seconds": 1}


class HealthTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def start(self, **health):
        self.server = yield support.start_server(self, health={**FAST, **health})
        yield self.server.appliance.crls.current("crl")

    @defer.inlineCallbacks
    def get(self, path: str):
        resp = yield self.server.raw("GET", path)
        self.assertEqual(resp.header("content-type"), "application/json")
        self.assertLess(len(resp.body), 400)
        return resp.status, json.loads(resp.body)

    @defer.inlineCallbacks
    def settle(self):
        """Past the probe cache."""
        yield task.deferLater(reactor, FAST["cache_seconds"] + 0.05, lambda: None)

    @defer.inlineCallbacks
    def test_healthz_and_readyz_without_credentials(self):
        yield self.start()
        status, body = yield self.get("/healthz")
        self.assertEqual((status, body), (200, {"status": "ok"}))
        status, body = yield self.get("/readyz")
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"status": "ready", "checks": {"token": "ok", "store": "ok", "ca": "ok", "crl": "ok"}})

    @defer.inlineCallbacks
    def test_only_get_and_head(self):
        yield self.start()
        resp = yield self.server.raw("POST", "/healthz", {"Content-Type": "application/pkcs10"}, b"x")
        self.assertEqual(resp.status, 405)

    @defer.inlineCallbacks
    def test_readyz_answers_from_its_cache(self):
        """Polled often, it signs at most once per cache period."""
        yield self.start(cache_seconds=30)
        signs = []
        signer = self.server.appliance.ca.signer
        original = signer.key

        def counting_key():
            signs.append(1)
            return original()
        self.patch(signer, "key", counting_key)
        for _ in range(5):
            status, _ = yield self.get("/readyz")
            self.assertEqual(status, 200)
        self.assertLessEqual(len(signs), 1)

    @defer.inlineCallbacks
    def test_token_gone_fails_readyz_then_it_recovers(self):
        yield self.start()
        tokens = support.hsm_dir() / "tokens"
        hidden = support.hsm_dir() / "tokens.away"
        yield self.settle()
        os.rename(tokens, hidden)
        try:
            started = time.monotonic()
            status, body = yield self.get("/readyz")
            self.assertEqual(status, 503)
            self.assertLess(time.monotonic() - started, 5)
            self.assertEqual(body["status"], "not ready")
            self.assertEqual(body["checks"]["token"], "token unavailable")
            self.assertEqual(body["checks"]["store"], "ok")
            status, _ = yield self.get("/healthz")
            self.assertEqual(status, 200)  # alive, just not ready
        finally:
            os.rename(hidden, tokens)
        yield self.settle()
        status, body = yield self.get("/readyz")
        self.assertEqual(status, 200, body)

    @defer.inlineCallbacks
    def test_a_stuck_store_fails_readyz_within_the_timeout_then_it_recovers(self):
        """Another writer holding the store's write lock: commits wait, and
        /readyz says so after timeout_seconds instead of hanging."""
        yield self.start()
        yield self.settle()
        release = hold_the_writers_lock(self.server.store)
        try:
            started = time.monotonic()
            status, body = yield self.get("/readyz")
            self.assertEqual(status, 503)
            self.assertLess(time.monotonic() - started, 3)
            self.assertIn("did not answer within 1 s", body["checks"]["store"])
            self.assertEqual(body["checks"]["token"], "ok")
        finally:
            release()
        yield self.settle()
        status, body = yield self.get("/readyz")
        self.assertEqual(status, 200, body)

    @defer.inlineCallbacks
    def test_ca_certificate_or_crl_inside_the_margin(self):
        """A margin longer than the CA's life (10 years) or the CRL's (24 h) fails both."""
        yield self.start(margin_hours=11 * 365 * 24)
        status, body = yield self.get("/readyz")
        self.assertEqual(status, 503)
        self.assertTrue(body["checks"]["ca"].startswith("CA certificate ends in"), body)
        self.assertTrue(body["checks"]["crl"].startswith("CRL nextUpdate in"), body)

    @defer.inlineCallbacks
    def test_no_crl_yet_is_not_ready(self):
        self.server = yield support.start_server(self, health=FAST)
        status, body = yield self.get("/readyz")
        self.assertEqual((status, body["checks"]["crl"]), (503, "no CRL issued yet"))


def hold_the_writers_lock(store):
    """What another process's long write transaction looks like to this one:
    SQLite's writer file lock, or PostgreSQL's writer advisory lock, held
    from another connection. Returns the function that lets it go."""
    if isinstance(store.db, SqliteDatabase):
        lock = os.open(f"{store.db.path}-writer.lock", os.O_RDWR)
        fcntl.flock(lock, fcntl.LOCK_EX)

        def release_file():
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.close(lock)
        return release_file
    conn = psycopg.connect(store.db.url, autocommit=True)
    conn.execute("BEGIN")
    conn.execute(POSTGRESQL.writer_lock)

    def release_transaction():
        conn.execute("ROLLBACK")
        conn.close()
    return release_transaction
