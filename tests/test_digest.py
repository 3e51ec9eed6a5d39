"""HTTP Digest (RFC 7616) checks, with the arithmetic done independently here."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import DigestAuth
from estappliance.http_digest import ha1_all, parse_authorization
from estappliance.ra.digest import DigestVerifier, nonce_count
from estappliance.store import Store
from estappliance.store.nonce_claims import NonceCountClaims
from tests.store_backends import StoreBackend, on_postgres

REALM = "estrealm"


def answer(verifier, algorithm="SHA-256", user="estuser", password="pw", method="POST",
           uri="/.well-known/est/simpleenroll", nc=1):
    client = DigestAuth(user, password)
    challenges = verifier.challenges([algorithm])
    assert client.use_challenge(challenges)
    client._nc = nc - 1
    return parse_authorization(client.header(method, uri))


class DigestTests(unittest.TestCase):
    def setUp(self):
        self.v = DigestVerifier(REALM, secret=b"k" * 32)
        self.stored = ha1_all("estuser", REALM, "pw")

    def test_parse_rfc7030_appendix_a3_header(self):
        header = ('Digest username="estuser", realm="estrealm", nonce="1368141352", '
                  'uri="/.well-known/est/simpleenroll", cnonce="MTYwMzg3", nc=00000001, qop="auth", '
                  'response="144cc27f96046f1d70eb16db20f75f22"')
        p = parse_authorization(header)
        self.assertEqual((p["username"], p["nc"], p["qop"], p["response"]),
                         ("estuser", "00000001", "auth", "144cc27f96046f1d70eb16db20f75f22"))
        self.assertIsNone(parse_authorization('Basic dXNlcjpwdw=='))

    def test_ha1_is_the_rfc_formula(self):
        self.assertEqual(self.stored["MD5"], hashlib.md5(b"estuser:estrealm:pw").hexdigest())
        self.assertEqual(self.stored["SHA-256"], hashlib.sha256(b"estuser:estrealm:pw").hexdigest())

    def test_challenges_offer_sha256_first_then_md5(self):
        challenges = self.v.challenges()
        self.assertIn("algorithm=SHA-256", challenges[0])
        self.assertTrue(all('qop="auth"' in c and 'realm="estrealm"' in c for c in challenges))

    def test_md5_challenge_leaves_algorithm_out_and_quotes_every_value(self):
        # RFC 7616 3.3: no algorithm means MD5; Bouncy Castle's parser wants
        # every value quoted, and an algorithm value must not be.
        (md5,) = self.v.challenges(["MD5"])
        self.assertNotIn("algorithm", md5)
        params = md5.split(" ", 1)[1].split(", ")
        self.assertEqual([p.split("=", 1)[0] for p in params], ["realm", "qop", "nonce"])
        self.assertTrue(all(p.split("=", 1)[1].startswith('"') for p in params), md5)
        self.assertEqual(parse_authorization(md5)["realm"], REALM)

    def test_answer_with_an_algorithm_the_label_does_not_offer_is_bad(self):
        uri = "/.well-known/est/simpleenroll"
        self.assertEqual(self.v.check(answer(self.v, "SHA-256"), "POST", uri, self.stored, algorithms=["MD5"]),
                         "bad")
        self.assertEqual(self.v.check(answer(self.v, "MD5"), "POST", uri, self.stored, algorithms=["SHA-256"]),
                         "bad")
        self.assertEqual(self.v.check(answer(self.v, "MD5"), "POST", uri, self.stored, algorithms=["MD5"]), "ok")

    def test_nonces_are_unique(self):
        self.assertEqual(len({self.v.nonce() for _ in range(100)}), 100)

    def test_good_answers_for_both_algorithms(self):
        for alg in ("SHA-256", "MD5"):
            p = answer(self.v, alg)
            self.assertEqual(self.v.check(p, "POST", "/.well-known/est/simpleenroll", self.stored), "ok", alg)

    def test_response_computed_independently(self):
        p = answer(self.v, "MD5")
        h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
        expected = h(f"{h('estuser:estrealm:pw')}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:"
                     f"{h('POST:/.well-known/est/simpleenroll')}")
        self.assertEqual(p["response"], expected)

    def test_wrong_password_uri_method_realm(self):
        self.assertEqual(self.v.check(answer(self.v, password="bad"), "POST", "/.well-known/est/simpleenroll",
                                      self.stored), "bad")
        p = answer(self.v)
        self.assertEqual(self.v.check(p, "POST", "/.well-known/est/other", self.stored), "bad")
        self.assertEqual(self.v.check(answer(self.v, method="GET"), "POST", "/.well-known/est/simpleenroll",
                                      self.stored), "bad")
        other = DigestVerifier("other-realm", secret=b"k" * 32)
        self.assertEqual(other.check(answer(self.v), "POST", "/.well-known/est/simpleenroll", self.stored), "bad")

    def test_forged_nonce_is_bad_old_nonce_is_stale(self):
        p = answer(self.v)
        p["nonce"] = "MTIzNDU2Nzg5MDphYmNkZWY"
        self.assertEqual(self.v.check(p, "POST", "/.well-known/est/simpleenroll", self.stored), "bad")
        p = answer(self.v)
        later = __import__("time").time() + 3600
        self.assertEqual(self.v.check(p, "POST", "/.well-known/est/simpleenroll", self.stored, now=later),
                         "stale")

    def test_a_replay_is_genuine_to_the_verifier_and_refused_by_the_count(self):
        """The verifier keeps no counts (a worker's memory is not shared):
        a replay still checks 'ok' there, and is stopped by the claim."""
        p = answer(self.v)
        uri = "/.well-known/est/simpleenroll"
        self.assertEqual(self.v.check(p, "POST", uri, self.stored), "ok")
        self.assertEqual(self.v.check(p, "POST", uri, self.stored), "ok")
        self.assertEqual(nonce_count(p), (p["nonce"], 1))


    def test_response_that_is_not_ascii_is_bad(self):
        # hmac.compare_digest refuses non-ASCII str: a TypeError here was a 500.
        p = answer(self.v)
        p["response"] = "\ufffd" * 64
        self.assertEqual(self.v.check(p, "POST", "/.well-known/est/simpleenroll", self.stored), "bad")

    def test_client_without_digest_credentials_is_bad(self):
        self.assertEqual(self.v.check(answer(self.v), "POST", "/.well-known/est/simpleenroll", {}), "bad")


class NonceCountStoreTests(StoreBackend, unittest.TestCase):
    """Counts kept in the store: two connections to one file stand for two
    workers (or two nodes), a reopened one for a restart."""

    def setUp(self):
        self.path = self.store_location()
        self.worker_a, self.worker_b = Store(self.path), Store(self.path)
        self.addCleanup(self.worker_a.close)
        self.addCleanup(self.worker_b.close)

    def test_a_count_is_accepted_once_on_any_worker(self):
        v = DigestVerifier(REALM, secret=b"k" * 32)
        nonce, count = nonce_count(answer(v))
        self.assertEqual(self.worker_a.nonce_counts.claim_nonce_counts([(nonce, count)], time.time()), [True])
        self.assertEqual(self.worker_b.nonce_counts.claim_nonce_counts([(nonce, count)], time.time()), [False])
        self.assertEqual(self.worker_a.nonce_counts.claim_nonce_counts([(nonce, count)], time.time()), [False])
        # lower counts too; the next count is good, on either
        self.assertEqual(self.worker_b.nonce_counts.claim_nonce_counts([(nonce, 0), (nonce, 2), (nonce, 2)], time.time()),
                         [False, True, False])
        self.worker_a.close()
        restarted = Store(self.path)
        self.addCleanup(restarted.close)
        self.assertEqual(restarted.nonce_counts.claim_nonce_counts([(nonce, 2), (nonce, 3)], time.time()), [False, True])
        self.assertEqual(restarted.nonce_counts.nonce_count(nonce), 3)

    def test_expired_counts_are_forgotten(self):
        now = time.time()
        self.worker_a.nonce_counts.claim_nonce_counts([("old", 1)], now - 1000)
        self.worker_a.nonce_counts.claim_nonce_counts([("new", 1)], now, forget_before=now - 360)
        self.assertIsNone(self.worker_a.nonce_counts.nonce_count("old"))
        self.assertEqual(self.worker_a.nonce_counts.nonce_count("new"), 1)

    @defer.inlineCallbacks
    def test_batched_claims_answer_each_caller(self):
        claims = NonceCountClaims(self.worker_a, lifetime=300)
        results = yield defer.gatherResults([claims.claim("n1", 1), claims.claim("n1", 1), claims.claim("n2", 5),
                                             claims.claim("n1", 2)])
        self.assertEqual(results, [True, False, True, True])
        self.assertEqual((self.worker_b.nonce_counts.nonce_count("n1"), self.worker_b.nonce_counts.nonce_count("n2")), (2, 5))


NonceCountStoreTestsOnPostgres = on_postgres(NonceCountStoreTests)
