"""Group commit: calls made while a commit is on its way to disk wait and go
together into the next one, so under load one fsync serves many requests
while each caller still hears only once its own row is committed.

Used for issued certificates (group.py) and Digest nonce-count claims
(nonce_claims.py)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

from . import on_store_thread

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    def __init__(self, commit: Callable[[list[Item]], list[Result | Exception]], max_batch: int = 256) -> None:
        """``commit`` (run on the store thread) writes a batch in one
        transaction and answers per item: a result, or the exception that
        kept that item out. If it raises, every caller in the batch hears it."""
        self._commit = commit
        self.max_batch = max_batch
        self._queue: list[tuple[Item, defer.Deferred[Result]]] = []
        self._busy = False

    def submit(self, item: Item) -> defer.Deferred[Result]:
        d: defer.Deferred[Result] = defer.Deferred()
        self._queue.append((item, d))
        if not self._busy:
            self._flush()
        return d

    def committed(self, items: list[Item], results: list[Result | Exception]) -> None:
        """Called on the reactor after each committed batch (for metrics)."""

    def _flush(self) -> None:
        batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        self._busy = True
        done = on_store_thread(self._commit, [item for item, _ in batch])
        done.addBoth(self._answer, batch)

    def _answer(self, results: list[Result | Exception] | Failure,
                batch: list[tuple[Item, defer.Deferred[Result]]]) -> None:
        self._busy = False
        if isinstance(results, list):
            self.committed([item for item, _ in batch], results)
            for (_, d), outcome in zip(batch, results):
                if isinstance(outcome, Exception):
                    d.errback(outcome)
                else:
                    d.callback(outcome)
        else:
            for _, d in batch:
                d.errback(results)
        if self._queue:
            self._flush()
