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

import time
from typing import Any, Callable, ParamSpec, TypeVar

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..errors import StoreUnavailable
from ..threads import SingleThread

log = Logger()
P = ParamSpec("P")
T = TypeVar("T")

SERVER_TIMEOUT = 5.0  # seconds: what ``twistd est`` sets (service.build)


class _Job:
    __slots__ = ("expired", "started", "finished")

    def __init__(self) -> None:
        self.expired = False
        self.started: float | None = None
        self.finished = False


class _Abandoned(Exception):
    """A queued call whose deadline passed before its turn: not run."""


class StoreCalls:
    """Runs store calls on one thread, each answered within ``timeout`` s."""

    def __init__(self, thread: SingleThread, timeout: float | None = None) -> None:
        self.thread = thread
        self.timeout = timeout
        self.stuck_since: float | None = None

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> defer.Deferred[T]:
        if self.timeout is None:
            return self.thread.run(fn, *args, **kwargs)
        if self.stuck_since is not None:
            return defer.fail(StoreUnavailable(
                f"the store has not answered for {time.monotonic() - self.stuck_since:.0f} s"))
        job = _Job()
        answer: defer.Deferred[T] = defer.Deferred()
        timer = reactor.callLater(self.timeout, self._expire, job, answer, getattr(fn, "__name__", "call"))
        inner = self.thread.run(self._call, job, fn, args, kwargs)
        inner.addBoth(self._returned, job, answer, timer)
        return answer

    @staticmethod
    def _call(job: _Job, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """On the store thread."""
        if job.expired:
            raise _Abandoned()
        job.started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            job.finished = True

    def _expire(self, job: _Job, answer: defer.Deferred[Any], name: str) -> None:
        job.expired = True
        if job.started is not None and not job.finished and self.stuck_since is None:
            self.stuck_since = job.started
            log.warn("store call {name} has not returned after {timeout:g} s: store calls answer 503 until it"
                     " does", name=name, timeout=self.timeout)
        answer.errback(StoreUnavailable(f"the store did not answer within {self.timeout:g} s"))

    def _returned(self, result: object, job: _Job, answer: defer.Deferred[Any], timer: IDelayedCall) -> None:
        if not job.expired:
            timer.cancel()
            if isinstance(result, Failure):
                answer.errback(result)
            else:
                answer.callback(result)
            return
        if isinstance(result, Failure):
            result.trap(Exception)  # consumed: the caller was answered at the deadline
        if self.stuck_since is not None and job.started == self.stuck_since:
            log.info("the stuck store call returned after {seconds:.1f} s; store calls resume",
                     seconds=time.monotonic() - self.stuck_since)
            self.stuck_since = None
