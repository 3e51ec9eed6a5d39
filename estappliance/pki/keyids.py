"""How a key is named when certificates and messages are matched: the DER
SubjectPublicKeyInfo, and the subject key identifier."""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes


def spki_der(public_key: PublicKeyTypes) -> bytes:
    """DER SubjectPublicKeyInfo of a cryptography public key."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_identifier(cert: x509.Certificate) -> bytes:
    """The certificate's subjectKeyIdentifier, or (none there) the RFC 5280
    4.2.1.2 method 1 identifier of its key."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


__all__ = ["key_identifier", "spki_der"]
