"""A job exactly one node runs at a time, under a lease in the shared store.

Every node's primary worker runs a ``LeaseKeeper``: every ``renew_every``
seconds it takes or renews the lease for ``term`` seconds. The holder runs
the job; the others wait. When the holder dies its term runs out and the
next keeper to try takes over, within ``term + renew_every`` seconds (45 +
15 by default: under a minute); a holder that stops cleanly gives the lease
up at once. A keeper that cannot reach the store stops running the job
until it can renew again, so two nodes never both believe they hold it for
longer than one term.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..store import Store, on_store_thread

_log = Logger()

TERM = 45.0
RENEW_EVERY = 15.0


def holder_name() -> str:
    """This process, as the leases table names it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseKeeper(TimerService):
    def __init__(self, store: Store, name: str, on_taken: Callable[[], object], *,
                 term: float = TERM, renew_every: float = RENEW_EVERY, holder: str | None = None) -> None:
        """``on_taken`` runs (on the reactor) each time this process takes
        the lease it did not hold, e.g. to run the job at once."""
        super().__init__(renew_every, self.renew)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.store = store
        self.lease_name = name
        self.on_taken = on_taken
        self.term = term
        self.holder = holder or holder_name()
        self.held = False
        self._held_until = 0.0

    @property
    def holding(self) -> bool:
        """True while this process holds an unexpired lease (by its own clock)."""
        return self.held and time.time() < self._held_until

    @defer.inlineCallbacks
    def renew(self) -> Any:
        asked = time.time()
        try:
            got: bool = yield on_store_thread(self.store.leases.take, self.lease_name, self.holder, self.term, asked)
        except Exception as e:
            if self.held:
                _log.warn("lease {name}: cannot renew ({error}); not running the job until it can",
                          name=self.lease_name, error=e)
            self.held = False
            return
        was, self.held = self.held, got
        if got:
            self._held_until = asked + self.term
            if not was:
                _log.info("lease {name} taken by {holder}", name=self.lease_name, holder=self.holder)
                self.on_taken()
        elif was:
            _log.warn("lease {name} lost to another node", name=self.lease_name)

    def stopService(self) -> defer.Deferred[None]:
        """Stop renewing (a renewal under way finishes first), then give the
        lease up so that another node takes it at its next try."""
        stopped: defer.Deferred[None] = defer.maybeDeferred(super().stopService)

        def release(_: object) -> defer.Deferred[None]:
            if not self.held:
                return defer.succeed(None)
            self.held = False
            return on_store_thread(self.store.leases.release, self.lease_name, self.holder)

        def unreleased(failure: Failure) -> None:
            _log.warn("lease {name}: not released ({error})", name=self.lease_name, error=failure.getErrorMessage())
        released: defer.Deferred[None] = stopped.addCallback(release)
        return released.addErrback(unreleased)
