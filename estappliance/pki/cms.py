"""CMS: the certs-only degenerate SignedData (RFC 7030 4.1.3, RFC 5272 3.2)."""
from __future__ import annotations

from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from .errors import PkiError


class NotCertsOnly(PkiError):
    """The bytes are not a SignedData holding certificates."""


def certs_only(certs: Sequence[x509.Certificate]) -> bytes:
    """DER ContentInfo(SignedData) with the certificates, no content, no signers."""
    return pkcs7.serialize_certificates(list(certs), Encoding.DER)


def read_certs_only(der: bytes) -> list[x509.Certificate]:
    try:
        return pkcs7.load_der_pkcs7_certificates(der)
    except ValueError as e:
        raise NotCertsOnly(str(e)) from None
