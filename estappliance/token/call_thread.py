"""The one thread that talks PKCS#11, and the deadline of every call on it.

SoftHSM2 driven through python-pkcs11 corrupts token objects when two threads
call it at once, so every PKCS#11 call in this process runs on this single
thread. Throughput comes from more processes, not more threads.

A call that hangs inside the PKCS#11 library blocks that thread, and nothing
in Python can interrupt it. What a deadline (``[token] call_timeout``) means
here, by design:

* a call not finished ``timeout`` seconds after it was asked for is answered
  ``TokenUnavailable`` (503 + Retry-After) at once; if the thread is still
  inside that very call, the token is marked stuck;
* while it is stuck, every new call is answered ``TokenUnavailable`` without
  being queued (no request waits behind it), and calls already queued are
  skipped when their turn comes if their deadline has passed;
* when the stuck call returns (or raises), its result is dropped, every
  session is closed and the library re-initialised (``session.drop_all``),
  and the next call logs in again: the service recovers by itself.

No second thread is started beside a stuck one: the library would then be
entered by two threads at once, which is exactly what this thread exists to
prevent. A call that never returns therefore leaves this process's token
operations at 503 (everything else keeps working) until the process is
restarted (a worker killed is restarted by the master).
"""
from __future__ import annotations

import time
from typing import Any, Callable, ParamSpec, TypeVar

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.logger import Logger

from ..errors import TokenUnavailable
from ..threads import SingleThread

log = Logger()
P = ParamSpec("P")
T = TypeVar("T")


class _Job:
    __slots__ = ("expired", "started", "finished")

    def __init__(self) -> None:
        self.expired = False
        self.started: float | None = None
        self.finished = False


class _Abandoned(Exception):
    """A queued call whose deadline passed before its turn: not run."""


class TokenCalls:
    """Runs token calls on one thread, each answered within ``timeout`` s."""

    def __init__(self, thread: SingleThread, timeout: float | None = None) -> None:
        self.thread = thread
        self.timeout = timeout  # None: no deadline (estctl, which blocks anyway)
        self.stuck_since: float | None = None
        self.on_recovered: Callable[[], None] | None = None  # runs on the token thread after a stuck call

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> defer.Deferred[T]:
        if self.stuck_since is not None:
            return defer.fail(TokenUnavailable(
                f"a token call has not returned for {time.monotonic() - self.stuck_since:.0f} s"))
        if self.timeout is None:
            return self.thread.run(fn, *args, **kwargs)
        job = _Job()
        answer: defer.Deferred[T] = defer.Deferred()
        timer = reactor.callLater(self.timeout, self._expire, job, answer, getattr(fn, "__name__", "call"))
        inner = self.thread.run(self._call, job, fn, args, kwargs)
        inner.addBoth(self._returned, job, answer, timer)
        return answer

    @staticmethod
    def _call(job: _Job, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """On the token thread."""
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
            log.error("token call {name} has not returned after {timeout} s: the token is marked unavailable"
                      " until it does (then sessions are reopened)", name=name, timeout=self.timeout)
        answer.errback(TokenUnavailable(f"token call did not finish within {self.timeout:g} s"))

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
        if self.stuck_since is not None and job.started is not None and job.started == self.stuck_since:
            stuck_for = time.monotonic() - self.stuck_since
            recover = self.on_recovered
            if recover is not None:
                # Before any other call: the session the stuck call used is suspect.
                done = self.thread.run(recover)
                done.addCallbacks(lambda _: self._unstuck(stuck_for), self._recover_failed)
            else:
                self._unstuck(stuck_for)

    def _unstuck(self, stuck_for: float) -> None:
        self.stuck_since = None
        log.warn("the stuck token call returned after {seconds:.1f} s; sessions reopened, token calls resume",
                 seconds=stuck_for)

    def _recover_failed(self, failure: Failure) -> None:
        self.stuck_since = None
        log.failure("reopening token sessions after a stuck call", failure)


PKCS11_THREAD = SingleThread("pkcs11")
TOKEN_CALLS = TokenCalls(PKCS11_THREAD)
on_token_thread = TOKEN_CALLS.run
