"""The PEM files and password files the est sub-commands are given."""
from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

# What signs a CSR, a CMC request or a receipt here.
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def certificates(path: str | Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (anchors, a chain)."""
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def private_key(path: str | Path) -> PrivateKeyTypes:
    """An unencrypted PEM private key."""
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def signing_key(path: str | Path) -> SigningKey:
    """An unencrypted PEM private key that signs: EC, RSA or Ed25519."""
    key = private_key(path)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise ValueError(f"{path}: an EC, RSA or Ed25519 private key is needed, not {type(key).__name__}")
    return key


def certificate_and_key(cert_path: str | Path, key_path: str | Path) -> tuple[x509.Certificate, SigningKey]:
    """(the first certificate of ``cert_path``, the private key in ``key_path``)."""
    return certificates(cert_path)[0], signing_key(key_path)


def password(path: str | Path) -> str:
    """A password file's text without its trailing line break."""
    return Path(path).read_text().rstrip("\r\n")


__all__ = ["SigningKey", "certificate_and_key", "certificates", "password", "private_key", "signing_key"]
