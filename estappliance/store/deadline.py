"""A deadline for the server's store calls: a database that stops answering
(a PostgreSQL server hung, or cut off behind a network that still accepts
packets) gives 503 + Retry-After, not requests that hang.

A lost connection is seen at once (``StoreUnavailable`` from the backend);
a database that holds a query without answering is not: the driver waits,
and the store's one thread with it. Nothing in Python can interrupt that
wait, so, as the token's calls do (``token/call_thread.py``):

* a call not finished ``timeout`` seconds after it was asked for is
  answered ``StoreUnavailable`` at once; if the thread is still inside that
  very call, the store is marked stuck (one warning);
* while it is stuck, new calls are answered ``StoreUnavailable`` without
  being queued, and calls already queued are skipped when their turn comes
  if their deadline has passed (no write runs for a request answered 503);
* when the stuck call returns, its result is dropped (a write it made
  stays: like a request in flight when a node dies) and calls resume.

``timeout`` None (estctl, the tests' in-process servers) runs calls
without a deadline.
"""
from __future__ import annotations

from twisted.logger import Logger

from ..errors import StoreUnavailable
from ..threads import DeadlineCalls, SingleThread

log = Logger()

SERVER_TIMEOUT = 5.0  # seconds: what ``twistd est`` sets (service.build)


class StoreCalls(DeadlineCalls):
    """Runs store calls on one thread, each answered within ``timeout`` s."""

    what = "store call"

    def __init__(self, thread: SingleThread, timeout: float | None = None) -> None:
        super().__init__(thread, StoreUnavailable, timeout)

    def stuck(self, name: str) -> None:
        log.warn("store call {name} has not returned after {timeout:g} s: store calls answer 503 until it"
                 " does", name=name, timeout=self.timeout)

    def stuck_call_returned(self, stuck_for: float) -> None:
        log.info("the stuck store call returned after {seconds:.1f} s; store calls resume", seconds=stuck_for)
        super().stuck_call_returned(stuck_for)
