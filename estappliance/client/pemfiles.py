"""The PEM files and password files the est sub-commands are given."""
from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def certificates(path: str | Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (anchors, a chain)."""
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def private_key(path: str | Path) -> PrivateKeyTypes:
    """An unencrypted PEM private key."""
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def certificate_and_key(cert_path: str | Path, key_path: str | Path) -> tuple[x509.Certificate, object]:
    """(the first certificate of ``cert_path``, the private key in ``key_path``)."""
    return certificates(cert_path)[0], private_key(key_path)


def password(path: str | Path) -> str:
    """A password file's text without its trailing line break."""
    return Path(path).read_text().rstrip("\r\n")


__all__ = ["certificate_and_key", "certificates", "password", "private_key"]
