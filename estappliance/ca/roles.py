"""Token keys with a role beyond the CA's: the TAMP trust anchor manager
(RFC 5934) and the firmware signer (RFC 4108), each certified by the CA.

Why not the content signer for these too: a device's trust anchor store
holds the TAMP manager and its firmware anchor as anchors of their own, with
authority for that one kind of message. Separate keys keep a key-package
signature from ever passing as a trust anchor update, and let either role be
re-keyed (or handed to another party) alone. Their certificates carry the
CA's name with the role ("<CA CN> TAMP manager"), digitalSignature only.

Blocking code: ``estctl`` makes them on first use; the service only signs.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..config import Config
from ..pki import certs
from ..store import Store
from ..token import KEY_SPECS, Token
from .authority import load_pem_certs
from .signer import TokenSigner
from ..pki.rollover import authority_key_identifier, key_identifier
from .content import ContentSigner
from ..files import write_atomically
from .setup import SetupError, _named_after


@dataclass(frozen=True)
class Role:
    name: str  # "tamp" | "firmware"
    title: str  # what the certificate's CN says after the CA's
    key_label: str
    cert_file: Path


def role(config: Config, name: str) -> Role:
    d = config.distribution
    if name == "tamp":
        return Role("tamp", "TAMP manager", d.tamp_key_label, _configured(d.tamp_cert_file, "tamp_cert_file"))
    if name == "firmware":
        return Role("firmware", "firmware signer", d.firmware_signer_key_label,
                    _configured(d.firmware_signer_cert_file, "firmware_signer_cert_file"))
    raise ValueError(f"unknown signer role {name!r}")


def _configured(path: Path | None, setting: str) -> Path:
    """A path the loaded configuration always sets (None only in a hand-made Config)."""
    if path is None:
        raise SetupError(f"[distribution] {setting} is not set")
    return path


def _ca_certificate(config: Config) -> x509.Certificate:
    if not config.ca.cert_file.exists():
        raise SetupError("the CA is not initialised (run 'estctl init')")
    return x509.load_pem_x509_certificate(config.ca.cert_file.read_bytes())


def _chain(config: Config, ca_cert: x509.Certificate) -> list[x509.Certificate]:
    chain = load_pem_certs(config.ca.chain_file) if config.ca.chain_file and config.ca.chain_file.exists() else []
    return [ca_cert, *[c for c in chain if c != ca_cert]]


def _current(cert_file: Path, ca_cert: x509.Certificate, public_key: CertificatePublicKeyTypes) -> bool:
    """The certificate on file is for this key, from this CA, and not near its end."""
    if not cert_file.exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    same_key = cert.public_key().public_bytes(serialization.Encoding.DER, spki) == \
        public_key.public_bytes(serialization.Encoding.DER, spki)
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    return (same_key and cert.issuer == ca_cert.subject and cert.not_valid_after_utc > soon
            and authority_key_identifier(cert) in (key_identifier(ca_cert), None))


def current_key_label(config: Config, store: Store) -> str:
    """The token label of the CA key that signs now (after a key update, not the configured one)."""
    current = [g for g in store.generations.generations() if g.state == "current"]
    return current[0].key_label if current else config.ca.key_label


def ensure(config: Config, token: Token, store: Store, name: str, *, renew: bool = False) -> x509.Certificate:
    """The role's key in the token and its certificate from the CA, made
    (and recorded) if missing, for another key, or near its end."""
    r = role(config, name)
    ca_cert = _ca_certificate(config)
    if not token.has_key(r.key_label):
        token.generate_keypair(r.key_label, KEY_SPECS[config.ca.key_type], extractable=False)
    public_key = TokenSigner(token, r.key_label).key().public_key()
    if not renew and _current(r.cert_file, ca_cert, public_key):
        return x509.load_pem_x509_certificate(r.cert_file.read_bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = certs.end_entity(
        subject=_named_after(ca_cert.subject, r.title), public_key=public_key, issuer=ca_cert,
        serial=x509.random_serial_number(), now=now, days=config.ca.validity_days,
        key_usages=("digitalSignature",), extended_key_usages=(), san=None)
    cert = TokenSigner(token, current_key_label(config, store)).sign_certificate(builder)
    store.certificates.record_certificate(serial=cert.serial_number, subject=cert.subject.rfc4514_string(),
                             not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                             label=f"({name}-signer)", client=None, der=cert.public_bytes(serialization.Encoding.DER),
                             audit_detail=f"{r.title} certificate")
    write_atomically(r.cert_file, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def signer(config: Config, token: Token, name: str) -> ContentSigner:
    """A signer for the role (its certificate must exist: see ``ensure``)."""
    r = role(config, name)
    return ContentSigner(token, r.key_label, r.cert_file, _chain(config, _ca_certificate(config)))


__all__ = ["Role", "ensure", "role", "signer"]
