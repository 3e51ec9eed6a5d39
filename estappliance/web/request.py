"""A twisted.web Request that refuses to buffer an oversized body."""
from __future__ import annotations

import io

from twisted.web import server

# Written as is, before any response of this request has begun.
_REASON = b"request body too large\n"
TOO_LARGE = (b"HTTP/1.1 413 Content Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
             b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_REASON)) + _REASON
DRAIN_LIMIT = 1 << 20  # what is still read (and dropped) after a 413 before hanging up


class EstRequest(server.Request):
    max_body = 64 * 1024  # set per site by the service

    body_too_large = False
    _received = 0
    _drained = 0

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        if length is not None and length > self.max_body:
            self.requestHeaders.removeHeader(b"expect")  # a final answer, not 100 Continue
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            self._drained += len(data)
            if self._drained > DRAIN_LIMIT:
                self.channel.loseConnection()
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        """413 at once, not after a body the client may never finish sending.
        The connection closes when the body is in (or DRAIN_LIMIT later):
        closing with unread data would reset it, and the reset could destroy
        the answer before the client reads it."""
        self.body_too_large = True
        self.content = io.BytesIO()
        assert self.channel.transport is not None  # a request is arriving: connected
        self.channel.transport.write(TOO_LARGE)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.body_too_large:  # answered already
            self.channel.loseConnection()
            return
        super().requestReceived(command, path, version)
