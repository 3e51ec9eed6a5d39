"""Group commit: certificates issued while a commit is on its way to disk
are recorded together in the next one.

Each caller still gets its Deferred only after its own row is durably
committed (fsync), so no certificate is handed out unrecorded; but under load
one fsync serves many requests instead of one each.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from .. import metrics
from . import on_store_thread
from .db import Store


class GroupCommitter:
    def __init__(self, store: Store, max_batch: int = 256) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: list[tuple[dict[str, Any], defer.Deferred[None]]] = []
        self._busy = False

    def record_certificate(self, **item: Any) -> defer.Deferred[None]:
        """Like Store.record_certificate; fires once the row is committed."""
        d: defer.Deferred[None] = defer.Deferred()
        self._queue.append((item, d))
        if not self._busy:
            self._flush()
        return d

    def _flush(self) -> None:
        batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        self._busy = True
        done = on_store_thread(self.store.record_certificates, [item for item, _ in batch])
        done.addBoth(self._answer, batch)

    def _answer(self, results: list[Exception | None] | Failure,
                batch: list[tuple[dict[str, Any], defer.Deferred[None]]]) -> None:
        self._busy = False
        if isinstance(results, list):
            metrics.observe_batch([item["label"] for (item, _), outcome in zip(batch, results) if outcome is None])
            for (_, d), outcome in zip(batch, results):
                if outcome is None:
                    d.callback(None)
                else:
                    d.errback(outcome)
        else:  # the commit itself failed: every caller in the batch hears it
            for _, d in batch:
                d.errback(results)
        if self._queue:
            self._flush()
