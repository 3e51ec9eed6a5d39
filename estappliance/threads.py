"""Named single-thread executors for blocking work kept off the reactor."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, ParamSpec, TypeVar, cast

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IReactorThreads
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
