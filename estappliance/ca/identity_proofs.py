"""CMC identity-proof shared secrets (RFC 5272 6.2): kept in the token,
checked by the token.

The secret itself is stored nowhere. RFC 5272 6.2.1 keys the witness HMAC
with H(secret), H being the proofAlgID hash the client picks; so for each
hash we take, H(secret) is imported into the token as a sensitive,
non-extractable HMAC key, and the token computes the witness to compare.
Each key is zero-padded to the HMAC block size (64 octets for SHA-1 and
SHA-256, 128 for SHA-384 and SHA-512): HMAC pads a shorter key with zeros
anyway, so the MAC is the same, and tokens (SoftHSM2 among them) refuse HMAC
keys shorter than the digest. The store only records which clients have a
secret. ``estctl cmc secret set|remove|list`` manages them.
"""
from __future__ import annotations

import hashlib
import hmac as std_hmac
from typing import Any, Generator

from twisted.internet import defer
from twisted.logger import Logger

from ..errors import TokenCannot
from ..pki.cmc import PROOF_HASHES, IdentityProof, identity_proof_key
from ..store import Store, on_store_thread
from ..token import Token, on_token_thread
from ..token import hmac_keys

log = Logger()

BLOCK_SIZES = {"sha1": 64, "sha256": 64, "sha384": 128, "sha512": 128}
MIN_SECRET = 8


def key_label(client: str, proof_hash: str, block: int) -> str:
    """Token label of one derived key; the client name is hashed so any name fits."""
    tag = hashlib.sha256(client.encode()).hexdigest()[:16]
    return f"cmc-idproof-{tag}-{proof_hash}-{block}"


def install(token: Token, store: Store, client: str, secret: bytes) -> None:
    """Blocking (estctl): the derived keys into the token, then the record."""
    if len(secret) < MIN_SECRET:
        raise ValueError(f"a CMC shared secret has at least {MIN_SECRET} octets")
    for proof_hash in PROOF_HASHES:
        derived = identity_proof_key(secret, proof_hash)
        for block in sorted(set(BLOCK_SIZES.values())):
            hmac_keys.import_hmac_key(token, key_label(client, proof_hash, block), derived.ljust(block, b"\0"))
    store.cmc.set_cmc_secret(client)


def remove(token: Token, store: Store, client: str) -> bool:
    """Blocking (estctl): forget a client's secret; False if it had none."""
    found = False
    for proof_hash in PROOF_HASHES:
        for block in sorted(set(BLOCK_SIZES.values())):
            found = hmac_keys.destroy(token, key_label(client, proof_hash, block)) or found
    return store.cmc.remove_cmc_secret(client) or found


class IdentityProofs:
    """Checks identityProofV2 witnesses for the service (token and store threads)."""

    def __init__(self, token: Token, store: Store) -> None:
        self.token = token
        self.store = store

    def has_secret(self, client: str) -> defer.Deferred[bool]:
        return on_store_thread(self.store.cmc.has_cmc_secret, client)

    @defer.inlineCallbacks
    def check(self, client: str, proof: IdentityProof, req_sequence_der: bytes
              ) -> Generator[defer.Deferred[Any], Any, bool]:
        """Fires with True if ``proof`` is the client's witness over reqSequence."""
        label = key_label(client, proof.hash, BLOCK_SIZES[proof.mac])
        policy = yield on_token_thread(self.token.policy)
        problem = policy.hmac_problem(proof.mac)
        if problem:
            log.warn("token cannot check an identityProofV2 with HMAC-{mac}: {problem}", mac=proof.mac,
                     problem=problem)
            raise TokenCannot(f"identityProofV2 with HMAC-{proof.mac.upper()}: {problem}")
        mac = yield on_token_thread(hmac_keys.hmac, self.token, label, req_sequence_der, proof.mac)
        return mac is not None and std_hmac.compare_digest(mac, proof.witness)


__all__ = ["BLOCK_SIZES", "IdentityProofs", "install", "key_label", "remove"]
