"""The load generator's clients: many TLS clients driven by one thread.

A thread per client made the load generator's own scheduling part of the
figures: when a burst of answers arrived, dozens of threads woke at once,
took turns on one GIL and preempted the server on the machine's two cores.
Here one thread per load process drives all its clients with non-blocking
sockets (``selectors``), like wrk does: the generator costs less CPU and each
latency is the time from the first byte sent (or, with a new connection per
enrollment, from the connect) to the last byte of the answer.
"""
from __future__ import annotations

import errno
import itertools
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

HOST = "127.0.0.1"  # the only address the load generator ever connects to
RETRY_AFTER_ERROR = 0.05  # seconds: a dead server must not turn into a busy loop


@dataclass
class ClientResult:
    ok: int = 0
    errors: int = 0
    first_error: str | None = None
    latencies: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)  # time.monotonic() at each success

    def failed(self, text: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = text


class ProtocolError(Exception):
    """The server's answer was not the HTTP/1.1 we expect."""


def parse_answer(data: bytes | bytearray) -> tuple[int, bytes, bool] | None:
    """(status, body, keep_alive) once ``data`` holds a whole answer (by
    Content-Length), None while it is still incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > 65536:
            raise ProtocolError("answer head over 64 KiB")
        return None
    lines = bytes(data[:end]).split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" not in headers:
        raise ProtocolError("answer without Content-Length")
    length = int(headers[b"content-length"])
    if len(data) < end + 4 + length:
        return None
    body = bytes(data[end + 4:end + 4 + length])
    return int(parts[1]), body, headers.get(b"connection", b"").lower() != b"close"


class _Client:
    """One client: connect, TLS handshake, then requests one after another."""

    def __init__(self, run: _Run, context: ssl.SSLContext, result: ClientResult,
                 prepare: Callable[[bytes], bytes] | None = None):
        self.run = run
        self.context = context
        self.result = result
        self.prepare = prepare  # e.g. puts this client's next Digest Authorization in
        self.sock: socket.socket | None = None
        self.step: Callable[[], None] = self._idle
        self.mask = 0
        self.out = b""
        self.inbuf = bytearray()
        self.closed = False  # the server ended the stream
        self.started = 0.0  # when the current enrollment began
        self.retry_at = 0.0
        self.busy = False  # an enrollment (or the pre-connect) is in flight

    # -- the selector ------------------------------------------------------

    def _want(self, mask: int) -> None:
        if mask == self.mask:
            return
        if self.mask:
            self.run.selector.modify(self._socket(), mask, self)
        else:
            self.run.selector.register(self._socket(), mask, self)
        self.mask = mask

    def _forget(self) -> None:
        if self.mask:
            self.run.selector.unregister(self._socket())
            self.mask = 0

    def _socket(self) -> socket.socket:
        """The connection's socket (TCP, then TLS); only called while there is one."""
        assert self.sock is not None
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self._forget()
            self.sock.close()
            self.sock = None

    # -- one enrollment ----------------------------------------------------

    def start(self, now: float) -> None:
        """Begin the next enrollment (connecting first when there is no connection)."""
        self.busy = True
        self.out = self.run.next_request()
        if self.prepare is not None:
            self.out = self.prepare(self.out)
        self.inbuf.clear()
        self.closed = False
        self.started = now
        if self.sock is None:
            self._connect()
        else:
            self.step = self._send
            self._send()

    def preconnect(self) -> None:
        """Connect and finish the TLS handshake, sending nothing yet."""
        self.busy = True
        self.out = b""
        self.started = time.monotonic()
        self._connect()

    def _connect(self) -> None:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setblocking(False)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = raw
        code = raw.connect_ex((HOST, self.run.port))
        if code not in (0, errno.EINPROGRESS):
            self._fail(f"ConnectionError: {errno.errorcode.get(code, code)}")
            return
        self.step = self._connected
        self._want(selectors.EVENT_WRITE)

    def _connected(self) -> None:
        code = self._socket().getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._fail(f"ConnectionError: {errno.errorcode.get(code, code)}")
            return
        self._forget()  # the TLS socket takes over the descriptor
        self.sock = self.context.wrap_socket(self._socket(), server_hostname=HOST, do_handshake_on_connect=False)
        self.step = self._handshake
        self._handshake()

    def _tls(self, action: Callable[[], object]) -> bool:
        """One non-blocking step; False if it must wait (the selector is told
        for what) or failed (the client is reset and retries later)."""
        try:
            action()
        except ssl.SSLWantReadError:
            self._want(selectors.EVENT_READ)
        except (ssl.SSLWantWriteError, BlockingIOError):
            self._want(selectors.EVENT_WRITE)
        except (OSError, ValueError) as e:
            self._fail(f"{type(e).__name__}: {e}")
        else:
            return True
        return False

    def _handshake(self) -> None:
        if not self._tls(cast(ssl.SSLSocket, self.sock).do_handshake):
            return
        if self.out:
            self.step = self._send
            self._send()
        else:  # pre-connected: wait for the start
            self.busy = False
            self.step = self._idle
            self._want(selectors.EVENT_READ)

    def _send_all(self) -> None:
        while self.out:
            self.out = self.out[self._socket().send(self.out):]

    def _send(self) -> None:
        if self._tls(self._send_all):
            self.step = self._receive
            self._want(selectors.EVENT_READ)

    def _read_available(self) -> None:
        """Read what has arrived; an end of stream is noted, not an error:
        it follows a whole answer sent with Connection: close."""
        try:
            while data := self._socket().recv(65536):
                self.inbuf += data
            self.closed = True
        except (ssl.SSLWantReadError, BlockingIOError):
            pass

    def _receive(self) -> None:
        if not self._tls(self._read_available):
            return
        try:
            answer = parse_answer(self.inbuf)
            if answer is None and self.closed:
                raise ProtocolError("the server closed the connection")
        except (ProtocolError, ValueError) as e:
            self._fail(f"{type(e).__name__}: {e}")
            return
        if answer is not None:
            self._done(answer[0], answer[1], answer[2] and not self.closed)

    def _idle(self) -> None:
        """Readable while no request is out: only a close (or TLS 1.3 tickets) can come."""
        try:
            while True:
                if not self._socket().recv(65536):
                    self.close()
                    return
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return
        except OSError:
            self.close()

    def _done(self, status: int, body: bytes, keep_alive: bool) -> None:
        now = time.monotonic()
        self.run.answered(self, status, body, now - self.started, now)
        self.busy = False
        self.step = self._idle
        if self.run.new_connection or not keep_alive:
            self.close()
        elif self.sock is not None:
            self._want(selectors.EVENT_READ)
        self.run.next_for(self, now)

    def _fail(self, text: str) -> None:
        self.result.failed(text)
        self.close()
        self.busy = False
        self.step = self._idle
        self.retry_at = time.monotonic() + RETRY_AFTER_ERROR

    def timed_out(self, now: float) -> bool:
        return self.busy and now - self.started > self.run.timeout


class _Run:
    def __init__(self, port: int, requests: list[bytes], turn: itertools.count[int], new_connection: bool,
                 timeout: float, accept: Callable[[int, bytes], bool]):
        self.selector = selectors.DefaultSelector()
        self.port = port
        self.requests = requests
        self.turn = turn
        self.new_connection = new_connection
        self.timeout = timeout
        self.accept = accept
        self.deadline = float("inf")

    def next_request(self) -> bytes:
        return self.requests[next(self.turn) % len(self.requests)]

    def answered(self, client: _Client, status: int, body: bytes, latency: float, now: float) -> None:
        result = client.result
        if self.accept(status, body):
            result.ok += 1
            result.latencies.append(latency)
            result.finished.append(now)
        else:
            result.failed(f"HTTP {status}: {body[:200].decode('utf-8', 'replace').strip()}")

    def next_for(self, client: _Client, now: float) -> None:
        if now < self.deadline:
            client.start(now)

    def pump(self, clients: list[_Client], until: Callable[[], bool], limit: float) -> None:
        """Serve socket events until ``until()`` or the monotonic time ``limit``."""
        while not until() and time.monotonic() < limit:
            for key, _ in self.selector.select(timeout=0.05):
                key.data.step()
            now = time.monotonic()
            for c in clients:
                if c.timed_out(now):
                    c._fail(f"TimeoutError: no answer in {self.timeout:.0f} s")
                elif not c.busy and c.retry_at and now >= c.retry_at:
                    c.retry_at = 0.0
                    self.next_for(c, now)


def preconnect(run: _Run, clients: list[_Client], timeout: float) -> None:
    """Open every client's connection (TCP and TLS) before the clock starts."""
    for c in clients:
        c.preconnect()
    run.pump(clients, lambda: not any(c.busy for c in clients), time.monotonic() + timeout)
    for c in clients:
        c.retry_at = 0.0  # a failed pre-connect is retried by the load itself


def run_clients(contexts: list[ssl.SSLContext], results: list[ClientResult], requests: list[bytes], port: int,
                new_connection: bool, timeout: float, accept: Callable[[int, bytes], bool],
                ready: Callable[[], None], seconds: float,
                prepare: list[Callable[[bytes], bytes]] | None = None) -> tuple[float, float]:
    """Drive one client per context: keep-alive clients connect first, then
    ``ready()`` is called (it returns when the load may start); each client
    enrolls again and again for ``seconds``. ``prepare``: per client, a
    function each request passes through just before it is sent.
    Returns (started, finished), monotonic."""
    run = _Run(port, requests, itertools.count(), new_connection, timeout, accept)
    preparers: list[Callable[[bytes], bytes] | None] = list(prepare) if prepare else [None] * len(results)
    clients = [_Client(run, ctx, r, prep) for ctx, r, prep in zip(contexts, results, preparers)]
    if not new_connection:
        preconnect(run, clients, timeout)
    ready()
    started = time.monotonic()
    run.deadline = started + seconds
    for c in clients:
        c.start(started)
    run.pump(clients, lambda: not any(c.busy or c.retry_at for c in clients), run.deadline + timeout)
    for c in clients:
        c.close()
    run.selector.close()
    return started, time.monotonic()
