"""RFC 7191 for every kind of key package: the identifier-and-receipt-request
attribute a package carries, and the receipts and errors that come back.
Symmetric (``symkeys``, RFC 6031) and asymmetric (``keypackages``, RFC 5958)
packages build and read them here; each keeps its own view of a return.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from .errors import PkiError
from . import signeddata
from .asn1 import rfc7191
from .maybe_signed import open_content_info, reading
from .encoding import der


class BadReturn(PkiError):
    """Not an RFC 7191 receipt or error we can read."""


def siren(name: x509.Name) -> rfc7191.SIREntityName:
    """The id-dn SIREntityName for a distinguished name."""
    return rfc7191.SIREntityName.for_name(asn1_x509.Name.load(name.public_bytes()))


def receipt_request(pkg_id: bytes, receipts_to: x509.Name | None) -> signeddata.AttributeDict:
    """The signed attribute naming a key package (RFC 7191 3); with
    ``receipts_to`` it also asks every receiver for a receipt, sent there."""
    value: dict[str, Any] = {"pkg_id": pkg_id}
    if receipts_to is not None:
        value["receipt_req"] = {"receipts_to": [siren(receipts_to)]}
    return {"type": rfc7191.RECEIPT_REQUEST, "values": [rfc7191.KeyPkgIdentifierAndReceiptReq(value)]}


def receipt(pkg_id: bytes, received_by: x509.Name) -> rfc7191.KeyPackageReceipt:
    return rfc7191.KeyPackageReceipt({"receipt_of": rfc7191.KeyPkgIdentifier(name="pkg_id", value=pkg_id),
                                      "received_by": siren(received_by)})


def error(pkg_id: bytes | None, error_by: x509.Name, code: str | int) -> rfc7191.KeyPackageError:
    """``pkg_id`` None: the package could not be parsed far enough to find it."""
    value: dict[str, Any] = {"error_by": siren(error_by), "error_code": rfc7191.ErrorCodeChoice(name="enum", value=code)}
    if pkg_id is not None:
        value["error_of"] = rfc7191.KeyPkgIdentifier(name="pkg_id", value=pkg_id)
    return rfc7191.KeyPackageError(value)


def sign(kind: str, value: core.Asn1Value, key: signeddata.SigningKey, certificate: x509.Certificate) -> bytes:
    """ContentInfo(SignedData(receipt or error)): receipts MUST be signed
    (RFC 7191 2); binary-signing-time is added as RFC 7191 4 asks of signers
    with a clock."""
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    return signeddata.sign(kind, value, key, certificate, certificates=[certificate], signing_time=False,
                           signed_attrs=[{"type": "binary_signing_time", "values": [now]}])


def unsigned(kind: str, value: core.Asn1Value) -> bytes:
    """ContentInfo of an unsigned error (receipts are always signed)."""
    return der(cms.ContentInfo({"content_type": kind, "content": value}))


@dataclass(frozen=True)
class Return:
    """A receipt or error as read, before each kind of package's own view of it."""

    kind: str  # rfc7191.RECEIPT or rfc7191.ERROR
    pkg_id: bytes | None  # None: no identifier (an error only), or one of the attribute form
    other_identifier: bool  # the package is identified by the attribute form, not a pkgID
    error_number: int | None  # the enumerated code; 127 (other) for an OID code
    error_name: str | None  # RFC 7191 name, the number, or the OID
    by: rfc7191.SIREntityName  # receivedBy / errorBy (``readable_name`` parses it)
    signer: x509.Certificate | None  # None for an unsigned error


def read(der: bytes, candidates: list[x509.Certificate] | None = None) -> Return:
    """Parse a receipt (must be signed) or an error (signed or not). A
    signature is checked against ``candidates`` first, then against the
    certificates the message carries; whether the signer is acceptable is
    the caller's call."""
    with reading(BadReturn, "key package receipt or error"):
        opened = open_content_info(der, candidates, (rfc7191.ERROR,))
        kind, content, signer = opened.content_type, opened.content, opened.signer
        if signer is None and kind == rfc7191.RECEIPT:
            raise BadReturn("a key package receipt must be signed (RFC 7191 2)")
        if kind == rfc7191.RECEIPT:
            value = rfc7191.KeyPackageReceipt.load(content, strict=True)
            value.native  # noqa: B018  (parse everything now, inside the ``reading``)
            identifier, by, number, name = value["receipt_of"], value["received_by"], None, None
        elif kind == rfc7191.ERROR:
            value = rfc7191.KeyPackageError.load(content, strict=True)
            value["error_by"].native  # noqa: B018  (not .native of all: unknown codes are no error)
            identifier, by, choice = value["error_of"], value["error_by"], value["error_code"]
            number = int(choice.chosen) if choice.name == "enum" else 127
            name = rfc7191.error_code_name(choice)
        elif signer is not None:
            raise BadReturn(f"the signed content is {kind}, not a key package receipt or error")
        else:
            raise BadReturn(f"{kind} is neither a key package receipt nor a key package error")
        named = not isinstance(identifier, core.Void) and identifier.name == "pkg_id"
        other = not isinstance(identifier, core.Void) and not named
        return Return(kind, identifier.chosen.native if named else None, other, number, name, by, signer)


def readable_name(by: rfc7191.SIREntityName) -> str | None:
    """receivedBy / errorBy as text, when an id-dn name; raises ``BadReturn``
    when that name does not parse."""
    with reading(BadReturn, "key package receipt or error"):
        name = by.name()
        return None if name is None else name.human_friendly


__all__ = ["BadReturn", "Return", "error", "read", "readable_name", "receipt", "receipt_request", "siren", "sign", "unsigned"]
