"""Named single-thread executors for blocking work kept off the reactor."""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, ParamSpec, TypeVar, cast

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IDelayedCall, IReactorThreads
from twisted.python.failure import Failure

_STOP = object()

P = ParamSpec("P")
T = TypeVar("T")
# The same reactor, as the interface this module uses (Twisted types the
# module attribute with only the common interfaces).
_reactor_threads = cast(IReactorThreads, reactor)


class SingleThread:
    """Runs callables one at a time, in order, on one dedicated thread.

    The thread starts on first use and stops when the reactor shuts down.
    Deliberately lean (a C SimpleQueue, one callFromThread per result):
    an enrollment crosses two or three of these threads, and Twisted's ThreadPool
    spent its Python-level locks and conditions on each crossing, on the
    reactor thread too.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] | None = None
        self._thread: threading.Thread | None = None

    def _started(self) -> queue.SimpleQueue[Any]:
        with self._lock:
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._work, args=(self._queue,), name=self.name, daemon=True)
                self._thread.start()
                reactor.addSystemEventTrigger("during", "shutdown", self.stop)
            return self._queue

    @staticmethod
    def _work(jobs: queue.SimpleQueue[Any]) -> None:
        while True:
            job = jobs.get()
            if job is _STOP:
                return
            fn, args, kwargs, d = job
            try:
                result = fn(*args, **kwargs)
            except BaseException:
                _reactor_threads.callFromThread(d.errback, Failure())
            else:
                _reactor_threads.callFromThread(d.callback, result)
            del job, fn, args, kwargs, d  # nothing of the last job outlives it here

    def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        with self._lock:
            jobs, thread = self._queue, self._thread
            self._queue = self._thread = None
        if jobs is not None and thread is not None:
            jobs.put(_STOP)
            if thread is not threading.current_thread():
                thread.join()

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> defer.Deferred[T]:
        """Call ``fn(*args, **kwargs)`` on the thread; the Deferred fires on the reactor."""
        d: defer.Deferred[T] = defer.Deferred()
        self._started().put((fn, args, kwargs, d))
        return d


class _Job:
    __slots__ = ("expired", "started", "finished")

    def __init__(self) -> None:
        self.expired = False
        self.started: float | None = None
        self.finished = False


class _Abandoned(Exception):
    """A queued call whose deadline passed before its turn: not run."""


class DeadlineCalls:
    """Runs calls on one SingleThread, each answered within ``timeout``
    seconds (None: no deadline). Nothing in Python interrupts a call stuck
    in a library, so:

    * a call not finished ``timeout`` s after it was asked for is answered
      with ``unavailable(reason)`` at once; if the thread is still inside
      that very call, the thread is marked stuck (``stuck``, once);
    * while it is stuck, new calls are answered ``unavailable`` without
      being queued, and calls already queued are skipped when their turn
      comes if their deadline has passed;
    * when the stuck call returns, its result is dropped and
      ``stuck_call_returned`` decides how calls resume.

    The token (token/call_thread.py) and the store (store/deadline.py) each
    run one."""

    what = "call"  # what the messages call a call ("token call", "store call")

    def __init__(self, thread: SingleThread, unavailable: Callable[[str], Exception],
                 timeout: float | None = None) -> None:
        self.thread = thread
        self.unavailable = unavailable
        self.timeout = timeout
        self.stuck_since: float | None = None

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> defer.Deferred[T]:
        if self.stuck_since is not None:
            return defer.fail(self.unavailable(
                f"a {self.what} has not returned for {time.monotonic() - self.stuck_since:.0f} s"))
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
        """On the thread."""
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
            self.stuck(name)
        answer.errback(self.unavailable(f"{self.what} did not finish within {self.timeout:g} s"))

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
            self.stuck_call_returned(time.monotonic() - self.stuck_since)

    def stuck(self, name: str) -> None:
        """The thread is inside the call ``name`` past its deadline (log it)."""

    def stuck_call_returned(self, stuck_for: float) -> None:
        """The stuck call is back: calls resume."""
        self.stuck_since = None
