"""What every ``est`` sub-command shares: the client its connection options
describe, and how results are written (files atomically, or standard output)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ..files import write_atomically
from . import pemfiles
from .est import BasicAuth, DigestAuth, EstClient


def pem_certs(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def write_output(path: str | None, data: bytes, mode: int = 0o644) -> None:
    """An output file of the command (written atomically), or standard output for None or '-'."""
    if path in (None, "-"):
        sys.stdout.write(data.decode())
        return
    write_atomically(path, data, mode)


def client_from_args(args: argparse.Namespace) -> EstClient:
    """The EstClient the common connection options describe."""
    anchors = None
    if args.anchor:
        anchors = pemfiles.certificates(args.anchor)
    elif not getattr(args, "insecure_bootstrap", False):
        raise SystemExit("est: --anchor FILE is required (or --insecure-bootstrap for cacerts)")
    auth = None
    if args.user is not None:
        if not args.password_file:
            raise SystemExit("est: --user needs --password-file")
        password = pemfiles.password(args.password_file)
        auth = DigestAuth(args.user, password) if args.digest else BasicAuth(args.user, password)
    client_cert = client_key = None
    if args.cert:
        if not args.key:
            raise SystemExit("est: --cert needs --key")
        client_cert, client_key = pemfiles.certificates(args.cert), pemfiles.private_key(args.key)
    return EstClient(args.server, anchors=anchors, label=args.label, auth=auth, client_cert=client_cert,
                     client_key=client_key, tls_version=args.tls)


def write_key(path: str, key: PrivateKeyTypes) -> None:
    """A private key as unencrypted PKCS#8 PEM, readable by its owner only."""
    write_output(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()), mode=0o600)


def link_choice(args: argparse.Namespace) -> bool | None:
    """--link / --no-link: True, False, or None to follow the server's CSR attributes."""
    return True if args.link else (False if args.no_link else None)
