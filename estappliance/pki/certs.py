"""X.509 certificate builders for the CA, its TLS server and its clients.

Builders only: signing happens elsewhere (with a token key) so this module
stays pure.
"""
from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, mldsa, mlkem, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes, CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

ID_KP_CMC_RA = ObjectIdentifier("1.3.6.1.5.5.7.3.28")

KEY_USAGES = (
    "digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment", "keyAgreement",
    "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly",
)
EXTENDED_KEY_USAGES = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
    "cmcRA": ID_KP_CMC_RA,
}
# Certificates are back-dated this much to tolerate client clock skew.
BACKDATE = datetime.timedelta(minutes=5)


def parse_name(text: str) -> x509.Name:
    """``CN=x,O=y`` (RFC 4514) to a Name; raises ValueError on bad syntax."""
    name = x509.Name.from_rfc4514_string(text)
    if not len(name):
        raise ValueError("empty name")
    return name


def key_usage(names: Iterable[str]) -> x509.KeyUsage:
    names = tuple(names)
    flags = {n: n in names for n in KEY_USAGES}
    unknown = set(names) - set(KEY_USAGES)
    if unknown:
        raise ValueError(f"unknown key usage: {', '.join(sorted(unknown))}")
    return x509.KeyUsage(
        digital_signature=flags["digitalSignature"], content_commitment=flags["contentCommitment"],
        key_encipherment=flags["keyEncipherment"], data_encipherment=flags["dataEncipherment"],
        key_agreement=flags["keyAgreement"], key_cert_sign=flags["keyCertSign"], crl_sign=flags["cRLSign"],
        encipher_only=flags["encipherOnly"], decipher_only=flags["decipherOnly"])


def usable_key_usages(public_key: CertificatePublicKeyTypes, names: Iterable[str]) -> tuple[str, ...]:
    """The profile's key usages that fit the key: no key or data encipherment
    for EC keys (RFC 8813), no key agreement for RSA keys."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        banned = {"keyEncipherment", "dataEncipherment"}
    elif isinstance(public_key, rsa.RSAPublicKey):
        banned = {"keyAgreement", "encipherOnly", "decipherOnly"}
    else:  # Ed25519/Ed448 sign only
        banned = {"keyEncipherment", "dataEncipherment", "keyAgreement", "encipherOnly", "decipherOnly"}
    return tuple(n for n in names if n not in banned)


def extended_key_usage(names: Iterable[str]) -> x509.ExtendedKeyUsage:
    names = tuple(names)
    unknown = set(names) - set(EXTENDED_KEY_USAGES)
    if unknown:
        raise ValueError(f"unknown extended key usage: {', '.join(sorted(unknown))}")
    return x509.ExtendedKeyUsage([EXTENDED_KEY_USAGES[n] for n in names])


def _validity(builder: x509.CertificateBuilder, now: datetime.datetime, days: int,
              not_after_cap: datetime.datetime | None = None) -> x509.CertificateBuilder:
    not_after = now + datetime.timedelta(days=days)
    if not_after_cap is not None and not_after > not_after_cap:
        not_after = not_after_cap  # never outlive the issuer
    return builder.not_valid_before(now - BACKDATE).not_valid_after(not_after)


def root_ca(subject: x509.Name, public_key: CertificatePublicKeyTypes, serial: int, now: datetime.datetime,
            days: int) -> x509.CertificateBuilder:
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(public_key)
         .serial_number(serial)
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(key_usage(("digitalSignature", "keyCertSign", "cRLSign")), critical=True)
         .add_extension(ski, critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False))
    return _validity(b, now, days)


def end_entity(*, subject: x509.Name, public_key: CertificatePublicKeyTypes, issuer: x509.Certificate, serial: int,
               now: datetime.datetime, days: int, key_usages: Iterable[str], extended_key_usages: Iterable[str],
               san: x509.SubjectAlternativeName | None) -> x509.CertificateBuilder:
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject).public_key(public_key)
         .serial_number(serial)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
         .add_extension(_aki(issuer), critical=False))
    key_usages = usable_key_usages(public_key, key_usages)
    if key_usages:
        b = b.add_extension(key_usage(key_usages), critical=True)
    if extended_key_usages:
        b = b.add_extension(extended_key_usage(extended_key_usages), critical=False)
    if san is not None and len(san):
        # RFC 5280 4.2.1.6: critical when the subject is empty.
        b = b.add_extension(san, critical=not len(subject))
    return _validity(b, now, days, issuer.not_valid_after_utc)


def server_san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


# Every public key type but DH (whose module warns on use: it is deprecated).
_CERTIFIABLE = (dsa.DSAPublicKey, rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey,
                ed448.Ed448PublicKey, mldsa.MLDSA44PublicKey, mldsa.MLDSA65PublicKey, mldsa.MLDSA87PublicKey,
                mlkem.MLKEM768PublicKey, mlkem.MLKEM1024PublicKey, x25519.X25519PublicKey, x448.X448PublicKey)


def load_subject_public_key(spki: bytes) -> CertificatePublicKeyTypes:
    """A SubjectPublicKeyInfo (DER) as a key a certificate can carry (not DH)."""
    key = serialization.load_der_public_key(spki)
    if not isinstance(key, _CERTIFIABLE):
        raise ValueError("a DH key cannot be certified")
    return key


def issuer_public_key(issuer: x509.Certificate) -> CertificateIssuerPublicKeyTypes:
    """The key of a certificate that signs others: never a key-agreement or KEM key."""
    key = issuer.public_key()
    if isinstance(key, (x25519.X25519PublicKey, x448.X448PublicKey, mlkem.MLKEM768PublicKey,
                        mlkem.MLKEM1024PublicKey)):
        raise TypeError("a key-agreement key cannot sign certificates or CRLs")
    return key


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key(issuer))
