"""Accepted connections handed from the master to the worker holding fewest.

Workers sharing one listening socket take connections in whatever order the
kernel wakes them: with keep-alive clients one worker ended up holding 38
connections and the other 26, and the first worker's clients waited 45%
longer. Here the master alone accepts, and passes each new connection
(SCM_RIGHTS over a Unix socket pair, one per worker) to the ready worker that
holds the fewest. Each worker reports what it received and how many it
holds whenever either changes, so the count follows real use rather than a
guess. The master keeps its copy of a connection until the worker says it
has it: if the worker dies first, the connection goes to another worker
instead of being lost. The socket pair doubles as the worker's lifeline:
when the master is gone, the worker reads EOF.
"""
from __future__ import annotations

import json
import os
import socket
from collections import deque
from collections.abc import Callable

from typing import cast

from twisted.internet import reactor
from twisted.internet.interfaces import (IDelayedCall, IOpenSSLServerConnectionCreator, IProtocolFactory,
                                         IReactorSocket, IReadDescriptor)
from twisted.python.failure import Failure
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

log = Logger()
# The same reactor, as the interface adoptStreamConnection belongs to.
_sockets = cast(IReactorSocket, reactor)

ACCEPTS_PER_WAKEUP = 16
ACCEPT_PAUSE = 0.1  # seconds without accepting after accept() failed (e.g. out of file descriptors)
MAX_FDS_PER_READ = 256  # one byte is sent with each descriptor


@implementer(IReadDescriptor)
class _Readable:
    """The least a socket needs to be watched by the reactor for reading."""

    def __init__(self, sock: socket.socket, on_read: Callable[[], None], name: str) -> None:
        self.sock = sock
        self.on_read = on_read
        self.name = name

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        return self.on_read()

    def connectionLost(self, reason: Failure) -> None:
        pass

    def logPrefix(self) -> str:
        return self.name


class WorkerLink:
    """The master's end of one worker's socket pair."""

    def __init__(self, sock: socket.socket, index: int, on_change: Callable[[], None]) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.index = index
        self.on_change = on_change
        self.ready = False  # the worker has said it serves
        self.connections = 0
        self.readiness: dict | None = None  # the worker's last readiness report
        self.unconfirmed: deque[socket.socket] = deque()  # sent, not yet said received
        self._sent = 0
        self._partial = b""
        self._reader = _Readable(sock, self._read, f"worker-link-{index}")
        reactor.addReader(self._reader)

    def hand_over(self, conn: socket.socket) -> bool:
        """Send the connection; on success the link owns ``conn`` until the worker has it."""
        try:
            socket.send_fds(self.sock, [b"c"], [conn.fileno()])
        except OSError:  # full (a stuck worker) or gone: another worker takes it
            return False
        self.unconfirmed.append(conn)
        self._sent += 1
        self.connections += 1
        return True

    def _read(self) -> None:
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return None
        except OSError:
            data = b""
        if not data:
            self.close()
            return None
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line.startswith(b"{"):  # the worker's readiness probe (MasterLink.report_readiness)
                self.readiness = json.loads(line)
        lines = [line for line in lines if not line.startswith(b"{")]
        if lines:
            # "<received in all> <held now>"; the latest line is the truth.
            received, held = (int(n) for n in lines[-1].split())
            for _ in range(len(self.unconfirmed) - (self._sent - received)):
                self.unconfirmed.popleft().close()
            self.connections = held + len(self.unconfirmed)
            if not self.ready:
                log.info("worker {index} ready", index=self.index)
                self.ready = True
                self.on_change()
        return None

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            reactor.removeReader(self._reader)
            self.sock.close()
        if self.ready:
            self.ready = False
            self.on_change()


class Dispatcher:
    """Master side: accepts on the listening socket while some worker is
    ready; connections arriving meanwhile wait in the kernel's backlog."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.links: dict[int, WorkerLink] = {}
        self.waiting: deque[socket.socket] = deque()  # accepted, for the next ready worker
        self._reader = _Readable(sock, self._accept, "est-dispatcher")
        self._reading = False
        self._stopped = False
        self._paused: IDelayedCall | None = None  # while accepting is paused

    def link(self, index: int, sock: socket.socket) -> WorkerLink:
        self.unlink(index)
        link = self.links[index] = WorkerLink(sock, index, self._update)
        return link

    def unlink(self, index: int) -> None:
        link = self.links.pop(index, None)
        if link is not None:
            link.close()
            # What the worker never received goes to another worker.
            self.waiting.extend(link.unconfirmed)
            link.unconfirmed.clear()
        self._update()

    def stop(self) -> None:
        self._stopped = True
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        self._update()
        while self.waiting:
            self.waiting.popleft().close()

    def _ready(self) -> list[WorkerLink]:
        return [link for link in self.links.values() if link.ready]

    def _update(self) -> None:
        want = bool(self._ready()) and not self._stopped and self._paused is None
        if want and not self._reading:
            reactor.addReader(self._reader)
        elif not want and self._reading:
            reactor.removeReader(self._reader)
        self._reading = want
        while want and self.waiting:
            self._hand_over(self.waiting.popleft())

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return None
            except OSError as e:
                # Out of file descriptors or memory: the connection stays queued
                # and the socket readable, so pause rather than spin on it.
                log.warn("accept failed: {error}; pausing {pause} s", error=e, pause=ACCEPT_PAUSE)
                self._paused = reactor.callLater(ACCEPT_PAUSE, self._resume)
                self._update()
                return None
            self._hand_over(conn)
        return None

    def _resume(self) -> None:
        self._paused = None
        self._update()

    def _hand_over(self, conn: socket.socket) -> None:
        for link in sorted(self._ready(), key=lambda link: link.connections):
            if link.hand_over(conn):
                return
        log.error("no worker could take a connection; closed it")
        conn.close()


class _CountingTLSFactory(TLSMemoryBIOFactory):
    """Tells the master when a connection of this worker closes."""

    closed: Callable[[], None] = staticmethod(lambda: None)

    def unregisterProtocol(self, p: object) -> None:
        super().unregisterProtocol(p)
        self.closed()


class MasterLink:
    """Worker side: adopts each connection the master sends, reports counts,
    and calls ``master_gone`` when the master's end closes."""

    def __init__(self, fd: int, family: int, factory: _CountingTLSFactory, master_gone: Callable[[], None]) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(False)
        self.family = socket.AddressFamily(family)
        self.factory = factory
        self.master_gone = master_gone
        self.received = 0
        self._reader = _Readable(self.sock, self._read, "master-link")

    def start(self) -> None:
        self.factory.closed = self.report
        reactor.addReader(self._reader)
        self.report()  # the first report says "ready"

    def report(self) -> None:
        try:
            self.sock.send(b"%d %d\n" % (self.received, len(self.factory.protocols)))
        except OSError:  # the master is busy or gone; the next report will do
            pass

    def report_readiness(self, readiness: dict[str, object]) -> None:
        """One JSON line: the master's /readyz sums up its workers' reports."""
        try:
            self.sock.send(json.dumps(readiness, separators=(",", ":")).encode() + b"\n")
        except OSError:
            pass

    def _read(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, MAX_FDS_PER_READ, MAX_FDS_PER_READ)
            except BlockingIOError:
                return None
            except OSError:
                data, fds = b"", []
            self.received += len(fds)
            for fd in fds:
                try:
                    # Typed as taking a ServerFactory; Twisted documents any protocol factory.
                    _sockets.adoptStreamConnection(fd, self.family, self.factory)  # type: ignore[arg-type]
                except OSError as e:  # the client went away before we got it
                    log.debug("could not adopt a connection: {error}", error=e)
                finally:
                    os.close(fd)
            if fds:
                self.report()
            if not data and not fds:
                reactor.removeReader(self._reader)
                self.master_gone()
                return None


def counting_tls_factory(context_factory: IOpenSSLServerConnectionCreator, wrapped: IProtocolFactory
                         ) -> _CountingTLSFactory:
    return _CountingTLSFactory(context_factory, False, wrapped)
