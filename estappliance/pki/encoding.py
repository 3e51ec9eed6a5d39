"""EST body encoding (RFC 7030 as clarified by RFC 8951).

Every EST payload is base64 of DER. We emit base64 in 64-character lines
(what ``openssl base64 -d`` and every client we know read). On input we ignore
any Content-Transfer-Encoding header and accept base64 with or without
whitespace, and also raw DER, whatever the client claims to have sent.
"""
from __future__ import annotations

import base64
import binascii
import re

from asn1crypto import core

from .errors import PkiError

_WHITESPACE = re.compile(rb"[\s]+")


class NotBase64OrDer(PkiError):
    """The body is neither base64 nor a DER SEQUENCE."""


def encode_body(der: bytes) -> bytes:
    text = base64.b64encode(der)
    return b"".join(text[i:i + 64] + b"\n" for i in range(0, len(text), 64))


def decode_body(body: bytes) -> bytes:
    """DER from an EST request body: base64 (any line breaks) or raw DER."""
    if _looks_like_der(body):
        return body
    compact = _WHITESPACE.sub(b"", body)
    if not compact:
        raise NotBase64OrDer("empty body")
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise NotBase64OrDer("body is not base64") from None
    if not der:
        raise NotBase64OrDer("empty body")
    return der


def _looks_like_der(body: bytes) -> bool:
    """A DER SEQUENCE whose length header spans exactly the body."""
    if len(body) < 2 or body[0] != 0x30:
        return False
    first = body[1]
    if first < 0x80:
        return 2 + first == len(body)
    n = first & 0x7F
    if n == 0 or n > 4 or len(body) < 2 + n:
        return False
    return 2 + n + int.from_bytes(body[2:2 + n], "big") == len(body)


def der(value: core.Asn1Value) -> bytes:
    """The DER of an asn1crypto value (asn1crypto is untyped: this says what dump() gives)."""
    out: bytes = value.dump()
    return out
