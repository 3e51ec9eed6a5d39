"""An HTTP channel whose responses leave in one write.

Twisted writes a response's headers and its body separately: under TLS that
is two records, and a client with delayed ACKs may wait on the second. Here
the headers wait for the body (or for the end of the response) and go out
together, in one TLS record and one send().
"""
from __future__ import annotations

from twisted.web import http
from twisted.web.http_headers import Headers

_REASON = b"malformed HTTP request\n"
BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
               b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_REASON)) + _REASON


class SingleWriteChannel(http.HTTPChannel):
    _held = b""

    def _respondToBadRequestAndDisconnect(self) -> None:
        """Twisted's answer to a request it cannot parse (bad request line,
        header or length): here with a one-line reason, like every error."""
        assert self.transport is not None  # a request arrived: connected
        self.transport.write(BAD_REQUEST)
        self.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request or header line over MAX_LENGTH. LineReceiver would drop
        the transport directly, which under TLS waits for the producer
        HTTPChannel registered: the client heard nothing until the idle timeout."""
        self._respondToBadRequestAndDisconnect()

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Headers) -> None:
        lines = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                lines.extend((name, b": ", value, b"\r\n"))
        lines.append(b"\r\n")
        self._held = b"".join(lines)

    def _take_held(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def write(self, data: bytes) -> None:
        super().write(self._take_held() + data)

    def writeSequence(self, iovec: list[bytes]) -> None:
        held = self._take_held()
        super().writeSequence([held, *iovec] if held else iovec)

    def requestDone(self, request: http.Request) -> None:
        held = self._take_held()
        if held:  # a response without a body (204, HEAD)
            super().write(held)
        super().requestDone(request)
