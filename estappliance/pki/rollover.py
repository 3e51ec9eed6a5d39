"""Root CA key update certificates (RFC 4210 4.4) and telling which CA key
issued a certificate. Pure builders: the caller signs.

With one CA name across generations (as RFC 4210 4.4 has it), a path is
told apart by key identifiers: each certificate's authorityKeyIdentifier
names the key that signed it.
"""
from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from . import certs


def key_identifier(cert: x509.Certificate) -> bytes:
    """The subjectKeyIdentifier of a CA certificate (or the RFC 5280 method-1 value)."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def authority_key_identifier(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def link(*, subject: x509.Name, public_key: CertificatePublicKeyTypes, issuer: x509.Certificate, serial: int,
         not_before: datetime.datetime, not_after: datetime.datetime) -> x509.CertificateBuilder:
    """A CA certificate for ``public_key`` issued by the CA of ``issuer``:
    NewWithOld (new key, old signer) or OldWithNew (old key, new signer)."""
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject).public_key(public_key)
            .serial_number(serial).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(certs.key_usage(("digitalSignature", "keyCertSign", "cRLSign")), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                x509.SubjectKeyIdentifier(key_identifier(issuer))), critical=False))


def root_update_validity(old: x509.Certificate, new: x509.Certificate
                         ) -> tuple[tuple[datetime.datetime, datetime.datetime], tuple[datetime.datetime, datetime.datetime]]:
    """RFC 4210 4.4: NewWithOld from NewWithNew's notBefore to OldWithOld's
    notAfter; OldWithNew with OldWithOld's own validity. Returns
    ((nwo_from, nwo_to), (own_from, own_to))."""
    return ((new.not_valid_before_utc, old.not_valid_after_utc),
            (old.not_valid_before_utc, old.not_valid_after_utc))
