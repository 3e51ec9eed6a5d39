"""Several worker processes behind one listening port.

SoftHSM2 (and most HSM libraries) scale across processes, not threads, and
Python runs one core per process. The master process opens the listening
socket and starts N fresh workers (fork and exec: no PKCS#11 state is ever
inherited); each opens its own PKCS#11 session and serves TLS itself. The
master accepts and hands each connection to the worker holding the fewest
(handoff.py). A worker that dies is restarted; the others keep serving, and
connections arriving meanwhile wait in the listening socket's backlog. A
worker whose master is gone reads EOF on its socket pair and stops.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any, Generator

from twisted.application import service
from twisted.internet import defer, protocol, reactor
from twisted.internet.error import ProcessExitedAlready
from twisted.logger import Logger
from twisted.python.failure import Failure

from .handoff import Dispatcher

log = Logger()

RESTART_DELAY = 1.0  # seconds before a dead worker is started again
MAX_RESTART_DELAY = 30.0
STOP_TIMEOUT = 10.0  # seconds a worker gets to finish before SIGKILL


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class _Worker(protocol.ProcessProtocol):
    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.ended: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None  # spawnProcess connected it
        log.info("worker {index} started (pid {pid})", index=self.index, pid=self.transport.pid)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.pool.worker_ended(self, reason.value)


class WorkerPool(service.Service):
    """The master: owns the socket, keeps ``count`` workers running."""

    def __init__(self, config_path: str, count: int, host: str, port: int) -> None:
        self.config_path = config_path
        self.count = count
        self.host = host
        self.port = port
        self.sock: socket.socket | None = None
        self.dispatcher: Dispatcher | None = None
        self.workers: dict[int, _Worker] = {}
        self._delay: dict[int, float] = {}
        self._stopping = False

    def startService(self) -> None:
        super().startService()
        self.sock = listening_socket(self.host, self.port)
        self.port = self.sock.getsockname()[1]
        log.info("listening on {host}:{port} with {n} worker processes", host=self.host, port=self.port,
                 n=self.count)
        self.dispatcher = Dispatcher(self.sock)
        for i in range(self.count):
            self._spawn(i)

    def links(self) -> list:
        """The workers' links (handoff.WorkerLink), for the admin listener's /readyz."""
        return list(self.dispatcher.links.values()) if self.dispatcher is not None else []

    def signal_workers(self, sig: int) -> None:
        """E.g. SIGHUP: each worker reloads (ops/reload.py)."""
        for worker in list(self.workers.values()):
            _signal(worker, sig)

    def _spawn(self, index: int) -> None:
        assert self.sock is not None and self.dispatcher is not None, "spawned after startService"
        worker = _Worker(self, index)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [sys.executable, "-m", "estappliance.worker_process", "--config", self.config_path, "--link", "3",
                "--family", str(int(self.sock.family)), "--index", str(index)]
        try:
            reactor.spawnProcess(worker, sys.executable, argv, env=dict(os.environ),
                                 childFDs={0: "w", 1: 1, 2: 2, 3: theirs.fileno()})
        finally:
            theirs.close()
        self.dispatcher.link(index, ours)
        self.workers[index] = worker

    def worker_ended(self, worker: _Worker, reason: BaseException | None) -> None:
        if self.workers.get(worker.index) is worker:
            assert self.dispatcher is not None  # it had linked this worker
            del self.workers[worker.index]
            self.dispatcher.unlink(worker.index)
        if self._stopping:
            return
        delay = self._delay.get(worker.index, RESTART_DELAY)
        self._delay[worker.index] = min(delay * 2, MAX_RESTART_DELAY)
        log.warn("worker {index} ended ({reason}); restarting in {delay:.0f} s", index=worker.index,
                 reason=reason, delay=delay)
        reactor.callLater(delay, self._restart, worker.index)

    def _restart(self, index: int) -> None:
        if not self._stopping and index not in self.workers:
            self._spawn(index)
            # A worker that stays up a minute earns a fresh back-off.
            reactor.callLater(60, self._delay.pop, index, None)

    @defer.inlineCallbacks
    def stopService(self) -> Generator[defer.Deferred[Any], Any, None]:
        self._stopping = True
        if self.dispatcher is not None:
            self.dispatcher.stop()
        workers = list(self.workers.values())
        for w in workers:
            _signal(w, signal.SIGTERM)
        killers = [reactor.callLater(STOP_TIMEOUT, _signal, w, signal.SIGKILL) for w in workers]
        yield defer.DeferredList([w.ended for w in workers])
        for k in killers:
            if k.active():
                k.cancel()
        if self.sock is not None:
            self.sock.close()
        super().stopService()  # a plain Service: returns None


def _signal(worker: _Worker, sig: int) -> None:
    assert worker.transport is not None  # spawnProcess connected it
    try:
        worker.transport.signalProcess(sig)
    except ProcessExitedAlready:
        pass
