"""Reading the messages devices send back (RFC 4108 receipts and errors, RFC
5934 TAMP, RFC 7191 receipts and errors): a ContentInfo holding either a
SignedData around the message or, where the RFC allows it, the bare message.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Collection, Iterator

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from . import signeddata

# What asn1crypto and cryptography raise on damaged input (asn1crypto's
# AttributeError on odd types; cryptography's refusals of a carried certificate).
PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, UnsupportedAlgorithm,
                x509.InvalidVersion)


@dataclass(frozen=True)
class Opened:
    content_type: str  # asn1crypto name or dotted OID of the message
    content: bytes  # its DER; empty for a bare message of a type not in ``bare_types``
    signer: x509.Certificate | None  # None: the message came unsigned


def open_content_info(der: bytes, candidates: list[x509.Certificate] | None, bare_types: Collection[str]) -> Opened:
    """The message in a ContentInfo: a SignedData's content, its signature
    checked (signer among ``candidates`` or the carried certificates), or an
    unsigned one of ``bare_types``. Raises what ``signeddata.verify`` and
    asn1crypto raise; read it inside ``reading``."""
    info = cms.ContentInfo.load(der, strict=True)
    kind = info["content_type"].native
    if kind == "signed_data":
        verified = signeddata.verify(der, candidates)
        return Opened(verified.content_type, verified.content, verified.signer)
    return Opened(kind, info["content"].untag().dump() if kind in bare_types else b"", None)


@contextmanager
def reading(error: type[ValueError], what: str) -> Iterator[None]:
    """Turn a failed signature check or damaged input into ``error`` (a
    client-safe one-line reason); an ``error`` raised inside passes as is."""
    try:
        yield
    except error:
        raise
    except signeddata.BadSignedData as e:
        raise error(f"signature check failed: {e}") from None
    except PARSE_ERRORS as e:
        raise error(f"unreadable {what}: {e}") from None


__all__ = ["Opened", "PARSE_ERRORS", "open_content_info", "reading"]
