"""A twisted.web Request that refuses to buffer an oversized body."""
from __future__ import annotations

import io

from twisted.web import server


class EstRequest(server.Request):
    max_body = 64 * 1024  # set per site by the service
    # EST bodies are never HTML forms: skip Twisted's form parsing, whose
    # Content-Type parse (through the email package) cost 0.1 ms per POST.
    _parsePOSTFormSubmission = False

    body_too_large = False
    _received = 0

    def gotLength(self, length):
        super().gotLength(length)
        if length is not None and length > self.max_body:
            self.body_too_large = True

    def handleContentChunk(self, data):
        if self.body_too_large:
            return
        self._received += len(data)
        if self._received > self.max_body:
            # Keep reading off the wire but drop what we read.
            self.body_too_large = True
            self.content = io.BytesIO()
            return
        super().handleContentChunk(data)
