"""CMC identity-proof shared secrets (ca.identity_proofs, token.hmac_keys) in the
test SoftHSM2 token, and ``estctl cmc secret``: the token computes the same
witness as RFC 5272 6.2.1 does with hashlib and hmac, for every hash and MAC
we take, and the secret can be read back by nobody."""
from __future__ import annotations

import hashlib
import hmac
import uuid

from twisted.internet import defer
from twisted.trial import unittest

from estappliance.pki import cmc
from estappliance.ca import identity_proofs
from estappliance.store import Store
from estappliance.token import hmac_keys, on_token_thread

from . import support
from .test_admin import EstctlTestCase

REQ_SEQUENCE = b"\x30\x03\x02\x01\x07"  # any DER: the witness covers reqSequence as sent


class SecretTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.store = Store(self.mktemp() + ".sqlite")
        self.addCleanup(self.store.close)
        self.client = f"carol-{uuid.uuid4().hex[:8]}"  # the token is shared by the whole test run
        self.store.clients.add_client(self.client, None, ["default"])
        self.proofs = identity_proofs.IdentityProofs(support.token(), self.store)

    def install(self, secret: bytes):
        return on_token_thread(identity_proofs.install, support.token(), self.store, self.client, secret)

    @defer.inlineCallbacks
    def test_every_hash_and_mac_checks_in_the_token(self):
        yield self.install(b"shared secret 42")
        self.assertTrue((yield self.proofs.has_secret(self.client)))
        for hash_name in cmc.PROOF_HASHES:
            for mac_name in cmc.PROOF_MACS:
                witness = hmac.new(hashlib.new(hash_name, b"shared secret 42").digest(), REQ_SEQUENCE,
                                   mac_name).digest()
                ok = yield self.proofs.check(self.client, cmc.IdentityProof(hash_name, mac_name, witness),
                                             REQ_SEQUENCE)
                self.assertTrue(ok, (hash_name, mac_name))
                ok = yield self.proofs.check(self.client, cmc.IdentityProof(hash_name, mac_name, witness),
                                             REQ_SEQUENCE + b"\x00")
                self.assertFalse(ok)

    @defer.inlineCallbacks
    def test_the_keys_are_sensitive_and_replaced_and_removed(self):
        yield self.install(b"first secret")
        yield self.install(b"second secret")
        witness = cmc.identity_proof_witness(b"second secret", REQ_SEQUENCE)
        self.assertTrue((yield self.proofs.check(self.client, cmc.IdentityProof("sha256", "sha256", witness),
                                                 REQ_SEQUENCE)))
        old = cmc.identity_proof_witness(b"first secret", REQ_SEQUENCE)
        self.assertFalse((yield self.proofs.check(self.client, cmc.IdentityProof("sha256", "sha256", old),
                                                  REQ_SEQUENCE)))
        label = identity_proofs.key_label(self.client, "sha256", 64)

        def attributes():
            from pkcs11 import Attribute, ObjectClass
            token = support.token()

            def op(session):
                key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=label)
                return key[Attribute.SENSITIVE], key[Attribute.EXTRACTABLE]
            return token.run(op)
        self.assertEqual((yield on_token_thread(attributes)), (True, False))
        removed = yield on_token_thread(identity_proofs.remove, support.token(), self.store, self.client)
        self.assertTrue(removed)
        self.assertFalse((yield self.proofs.has_secret(self.client)))
        self.assertIsNone((yield on_token_thread(hmac_keys.hmac, support.token(), label, REQ_SEQUENCE, "sha256")))
        self.assertFalse((yield self.proofs.check(self.client, cmc.IdentityProof("sha256", "sha256", witness),
                                                  REQ_SEQUENCE)))

    def test_short_secrets_are_refused(self):
        self.assertRaises(ValueError, identity_proofs.install, None, self.store, self.client, b"short")


class EstctlSecretTests(EstctlTestCase):
    @defer.inlineCallbacks
    def test_set_list_remove(self):
        yield self.estctl("init")
        pw = self.file("pw", "password\n")
        yield self.estctl("client", "add", "dora", "--password-file", str(pw))
        code, out, _ = yield self.estctl("cmc", "secret", "set", "dora", "--generate")
        self.assertEqual(code, 0)
        secret = out.strip().encode()
        self.assertGreaterEqual(len(secret), 24)
        code, out, _ = yield self.estctl("cmc", "secret", "list")
        self.assertTrue(out.startswith("dora\tset="))
        store = self.open_store()
        proofs = identity_proofs.IdentityProofs(support.token(), store)
        witness = cmc.identity_proof_witness(secret, REQ_SEQUENCE, "sha384", "sha512")
        self.assertTrue((yield proofs.check("dora", cmc.IdentityProof("sha384", "sha512", witness), REQ_SEQUENCE)))
        given = self.file("secret", "from a file, long enough\n")
        code, _, _ = yield self.estctl("cmc", "secret", "set", "dora", "--secret-file", str(given))
        self.assertEqual(code, 0)
        witness = cmc.identity_proof_witness(b"from a file, long enough", REQ_SEQUENCE)
        self.assertTrue((yield proofs.check("dora", cmc.IdentityProof("sha256", "sha256", witness), REQ_SEQUENCE)))
        code, _, err = yield self.estctl("cmc", "secret", "set", "nobody", "--generate")
        self.assertEqual((code, err.strip()), (1, "estctl: no client 'nobody' (estctl client add first)"))
        code, out, _ = yield self.estctl("cmc", "secret", "remove", "dora")
        self.assertEqual(code, 0)
        code, _, err = yield self.estctl("cmc", "secret", "remove", "dora")
        self.assertEqual(code, 1)
        code, out, _ = yield self.estctl("cmc", "secret", "list")
        self.assertEqual(out, "")
