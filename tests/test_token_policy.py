"""The mechanism policy (token/policy.py): what each feature uses on a token,
judged from its mechanism list; the RSA DigestInfo fallback signing on the
real SoftHSM2 token; and a feature the token cannot serve refused per request
(400, reason, log) while the rest of the service keeps working."""
from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from pkcs11 import Mechanism
from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from estappliance.client import BasicAuth, make_csr, new_key
from estappliance.token import KEY_SPECS, on_token_thread
from estappliance.token import session as token_session
from estappliance.token.keys import token_private_key
from estappliance.errors import TokenCannot
from estappliance.token.policy import MechanismPolicy

from . import support

# What opencryptoki 3.8's soft token lists (pkcsconf -m), in short.
SOFT_TOKEN = {Mechanism.RSA_PKCS_KEY_PAIR_GEN, Mechanism.RSA_PKCS, Mechanism.RSA_PKCS_OAEP, Mechanism.SHA1_RSA_PKCS,
              Mechanism.AES_KEY_GEN, Mechanism.AES_ECB, Mechanism.AES_CBC, Mechanism.AES_CBC_PAD,
              Mechanism.SHA_1_HMAC, Mechanism.SHA256_HMAC, Mechanism.SHA384_HMAC, Mechanism.SHA512_HMAC,
              Mechanism.GENERIC_SECRET_KEY_GEN}
SOFTHSM_LIKE = SOFT_TOKEN | {Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA, Mechanism.SHA256_RSA_PKCS,
                             Mechanism.SHA384_RSA_PKCS, Mechanism.SHA512_RSA_PKCS, Mechanism.AES_KEY_WRAP,
                             Mechanism.AES_GCM}


class PolicyTests(unittest.TestCase):
    def test_a_token_without_ec_key_wrap_or_gcm(self):
        policy = MechanismPolicy(SOFT_TOKEN, rsa_bits=(512, 4096))
        self.assertIn("CKM_EC_KEY_PAIR_GEN", policy.key_type_problem("ec-p256"))
        self.assertIsNone(policy.key_type_problem("rsa3072"))
        self.assertIn("not 8192", policy.key_type_problem(KEY_SPECS["rsa4096"].__class__("rsa8192", "rsa",
                                                                                         bits=8192)))
        self.assertEqual(policy.rsa_signing("sha256"), (Mechanism.RSA_PKCS, True))
        self.assertEqual(policy.export_wrap(), Mechanism.AES_CBC_PAD)
        self.assertIn("CKM_AES_KEY_WRAP", policy.kek_problem())
        self.assertIn("CKM_AES_GCM", policy.sealing_problem())
        self.assertIsNone(policy.hmac_problem("sha384"))
        with self.assertRaises(TokenCannot) as caught:
            policy.require_key_type("ec-p384", "/serverkeygen")
        self.assertEqual(caught.exception.reason, "/serverkeygen: this appliance's token cannot make ec-p384 keys"
                                                  " (the token has no CKM_EC_KEY_PAIR_GEN or CKM_ECDSA)")
        features = {f.name.split(":")[0]: f for f in policy.features("rsa2048")}
        self.assertTrue(features["CA key rsa2048"].ok)
        self.assertFalse(features["CA key ec-p256 (estctl init)"].ok)
        self.assertFalse(features["operator-set PKCS#12 passwords (estctl serverkeygen pkcs12-password)"].ok)

    def test_the_best_mechanism_is_chosen_where_there_is_a_choice(self):
        policy = MechanismPolicy(SOFTHSM_LIKE)
        self.assertEqual(policy.rsa_signing("sha384"), (Mechanism.SHA384_RSA_PKCS, False))
        self.assertEqual(policy.export_wrap(), Mechanism.AES_KEY_WRAP)
        self.assertIsNone(policy.kek_problem())
        self.assertTrue(all(f.ok for f in policy.features("ec-p256")))

    def test_nothing_to_wrap_with(self):
        policy = MechanismPolicy(SOFT_TOKEN - {Mechanism.AES_CBC_PAD})
        self.assertIsNone(policy.export_wrap())
        self.assertIn("cannot wrap a key out", policy.export_problem())


class DigestInfoSigningTests(support.TokenLabels, unittest.TestCase):
    """CKM_RSA_PKCS over a host-made DigestInfo is the same signature as
    CKM_SHA256_RSA_PKCS: checked on the real token with both policies."""

    @defer.inlineCallbacks
    def test_both_ways_verify(self):
        label = self.new_label()
        yield on_token_thread(self.token.generate_keypair, label, KEY_SPECS["rsa2048"])
        key = yield on_token_thread(token_private_key, self.token, label)
        ways = {}
        cache = (str(support.SOFTHSM_LIB), support.TOKEN_LABEL)
        real = yield on_token_thread(self.token.policy)
        try:
            for name, mechanisms in (("token hashes", SOFTHSM_LIKE), ("host hashes", SOFT_TOKEN)):
                token_session._POLICIES[cache] = MechanismPolicy(mechanisms)
                ways[name] = yield on_token_thread(key.sign, b"to be signed", padding.PKCS1v15(), hashes.SHA256())
        finally:
            token_session._POLICIES[cache] = real
        self.assertEqual(ways["token hashes"], ways["host hashes"])  # PKCS#1 v1.5 is deterministic
        key.public_key().verify(ways["host hashes"], b"to be signed", padding.PKCS1v15(), hashes.SHA256())


class RefusedPerRequestTests(unittest.TestCase):
    """SoftHSM2 told (through its cached policy) that it has no EC: server
    key generation of an EC key is refused with the reason, the rest works."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(self)
        yield self.server.add_client("alice", "pw-alice")
        self.cache = (str(support.SOFTHSM_LIB), support.TOKEN_LABEL)
        real = yield on_token_thread(self.server.appliance.token.policy)
        token_session._POLICIES[self.cache] = MechanismPolicy(real.mechanisms - {Mechanism.EC_KEY_PAIR_GEN,
                                                                                  Mechanism.ECDSA}, real.rsa_bits)
        self.addCleanup(token_session._POLICIES.__setitem__, self.cache, real)

    def post(self, op: str, csr_der: bytes):
        return self.server.raw("POST", f"/.well-known/est/{op}",
                               {"Authorization": BasicAuth("alice", "pw-alice").header(),
                                "Content-Type": "application/pkcs10"}, base64.b64encode(csr_der))

    @defer.inlineCallbacks
    def test_serverkeygen_of_ec_refused_rsa_and_enrollment_served(self):
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        before = yield self.server.count_certificates()
        ec_csr = make_csr(new_key("ec-p256"), "CN=ec-skg").public_bytes(serialization.Encoding.DER)
        resp = yield self.post("serverkeygen", ec_csr)
        self.assertEqual(resp.status, 400, resp.body)
        self.assertEqual(resp.body, b"/serverkeygen: this appliance's token cannot make ec-p256 keys (the token has"
                                    b" no CKM_EC_KEY_PAIR_GEN or CKM_ECDSA)\n")
        self.assertEqual((yield self.server.count_certificates()), before)
        self.assertIn("token cannot serve this request: /serverkeygen: this appliance's token cannot make ec-p256 keys",
                      "\n".join(formatEvent(e) for e in logged))
        rsa_csr = make_csr(new_key("rsa2048"), "CN=rsa-skg").public_bytes(serialization.Encoding.DER)
        resp = yield self.post("serverkeygen", rsa_csr)
        self.assertEqual(resp.status, 200, resp.body)
        resp = yield self.post("simpleenroll", ec_csr)  # a device's own EC key: the CA only signs it
        self.assertEqual(resp.status, 200, resp.body)


class TokenCheckTests(unittest.TestCase):
    """``estctl token check`` on SoftHSM2: everything the appliance uses is there."""

    timeout = 60

    @defer.inlineCallbacks
    def test_softhsm2_serves_every_feature(self):
        server = yield support.start_server(self)
        code, out = yield server.estctl("token", "check")
        self.assertEqual(code, 0, out)
        self.assertIn("SoftHSM", out)
        features = out.split("\nfeatures:\n")[1].splitlines()
        self.assertEqual(len(features), 11, out)
        self.assertEqual([line for line in features if not line.startswith("  yes  ")], [])
        for text in ("CKM_ECDSA (hash on the host)", "wrapped out with CKM_AES_KEY_WRAP",
                     "ok    non-extractable ec-p256 key: wrapping it out is refused",
                     "ok    sessions: 2 more read/write sessions open"):
            self.assertIn(text, out)
