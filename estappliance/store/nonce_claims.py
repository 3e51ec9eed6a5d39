"""Digest nonce-count claims batched like certificates (batched.py): claims
made while a commit is on its way to disk go into the next one, so under load
one fsync serves many Digest-authenticated requests."""
from __future__ import annotations

import time

from twisted.internet import defer

from .batched import Batcher
from .db import Store

# How often expired nonces' counts are deleted (in the same commit as claims).
PRUNE_EVERY = 60.0


class NonceCountClaims(Batcher[tuple[str, int], bool]):
    def __init__(self, store: Store, lifetime: float, max_batch: int = 256):
        """``lifetime``: how long a nonce is accepted; its count is kept a
        minute longer (the clock-skew margin of the verifier)."""
        super().__init__(self._commit_claims, max_batch)
        self.store = store
        self.keep = lifetime + 60
        self._pruned = 0.0

    def claim(self, nonce: str, count: int) -> defer.Deferred[bool]:
        """Fires with True once the count is durably the nonce's last, or
        with False if it is not higher than one accepted before (a replay)."""
        return self.submit((nonce, count))

    def _commit_claims(self, claims: list[tuple[str, int]]) -> list[bool | Exception]:
        now = time.time()
        forget = None
        if now - self._pruned > PRUNE_EVERY:
            self._pruned, forget = now, now - self.keep
        return list(self.store.nonce_counts.claim_nonce_counts(claims, now, forget))


__all__ = ["NonceCountClaims"]
