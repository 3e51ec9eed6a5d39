"""The device's side of a root key update (client/rollover.py), with
software keys: a new root is taken only through links signed by what the
device trusts; a retired root is dropped; nothing else changes."""
from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial import unittest

from estappliance.client.rollover import update_anchors
from estappliance.pki import certs
from estappliance.pki.rollover import link, root_update_validity

NAME = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Device CA")])
NOW = datetime.datetime.now(datetime.timezone.utc)


def root(key, days=3650, name=NAME):
    return certs.root_ca(name, key.public_key(), x509.random_serial_number(), NOW, days).sign(key, hashes.SHA256())


def links(old_key, old, new_key, new):
    (a, b), (c, d) = root_update_validity(old, new)
    nwo = link(subject=NAME, public_key=new_key.public_key(), issuer=old, serial=1, not_before=a,
               not_after=b).sign(old_key, hashes.SHA256())
    own = link(subject=NAME, public_key=old_key.public_key(), issuer=new, serial=2, not_before=c,
               not_after=d).sign(new_key, hashes.SHA256())
    return nwo, own


class UpdateAnchorsTests(unittest.TestCase):
    def setUp(self):
        self.old_key, self.new_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        self.old, self.new = root(self.old_key), root(self.new_key, 3651)
        self.nwo, self.own = links(self.old_key, self.old, self.new_key, self.new)

    def test_a_linked_new_root_is_added_and_the_old_one_kept_while_listed(self):
        update = update_anchors([self.old], [self.old, self.new, self.nwo, self.own])
        self.assertEqual((update.added, update.dropped, update.refused), ([self.new], [], []))
        self.assertEqual(update.anchors, [self.new, self.old])

    def test_a_root_without_a_link_from_the_trusted_key_is_refused(self):
        stranger_key = ec.generate_private_key(ec.SECP256R1())
        stranger = root(stranger_key)
        _, own = links(self.old_key, self.old, stranger_key, stranger)  # OldWithNew alone proves nothing
        update = update_anchors([self.old], [self.old, stranger, own])
        self.assertFalse(update.changed)
        self.assertEqual(update.anchors, [self.old])
        self.assertIn("no NewWithOld link signed by a trusted key", update.refused[0])

    def test_a_new_with_old_signed_by_someone_else_is_refused(self):
        other = ec.generate_private_key(ec.SECP256R1())
        forged, _ = links(other, root(other), self.new_key, self.new)
        update = update_anchors([self.old], [self.old, self.new, forged, self.own])
        self.assertFalse(update.changed)

    def test_the_retired_root_is_dropped_once_cacerts_no_longer_lists_it(self):
        update = update_anchors([self.new, self.old], [self.new])
        self.assertEqual((update.anchors, update.dropped), ([self.new], [self.old]))

    def test_an_unrelated_anchor_stays(self):
        other = root(ec.generate_private_key(ec.SECP256R1()), name=x509.Name([
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "Somebody else")]))
        update = update_anchors([other, self.new], [self.new])
        self.assertFalse(update.changed)
