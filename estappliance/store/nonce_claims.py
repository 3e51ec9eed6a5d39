"""Digest nonce-count claims batched like certificates (group.py): claims
made while a commit is on its way to disk go into the next one, so under load
one fsync serves many Digest-authenticated requests."""
from __future__ import annotations

import time

from twisted.internet import defer
from twisted.python.failure import Failure

from . import on_store_thread
from .db import Store

# How often expired nonces' counts are deleted (in the same commit as claims).
PRUNE_EVERY = 60.0


class NonceCountClaims:
    def __init__(self, store: Store, lifetime: float, max_batch: int = 256):
        """``lifetime``: how long a nonce is accepted; its count is kept a
        minute longer (the clock-skew margin of the verifier)."""
        self.store = store
        self.keep = lifetime + 60
        self.max_batch = max_batch
        self._queue: list[tuple[tuple[str, int], defer.Deferred[bool]]] = []
        self._busy = False
        self._pruned = 0.0

    def claim(self, nonce: str, count: int) -> defer.Deferred[bool]:
        """Fires with True once the count is durably the nonce's last, or
        with False if it is not higher than one accepted before (a replay)."""
        d: defer.Deferred[bool] = defer.Deferred()
        self._queue.append(((nonce, count), d))
        if not self._busy:
            self._flush()
        return d

    def _flush(self) -> None:
        batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        self._busy = True
        now = time.time()
        forget = None
        if now - self._pruned > PRUNE_EVERY:
            self._pruned, forget = now, now - self.keep
        done = on_store_thread(self.store.claim_nonce_counts, [claim for claim, _ in batch], now, forget)
        done.addBoth(self._answer, batch)

    def _answer(self, results: list[bool] | Failure, batch: list[tuple[tuple[str, int], defer.Deferred[bool]]]
                ) -> None:
        self._busy = False
        if isinstance(results, list):
            for (_, d), accepted in zip(batch, results):
                d.callback(accepted)
        else:
            for _, d in batch:
                d.errback(results)
        if self._queue:
            self._flush()


__all__ = ["NonceCountClaims"]
