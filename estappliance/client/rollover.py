"""A device's side of a root CA key update (RFC 7030 4.1.3, RFC 4210 4.4).

From the roots it trusts and what /cacerts returned: a new self-signed root
is accepted only when a link certificate carrying the new root's key
(NewWithOld) is signed by a key the device already trusts, valid now and a
CA certificate, and when OldWithNew certifies the trusted key under the new
one (the server holds both keys). A trusted root that /cacerts no longer
lists, while another root of the same name is trusted, is dropped: its key
was retired. Pure: certificates in, the new anchor list out.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def _valid(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


@dataclass
class AnchorUpdate:
    anchors: list[x509.Certificate]
    added: list[x509.Certificate] = field(default_factory=list)
    dropped: list[x509.Certificate] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why a new root was not taken

    @property
    def changed(self) -> bool:
        return bool(self.added or self.dropped)


def update_anchors(anchors: list[x509.Certificate], cacerts: list[x509.Certificate],
                   now: datetime.datetime | None = None) -> AnchorUpdate:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    trusted = {_spki(a) for a in anchors}
    roots = [c for c in cacerts if c.subject == c.issuer and _is_ca(c) and _signed_by(c, c)]
    added, refused = [], []
    for root in roots:
        if _spki(root) in trusted:
            continue
        if not _valid(root, now):
            refused.append(f"{root.subject.rfc4514_string()}: outside its validity period")
            continue
        new_with_old = [c for c in cacerts if c is not root and _spki(c) == _spki(root) and _is_ca(c)
                        and _valid(c, now) and any(_signed_by(c, a) for a in anchors)]
        old_with_new = [c for c in cacerts if _spki(c) in trusted and _is_ca(c)
                        and _signed_by(c, root)]
        if not new_with_old:
            refused.append(f"{root.subject.rfc4514_string()}: no NewWithOld link signed by a trusted key")
            continue
        if not old_with_new:
            refused.append(f"{root.subject.rfc4514_string()}: no OldWithNew link certifies the trusted key")
            continue
        added.append(root)
    listed = set(cacerts)
    kept: list[x509.Certificate] = []
    dropped: list[x509.Certificate] = []
    for a in anchors:
        retired = a not in listed and a.subject == a.issuer and any(
            b.subject == a.subject and b in listed for b in [*anchors, *added] if b is not a)
        (dropped if retired else kept).append(a)
    return AnchorUpdate([*added, *kept], added, dropped, refused)
