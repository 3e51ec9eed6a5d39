"""Does a CMS signer lead to a trust anchor we accept?

RFC 8295 (3.2, 5.1.2, 6.1.2, 7.1.2 ...) has every receiver reject a signed
package whose signer does not validate to an authorized trust anchor. The
signer may be the anchor itself (a TA signing directly, RFC 4108 / RFC 5934)
or certified by it through the certificates the SignedData carries.
Pure: certificates in, the anchor out.
"""
from __future__ import annotations

import datetime
from collections.abc import Sequence

from asn1crypto import cms, core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from .errors import PkiError
from .keyids import spki_der

MAX_DEPTH = 8


class Untrusted(PkiError):
    """The signer does not lead to any of the given trust anchors."""


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _current(cert: x509.Certificate, at: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def chain_to_anchor(signer: x509.Certificate, anchors: list[x509.Certificate],
                    intermediates: Sequence[x509.Certificate] = (), *,
                    at: datetime.datetime | None = None) -> x509.Certificate:
    """The anchor ``signer`` leads to: itself an anchor (same key), or issued
    (through CA certificates in ``intermediates``) by one. Every certificate
    on the way must be valid at ``at`` (default now). Raises Untrusted."""
    try:
        return _walk(signer, anchors, intermediates, at or datetime.datetime.now(datetime.timezone.utc))
    except UnsupportedAlgorithm as e:
        raise Untrusted(f"unsupported key in the certificate path: {e}") from None


def _walk(signer: x509.Certificate, anchors: list[x509.Certificate], intermediates: Sequence[x509.Certificate],
          at: datetime.datetime) -> x509.Certificate:
    by_key = {spki_der(a.public_key()): a for a in anchors}
    cert = signer
    for _ in range(MAX_DEPTH):
        anchor = by_key.get(spki_der(cert.public_key()))
        if anchor is not None:
            return anchor
        if not _current(cert, at):
            raise Untrusted(f"certificate {cert.subject.rfc4514_string()} is outside its validity period")
        issuer = _issuer_of(cert, [*anchors, *(c for c in intermediates if _is_ca(c))])
        if issuer is None:
            raise Untrusted(f"no trusted issuer for {cert.subject.rfc4514_string()}")
        cert = issuer
    raise Untrusted("certificate path too long")


def carried_certificates(der: bytes) -> list[x509.Certificate]:
    """The certificates a ContentInfo(SignedData) carries (none if unreadable)."""
    try:
        sd = cms.ContentInfo.load(der)["content"]
        if isinstance(sd["certificates"], core.Void):
            return []
        return [x509.load_der_x509_certificate(c.chosen.dump()) for c in sd["certificates"]
                if c.name == "certificate"]
    except (ValueError, TypeError, KeyError, AttributeError, x509.InvalidVersion):
        return []


def _issuer_of(cert: x509.Certificate, candidates: list[x509.Certificate]) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != cert.issuer or candidate == cert:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            continue
        return candidate
    return None


__all__ = ["Untrusted", "carried_certificates", "chain_to_anchor"]
