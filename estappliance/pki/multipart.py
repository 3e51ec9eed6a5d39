"""multipart/mixed bodies of base64 parts, as /serverkeygen answers
(RFC 7030 4.4.2, Appendix A.4; RFC 2046 5.1): build them, and read them back
with the standard library's MIME parser (any boundary, preamble, epilogue,
CRLF or bare LF).
"""
from __future__ import annotations

import email.parser
import email.policy
import os
from dataclasses import dataclass
from email.message import Message
from typing import cast

from .errors import PkiError
from .encoding import NotBase64OrDer, decode_body, encode_body


class BadMultipart(PkiError):
    """Not a multipart/mixed body we can read."""


@dataclass(frozen=True)
class Part:
    content_type: str  # the whole header value, parameters included
    der: bytes  # the decoded body

    @property
    def media_type(self) -> str:
        return self.content_type.split(";", 1)[0].strip().lower()


def build(parts: list[Part], boundary: str | None = None) -> tuple[bytes, bytes]:
    """(Content-Type header value, body): each part base64 with its
    Content-Transfer-Encoding header, CRLF line ends between the MIME lines."""
    boundary = boundary or "estServerBoundary" + os.urandom(12).hex()
    chunks = []
    for part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
                      "Content-Transfer-Encoding: base64\r\n\r\n".encode("ascii"))
        chunks.append(encode_body(part.der).replace(b"\n", b"\r\n"))
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return f"multipart/mixed; boundary={boundary}".encode("ascii"), b"".join(chunks)


def parse(content_type: str, body: bytes) -> list[Part]:
    """The parts of a multipart/mixed body, each decoded to DER (base64 or raw)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    # compat32 keeps each part's header values exactly as sent.
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
    if message.get_content_type() != "multipart/mixed" or not message.is_multipart():
        raise BadMultipart(f"not multipart/mixed: {content_type!r}")
    parts = []
    for sub in cast(list[Message], message.get_payload()):  # a multipart's payload: its parts
        payload = sub.get_payload(decode=False)
        if not isinstance(payload, (str, bytes)):
            raise BadMultipart(f"part {sub.get('content-type')!r} is itself multipart")
        raw = payload.encode("latin-1") if isinstance(payload, str) else payload
        try:
            der = decode_body(raw)
        except NotBase64OrDer as e:
            raise BadMultipart(f"part {sub.get('content-type')!r}: {e}") from None
        parts.append(Part(" ".join(str(sub.get("content-type", "")).split()), der))
    if not parts:
        raise BadMultipart("no parts")
    return parts


__all__ = ["BadMultipart", "Part", "build", "parse"]
