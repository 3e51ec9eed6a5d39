"""token.symmetric against the real SoftHSM2 token (KEKs that only wrap,
sealed secrets) and the store's /serverkeygen tables."""
from __future__ import annotations

import datetime
import os

from cryptography.hazmat.primitives.keywrap import aes_key_unwrap, aes_key_wrap
from pkcs11 import Attribute, ObjectClass
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.store import Store
from estappliance.store.keygen_tables import DuplicateKek
from estappliance.token import on_token_thread, symmetric

from . import support
from tests.store_backends import StoreBackend, on_postgres


class SymmetricTokenTests(support.TokenLabels, unittest.TestCase):
    timeout = 60
    label_prefix = "sym"

    def attributes(self, label):
        def read(session):
            key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=label)
            return {a: bool(key[a]) for a in (Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.WRAP,
                                              Attribute.ENCRYPT, Attribute.DECRYPT, Attribute.UNWRAP)}
        return on_token_thread(self.token.run, read)

    @defer.inlineCallbacks
    def test_imported_kek_wraps_like_rfc3394_and_never_leaves(self):
        label, value = self.new_label(), os.urandom(32)
        size = yield on_token_thread(symmetric.create_kek, self.token, label, value)
        self.assertEqual(size, 32)
        attrs = yield self.attributes(label)
        self.assertEqual(attrs, {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.WRAP: True,
                                 Attribute.ENCRYPT: False, Attribute.DECRYPT: False, Attribute.UNWRAP: False})
        cek = os.urandom(32)
        wrapped = yield on_token_thread(symmetric.wrap_with_kek, self.token, label, cek)
        self.assertEqual(wrapped, aes_key_wrap(value, cek))
        self.assertEqual(aes_key_unwrap(value, wrapped), cek)
        # the temporary CEK object is gone; only the KEK carries the label
        have = yield on_token_thread(self.token.key_labels, label)
        self.assertEqual(have, [label])
        yield self.assertFailure(on_token_thread(self.token.export_secret_key, label), Exception)

    @defer.inlineCallbacks
    def test_generated_kek_and_refusals(self):
        label = self.new_label()
        size = yield on_token_thread(symmetric.create_kek, self.token, label, None, 16)
        self.assertEqual(size, 16)
        wrapped = yield on_token_thread(symmetric.wrap_with_kek, self.token, label, os.urandom(16))
        self.assertEqual(len(wrapped), 24)
        yield self.assertFailure(on_token_thread(symmetric.create_kek, self.token, label, os.urandom(32)), ValueError)
        yield self.assertFailure(on_token_thread(symmetric.create_kek, self.token, self.new_label(), b"short"),
                                 ValueError)
        yield self.assertFailure(on_token_thread(symmetric.wrap_with_kek, self.token, "no-such-kek", b"k" * 16),
                                 LookupError)

    @defer.inlineCallbacks
    def test_sealed_secrets_are_bound_to_their_context(self):
        label = self.new_label()
        yield on_token_thread(symmetric.ensure_sealing_key, self.token, label)
        yield on_token_thread(symmetric.ensure_sealing_key, self.token, label)  # idempotent
        attrs = yield self.attributes(label)
        self.assertEqual((attrs[Attribute.SENSITIVE], attrs[Attribute.EXTRACTABLE]), (True, False))
        sealed = yield on_token_thread(symmetric.seal, self.token, label, b"the secret", b"alice")
        self.assertNotIn(b"the secret", sealed)
        opened = yield on_token_thread(symmetric.unseal, self.token, label, sealed, b"alice")
        self.assertEqual(opened, b"the secret")
        yield self.assertFailure(on_token_thread(symmetric.unseal, self.token, label, sealed, b"bob"), ValueError)
        tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
        yield self.assertFailure(on_token_thread(symmetric.unseal, self.token, label, tampered, b"alice"),
                                 ValueError)
        # the token is still in use after the refusals
        again = yield on_token_thread(symmetric.unseal, self.token, label, sealed, b"alice")
        self.assertEqual(again, b"the secret")


class ServerKeygenStoreTests(StoreBackend, unittest.TestCase):
    def setUp(self):
        self.store = Store(self.store_location())
        self.addCleanup(self.store.close)

    def test_package_life(self):
        pkg = os.urandom(16)
        self.store.keygen.key_package_started(pkg_id=pkg, client="alice", label="default", key_label="k1", form="enveloped",
                                       receipt_requested=True)
        self.assertEqual(self.store.keygen.key_package(pkg).state, "generating")
        self.store.keygen.key_package_certified(pkg, 0xABC)
        self.store.keygen.key_package_delivered(pkg, escrowed=True)
        record = self.store.keygen.key_package(pkg)
        self.assertEqual((record.state, record.serial, record.escrowed, record.key_destroyed, record.receipt_requested),
                         ("delivered", 0xABC, True, False, True))
        self.store.keygen.key_package_returned(pkg, client="alice", kind="error", der=b"e", error_code="decryptFailure")
        self.store.keygen.key_package_returned(pkg, client="alice", kind="receipt", der=b"r", signer="CN=d")
        record = self.store.keygen.key_package(pkg)
        self.assertEqual((record.state, record.error_code), ("confirmed", None))
        self.assertEqual([r[2] for r in self.store.keygen.key_package_returns(pkg)], ["error", "receipt"])
        self.store.keygen.key_package_returned(None, client="alice", kind="error", der=b"e2", error_code="decodeFailure")
        self.assertEqual(len(self.store.keygen.key_package_returns()), 3)
        events = [(e.operation, e.outcome) for e in self.store.audit.events()]
        self.assertIn(("serverkeygen", "delivered"), events)
        self.assertIn(("serverkeygen/return", "receipt"), events)
        self.assertEqual([p.pkg_id for p in self.store.keygen.key_packages("alice")], [pkg])
        self.assertEqual(self.store.keygen.key_packages("bob"), [])

    def test_orphans(self):
        young, old, failed = os.urandom(16), os.urandom(16), os.urandom(16)
        for pkg in (young, old, failed):
            self.store.keygen.key_package_started(pkg_id=pkg, client="c", label="l", key_label=pkg.hex(), form="pkcs8",
                                           receipt_requested=False)
        past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)).isoformat(
            timespec="seconds")
        self.store.db.execute("UPDATE skg_packages SET created_at=? WHERE pkg_id=?", (past, old.hex()))
        self.store.keygen.key_package_failed(failed, "TokenUnavailable", key_destroyed=False)
        cutoff = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)).isoformat(
            timespec="seconds")
        self.assertEqual({p.pkg_id for p in self.store.keygen.orphan_key_packages(cutoff)}, {old, failed})
        self.store.keygen.key_package_destroyed(failed)
        self.assertEqual({p.pkg_id for p in self.store.keygen.orphan_key_packages(cutoff)}, {old})

    def test_keks_recipients_and_passwords(self):
        self.store.keygen.add_kek(b"\x01\x02", "alice", "tok-1", 32)
        self.assertRaises(DuplicateKek, self.store.keygen.add_kek, b"\x01\x02", "bob", "tok-2", 16)
        self.assertEqual(self.store.keygen.kek(b"\x01\x02").client, "alice")
        self.assertEqual([k.key_id for k in self.store.keygen.keks()], [b"\x01\x02"])
        self.assertEqual(self.store.keygen.remove_kek(b"\x01\x02").token_label, "tok-1")
        self.assertIsNone(self.store.keygen.kek(b"\x01\x02"))
        self.store.keygen.add_recipient(b"ski", "alice", b"der", "CN=a", "2030-01-01T00:00:00+00:00")
        self.assertEqual(self.store.keygen.recipient(b"ski").client, "alice")
        self.assertTrue(self.store.keygen.remove_recipient(b"ski"))
        self.assertFalse(self.store.keygen.remove_recipient(b"ski"))
        self.store.keygen.set_pkcs12_password("alice", b"sealed")
        self.assertEqual(self.store.keygen.pkcs12_password("alice"), b"sealed")
        self.assertTrue(self.store.keygen.clear_pkcs12_password("alice"))
        self.assertIsNone(self.store.keygen.pkcs12_password("alice"))


ServerKeygenStoreTestsOnPostgres = on_postgres(ServerKeygenStoreTests)
