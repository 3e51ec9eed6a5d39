"""Secrets every node shares (ca/shared_secrets.py, store/secret_tables.py):
kept in the store only sealed by the token, the first writer's value for
everyone, an older version's ``<name>.key`` file imported once, a store
sealed by another token refused with a clear reason."""
from __future__ import annotations

import os
from pathlib import Path

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams
from twisted.internet import defer, task
from twisted.trial import unittest

from estappliance.ca.shared_secrets import (FetchLater, SharedSecrets, SharedSecretUnreadable, fetch_at_start,
                                            sealing_key_label)
from estappliance.errors import TokenUnavailable
from estappliance.store import Store, on_store_thread
from estappliance.token import on_token_thread
from estappliance.token import symmetric

from . import support


class SealedSecretTableTests(unittest.TestCase):
    def setUp(self):
        self.path = Path(self.mktemp()) / "est.sqlite"
        self.store = Store(self.path)
        self.addCleanup(self.store.close)

    def test_absent_name_has_no_secret(self):
        self.assertIsNone(self.store.secrets.sealed_secret("digest"))

    def test_first_writer_wins(self):
        self.assertEqual(self.store.secrets.add_sealed_secret("digest", b"first"), b"first")
        self.assertEqual(self.store.secrets.add_sealed_secret("digest", b"second"), b"first")
        self.assertEqual(self.store.secrets.sealed_secret("digest"), b"first")

    def test_kept_across_reopening_and_seen_by_another_connection(self):
        self.store.secrets.add_sealed_secret("tls-ticket", b"sealed")
        other = Store(self.path)
        self.addCleanup(other.close)
        self.assertEqual(other.secrets.sealed_secret("tls-ticket"), b"sealed")
        self.assertEqual(other.secrets.add_sealed_secret("tls-ticket", b"late"), b"sealed")


class SharedSecretTests(support.TokenLabels, unittest.TestCase):
    def setUp(self):
        support.TokenLabels.setUp(self)
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.store = Store(self.dir / "est.sqlite")
        self.addCleanup(self.store.close)
        self.prefix = self.new_label()
        self.labels.append(sealing_key_label(self.prefix))  # destroyed after the test

    def secrets(self, store=None, prefix=None) -> SharedSecrets:
        return SharedSecrets(self.token, store or self.store, prefix or self.prefix, legacy_dir=self.dir)

    def sealed(self, name: str) -> defer.Deferred:
        return on_store_thread(self.store.secrets.sealed_secret, name)

    @defer.inlineCallbacks
    def test_made_once_sealed_then_the_same_for_every_process(self):
        first = yield self.secrets().fetch("digest")
        self.assertEqual(len(first), 32)
        sealed = yield self.sealed("digest")
        self.assertNotIn(first, sealed)  # never in clear in the store
        # Another process (its own store connection) on the same store gets the same.
        other = Store(self.dir / "est.sqlite")
        self.addCleanup(other.close)
        again = yield self.secrets(store=other).fetch("digest")
        self.assertEqual(again, first)
        self.assertEqual((yield self.sealed("digest")), sealed)  # not re-sealed
        # A different name is a different secret.
        ticket = yield self.secrets().fetch("tls-ticket")
        self.assertNotEqual(ticket, first)

    @defer.inlineCallbacks
    def test_sealed_with_the_secrets_name_as_context(self):
        value = yield self.secrets().fetch("digest")
        sealed = yield self.sealed("digest")
        label = sealing_key_label(self.prefix)
        opened = yield on_token_thread(symmetric.unseal, self.token, label, sealed, b"shared-secret:digest")
        self.assertEqual(opened, value)
        with self.assertRaises(ValueError):
            yield on_token_thread(symmetric.unseal, self.token, label, sealed, b"shared-secret:tls-ticket")

    @defer.inlineCallbacks
    def test_racing_writers_agree_on_the_first(self):
        """Two processes that both found no secret and sealed their own: the
        loser gets the winner's."""
        label = sealing_key_label(self.prefix)
        yield on_token_thread(symmetric.ensure_sealing_key, self.token, label)
        winner, loser = os.urandom(32), os.urandom(32)
        sealed_w = yield on_token_thread(symmetric.seal, self.token, label, winner, b"shared-secret:digest")
        yield on_store_thread(self.store.secrets.add_sealed_secret, "digest", sealed_w)
        sealed_l = yield on_token_thread(symmetric.seal, self.token, label, loser, b"shared-secret:digest")
        kept = yield on_store_thread(self.store.secrets.add_sealed_secret, "digest", sealed_l)
        self.assertEqual(kept, sealed_w)
        self.assertEqual((yield self.secrets().fetch("digest")), winner)

    @defer.inlineCallbacks
    def test_older_key_file_imported_once_then_removed(self):
        old = os.urandom(32)
        path = self.dir / "digest.key"
        path.write_bytes(old)
        value = yield self.secrets().fetch("digest")
        self.assertEqual(value, old)  # nonces made before the upgrade stay valid
        self.assertFalse(path.exists())  # not left in clear on disk
        path.write_bytes(os.urandom(32))  # a stale copy (e.g. restored): the store's value wins
        self.assertEqual((yield self.secrets().fetch("digest")), old)
        self.assertFalse(path.exists())

    @defer.inlineCallbacks
    def test_a_key_file_of_the_wrong_size_is_not_imported(self):
        (self.dir / "digest.key").write_bytes(b"short")
        value = yield self.secrets().fetch("digest")
        self.assertEqual(len(value), 32)
        self.assertNotEqual(value[:5], b"short")

    @defer.inlineCallbacks
    def test_blocking_fetch_gives_the_same_as_the_service(self):
        """Start-up (service.build) waits for the token thread; same workflow, same value."""
        (self.dir / "digest.key").write_bytes(old := os.urandom(32))
        value = yield support.in_thread(self.secrets().fetch_blocking, "digest")
        self.assertEqual(value, old)
        self.assertEqual((yield self.secrets().fetch("digest")), old)

    @defer.inlineCallbacks
    def test_two_sealing_keys_made_by_processes_starting_together_both_work(self):
        """PKCS#11 has no create-if-absent: two workers may each make the
        sealing key. A secret sealed under either opens."""
        label = sealing_key_label(self.prefix)

        def make_one(session):
            session.generate_key(KeyType.AES, 256, store=True, label=label, template={
                Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True})
        first = yield self.secrets().fetch("digest")
        yield on_token_thread(self.token.run, make_one)  # a second key under the same label
        yield on_token_thread(self.token.run, make_one)  # and a third
        self.assertEqual((yield self.secrets().fetch("digest")), first)
        other = Store(self.dir / "other.sqlite")
        self.addCleanup(other.close)
        value = yield self.secrets(store=other).fetch("digest")  # sealed under the first key listed
        self.assertEqual((yield self.secrets(store=other).fetch("digest")), value)

        def seal_with_last(session):  # what another process might have sealed with
            keys = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}))
            self.assertEqual(len(keys), 3)
            nonce = os.urandom(12)
            return nonce + keys[-1].encrypt(b"k" * 32, mechanism=Mechanism.AES_GCM,
                                            mechanism_param=GCMParams(nonce, b"ctx", 128))
        sealed = yield on_token_thread(self.token.run, seal_with_last)
        opened = yield on_token_thread(symmetric.unseal, self.token, label, sealed, b"ctx")
        self.assertEqual(opened, b"k" * 32)

    @defer.inlineCallbacks
    def test_a_store_sealed_by_another_token_key_is_refused_clearly(self):
        yield self.secrets().fetch("digest")
        other = self.new_label()
        self.labels.append(sealing_key_label(other))
        with self.assertRaises(SharedSecretUnreadable) as caught:
            yield self.secrets(prefix=other).fetch("digest")
        self.assertIn("has no key", str(caught.exception))
        yield on_token_thread(symmetric.ensure_sealing_key, self.token, sealing_key_label(other))
        with self.assertRaises(SharedSecretUnreadable) as caught:
            yield self.secrets(prefix=other).fetch("digest")
        self.assertIn("does not open", str(caught.exception))
        self.assertIsNotNone((yield self.sealed("digest")))  # nothing replaced


class _TokenAwayAtFirst:
    """A SharedSecrets whose token is away for the first ``away`` asks."""

    def __init__(self, away: int) -> None:
        self.away = away
        self.asked = 0

    def fetch_blocking(self, name: str) -> bytes:
        self.asked += 1
        if self.asked <= self.away:
            raise TokenUnavailable("token away")
        return name.encode().ljust(32, b".")

    def fetch(self, name: str) -> defer.Deferred:
        try:
            return defer.succeed(self.fetch_blocking(name))
        except TokenUnavailable as e:
            return defer.fail(e)


class TokenAwayAtStartTests(unittest.TestCase):
    def test_left_for_later_then_handed_over_when_the_token_answers(self):
        secrets = _TokenAwayAtFirst(away=2)
        found, later = fetch_at_start(secrets, ["digest"])
        self.assertEqual((found, later), ({}, ["digest"]))
        clock = task.Clock()
        had = []
        fetcher = FetchLater(secrets, {"digest": had.append}, every=30, clock=clock)
        fetcher.startService()
        self.addCleanup(fetcher.stopService)
        clock.advance(30)
        self.assertEqual(had, [])  # still away
        clock.advance(30)
        self.assertEqual(had, [b"digest".ljust(32, b".")])
        clock.advance(300)
        self.assertEqual(len(had), 1)  # asked no more
        self.assertEqual(secrets.asked, 3)
        self.assertEqual(clock.getDelayedCalls(), [])
