"""Media types exactly as EST clients expect them (RFC 7030, RFC 8951)."""
from __future__ import annotations

PKCS7_MIME = b"application/pkcs7-mime"
# One space after the semicolon: libest compares the first 45 bytes.
CERTS_ONLY = b"application/pkcs7-mime; smime-type=certs-only"
CSRATTRS = b"application/csrattrs"
PKCS10 = "application/pkcs10"
TEXT = b"text/plain; charset=utf-8"


def essence(content_type: bytes | str | None) -> str | None:
    """The type/subtype of a Content-Type header, lower-cased, parameters dropped."""
    if content_type is None:
        return None
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    return content_type.split(";", 1)[0].strip().lower() or None
