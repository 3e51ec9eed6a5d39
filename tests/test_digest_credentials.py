"""Digest H(A1)s sealed by the token (ca/digest_credentials.py): the store
never holds them in clear; a sealed value opens only for its own client and
algorithm; ``estctl store migrate`` seals an older version's clear values."""
from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from estappliance.ca.shared_secrets import sealing_key_label
from estappliance.ca.digest_credentials import SEALED, Ha1Opener, seal_clear_ha1s, seal_ha1s
from estappliance.http_digest import ha1_all
from estappliance.store import Store
from estappliance.token import on_token_thread

from . import support


class SealedHa1Tests(support.TokenLabels, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.prefix = self.new_label()
        self.labels.append(sealing_key_label(self.prefix))  # destroyed after the test
        self.store = Store(Path(self.mktemp()) / "est.sqlite")
        self.addCleanup(self.store.close)
        self.clear = ha1_all("alice", "realm", "pw")

    @defer.inlineCallbacks
    def test_sealed_values_open_only_for_their_client_and_algorithm(self):
        sealed = yield on_token_thread(seal_ha1s, self.token, self.prefix, "alice", self.clear)
        for alg, value in sealed.items():
            self.assertTrue(value.startswith(SEALED))
            self.assertNotIn(self.clear[alg], value)
        opener = Ha1Opener(self.token, self.prefix)
        self.assertEqual((yield opener.open("alice", sealed)), self.clear)
        self.assertEqual((yield opener.open("mallory", sealed)), {})  # moved to another client
        swapped = {"SHA-256": sealed["MD5"], "MD5": sealed["SHA-256"]}
        self.assertEqual((yield opener.open("alice", swapped)), {})  # moved to another algorithm
        self.assertEqual((yield opener.open("bob", {"MD5": "00" * 16})), {"MD5": "00" * 16})  # older, clear

    @defer.inlineCallbacks
    def test_migrate_seals_clear_values_and_leaves_sealed_ones(self):
        self.store.clients.add_client("alice", "hash", ["*"], self.clear)
        sealed_bob = yield on_token_thread(seal_ha1s, self.token, self.prefix, "bob", ha1_all("bob", "realm", "pw"))
        self.store.clients.add_client("bob", "hash", ["*"], sealed_bob)
        count = yield on_token_thread(seal_clear_ha1s, self.token, self.prefix, self.store)
        self.assertEqual(count, 1)
        alice = self.store.clients.client("alice").digest_ha1
        self.assertTrue(all(v.startswith(SEALED) for v in alice.values()))
        self.assertEqual(self.store.clients.client("bob").digest_ha1, sealed_bob)
        self.assertEqual((yield Ha1Opener(self.token, self.prefix).open("alice", alice)), self.clear)
