"""Named single-thread executors for blocking work kept off the reactor."""
from __future__ import annotations

import threading
from typing import Callable

from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool


class SingleThread:
    """Runs callables one at a time, in order, on one dedicated thread.

    The thread starts on first use and stops when the reactor shuts down.
    """

    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._pool: ThreadPool | None = None

    def _started(self) -> ThreadPool:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPool(1, 1, name=self.name)
                self._pool.start()
                reactor.addSystemEventTrigger("during", "shutdown", self.stop)
            return self._pool

    def stop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def run(self, fn: Callable, *args, **kwargs) -> defer.Deferred:
        """Call ``fn(*args, **kwargs)`` on the thread; the Deferred fires on the reactor."""
        return deferToThreadPool(reactor, self._started(), fn, *args, **kwargs)
