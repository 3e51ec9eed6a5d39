"""RFC 6031 symmetric key packages as RFC 8295 5.1 delivers them, and the
RFC 7191 receipts and errors that come back. Pure: signing keys are passed in.

Built inside out:

1. SymmetricKeyPackage (the key and its PSKC attributes);
2. SignedData around it, carrying the key package identifier and the
   receipt request (id-aa-KP-keyPkgIdAndReceiptReq, RFC 7191 3);
3. encrypted for one client: EnvelopedData, or an EncryptedKeyPackage
   (RFC 6032) for a client that declared support for it;
4. SignedData around that again (origin authentication of the whole).
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, core
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from .errors import PkiError
from . import envelope, key_package_returns, signeddata
from .asn1 import rfc6031, rfc6032, rfc7191
from .key_package_returns import receipt_request
from .trust import carried_certificates
from .encoding import der

SKEY_PACKAGE = "symmetric_key_package"
# How the delivered package nests, outermost first (RFC 7193 ECT names), and its inner type.
LAYERS = {
    "enveloped": ("signedData", "envelopedData", "signedData"),
    "encrypted-key-package": ("signedData", "encryptedKeyPkg", "signedData"),
}
INNER_CONTENT = "sKeyPackage"
ALGORITHM_BITS = {"aes128": 128, "aes192": 192, "aes256": 256}


class BadSymmetricKeyPackage(PkiError):
    """Not a key package we can open, or one whose signature does not hold."""


def media_type(form: str) -> str:
    """``application/cms`` with its RFC 7193 parameters for a delivered package."""
    return f'application/cms; encapsulatingContent="{", ".join(LAYERS[form])}"; innerContent={INNER_CONTENT}'


def key_package(key: bytes, *, algorithm: str, key_id: str, issuer: str | None = None,
                friendly_name: str | None = None, usages: tuple[str, ...] = (),
                expires: datetime.datetime | None = None,
                manufacturer: str | None = None) -> rfc6031.SymmetricKeyPackage:
    """One AES key with its PSKC attributes (RFC 6031 3, RFC 6030 names)."""
    if algorithm not in rfc6031.ALGORITHM_URIS:
        raise ValueError(f"unknown symmetric key algorithm {algorithm!r}")
    if len(key) * 8 != ALGORITHM_BITS[algorithm]:
        raise ValueError(f"{algorithm} needs a {ALGORITHM_BITS[algorithm]}-bit key")
    unknown = set(usages) - set(rfc6031.KEY_USAGES)
    if unknown:
        raise ValueError(f"unknown PSKC key usage: {', '.join(sorted(unknown))}")
    attrs: list[dict[str, Any]] = [{"type": "key_id", "values": [key_id]},
             {"type": "algorithm", "values": [rfc6031.ALGORITHM_URIS[algorithm]]}]
    if issuer:
        attrs.append({"type": "issuer", "values": [issuer]})
    if friendly_name:
        attrs.append({"type": "friendly_name", "values": [{"friendly_name": friendly_name}]})
    if usages:
        attrs.append({"type": "key_usages", "values": [list(usages)]})
    if expires is not None:
        attrs.append({"type": "key_expiry_date", "values": [expires.astimezone(datetime.timezone.utc)
                                                            .replace(microsecond=0)]})
    value: dict[str, Any] = {"s_keys": [{"s_key_attrs": attrs, "s_key": key}]}
    if manufacturer:
        value["s_key_pkg_attrs"] = [{"type": "manufacturer", "values": [manufacturer]}]
    return rfc6031.SymmetricKeyPackage(value)


def sign_key_package(package: rfc6031.SymmetricKeyPackage, key: signeddata.SigningKey, cert: x509.Certificate, *, pkg_id: bytes,
                     receipts_to: x509.Name | None = None,
                     certificates: list[x509.Certificate] | None = None) -> bytes:
    """ContentInfo(SignedData(SymmetricKeyPackage)) with the receipt request."""
    return signeddata.sign(SKEY_PACKAGE, package, key, cert, certificates=certificates,
                           signed_attrs=[receipt_request(pkg_id, receipts_to)])


def signed_data_of(content_info_der: bytes) -> bytes:
    """The SignedData DER inside a ContentInfo (what an outer layer encrypts)."""
    info = cms.ContentInfo.load(content_info_der)
    if info["content_type"].native != "signed_data":
        raise ValueError("not a ContentInfo(SignedData)")
    return der(info["content"].untag())


def encrypt_for(inner_signed: bytes, recipients: list[envelope.Recipient], *, form: str = "enveloped"
                ) -> tuple[str, core.Asn1Value]:
    """(content type, value) of the encryption layer around the inner
    SignedData, for the outer SignedData to carry."""
    inner = signed_data_of(inner_signed)
    if form == "enveloped":
        return "enveloped_data", envelope.envelope("signed_data", inner, recipients)
    if form == "encrypted-key-package":
        layer = envelope.envelope("signed_data", inner, recipients)
        return rfc6032.CONTENT_TYPE, rfc6032.EncryptedKeyPackage(name="enveloped", value=layer)
    raise ValueError(f"unknown key package form {form!r}")


# -- the client side: open a delivered package ------------------------------------------


@dataclass(frozen=True)
class SymmetricKey:
    key: bytes
    attributes: dict[str, Any]  # PSKC attribute name -> native value (first value, asn1crypto's .native)


@dataclass(frozen=True)
class OpenedSymmetricKeyPackage:
    keys: tuple[SymmetricKey, ...]
    package_attributes: dict[str, Any]
    pkg_id: bytes | None
    receipt_requested: bool
    receipts_to: tuple[bytes, ...]  # DER Names the receipt should go to
    outer_signer: x509.Certificate | None
    inner_signer: x509.Certificate
    inner_certificates: tuple[x509.Certificate, ...]
    outer_certificates: tuple[x509.Certificate, ...]


def _attr(attrs: cms.CMSAttributes, name: str) -> Any:  # the attribute's asn1crypto value, or None
    for a in attrs:
        if a["type"].native == name:
            if len(a["values"]) != 1:
                raise BadSymmetricKeyPackage(f"{name} must have exactly one value (RFC 7191 3)")
            return a["values"][0]
    return None


def pkg_id_of(inner_signed: bytes) -> bytes | None:
    """The key package identifier in a signed key package's attributes, unchecked."""
    try:
        si = cms.ContentInfo.load(inner_signed)["content"]["signer_infos"][0]
        value = _attr(si["signed_attrs"], rfc7191.RECEIPT_REQUEST)
        return None if value is None else value["pkg_id"].native
    except (ValueError, TypeError, KeyError, IndexError, BadSymmetricKeyPackage):
        return None


def open_package(der: bytes, key: envelope.RecipientKey) -> OpenedSymmetricKeyPackage:
    """Verify the outer signature (if any), decrypt, verify the inner one and
    read the keys. Whether the signers are trusted is the caller's call
    (see ``trust.chain_to_anchor`` with the certificates returned)."""
    outer_signer: x509.Certificate | None = None
    outer_certs: tuple[x509.Certificate, ...] = ()
    try:
        info = cms.ContentInfo.load(der, strict=True)
        ctype = info["content_type"].native
        layer_der = der
        if ctype == "signed_data":
            verified = signeddata.verify(der)
            outer_signer, outer_certs = verified.signer, tuple(carried_certificates(der))
            layer_der = cms.ContentInfo({"content_type": verified.content_type,
                                         "content": _load_content(verified.content_type, verified.content)}).dump()
            ctype = verified.content_type
        if ctype in ("enveloped_data", "authenticated_enveloped_data", "encrypted_data", rfc6032.CONTENT_TYPE):
            opened = envelope.open_content_info(layer_der, key)
            if opened.content_type != "signed_data":
                raise BadSymmetricKeyPackage(f"the encrypted layer holds {opened.content_type}, not a signed key package")
            inner_der = cms.ContentInfo({"content_type": "signed_data",
                                         "content": cms.SignedData.load(opened.content)}).dump()
        elif ctype == SKEY_PACKAGE:
            raise BadSymmetricKeyPackage("an unprotected key package: refused (RFC 8295 5.1 recommends encryption)")
        else:
            raise BadSymmetricKeyPackage(f"unexpected content {ctype}")
        inner = signeddata.verify(inner_der)
        if inner.content_type != SKEY_PACKAGE:
            raise BadSymmetricKeyPackage(f"the signed layer holds {inner.content_type}, not a symmetric key package")
        package = rfc6031.SymmetricKeyPackage.load(inner.content, strict=True)
        package.native
        request = _attr(inner.signed_attrs, rfc7191.RECEIPT_REQUEST)
        pkg_id, asks_receipt = None, False
        receipts_to: tuple[bytes, ...] = ()
        if request is not None:
            pkg_id = request["pkg_id"].native
            receipt_req = request["receipt_req"]
            asks_receipt = not isinstance(receipt_req, core.Void) and receipt_req.native is not None
            if asks_receipt:
                receipts_to = tuple(n.name().dump() for n in receipt_req["receipts_to"] if n.name() is not None)
        keys = tuple(SymmetricKey(k["s_key"].native, {a["type"].native: a["values"][0].native
                                                       for a in (k["s_key_attrs"] if k["s_key_attrs"].native else [])})
                     for k in package["s_keys"])
        pkg_attrs = {a["type"].native: a["values"][0].native
                     for a in (package["s_key_pkg_attrs"] if package["s_key_pkg_attrs"].native else [])}
        return OpenedSymmetricKeyPackage(keys, pkg_attrs, pkg_id, asks_receipt, receipts_to, outer_signer, inner.signer_certificate,
                                tuple(carried_certificates(inner_der)), outer_certs)
    except signeddata.BadSignedData as e:
        raise BadSymmetricKeyPackage(f"signature check failed: {e}") from None
    except envelope.EnvelopeError as e:
        raise BadSymmetricKeyPackage(f"cannot decrypt: {e}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, UnsupportedAlgorithm,
            x509.InvalidVersion) as e:
        if isinstance(e, BadSymmetricKeyPackage):
            raise
        raise BadSymmetricKeyPackage(f"unreadable key package: {e}") from None


def _load_content(content_type: str, content: bytes) -> core.Asn1Value:
    spec = cms.ContentInfo._oid_specs.get(content_type)
    if spec is None:
        raise BadSymmetricKeyPackage(f"unknown content type {content_type}")
    return spec.load(content, strict=True)


# -- receipts and errors (RFC 7191) ----------------------------------------------------


# RFC 7191 receipts and errors are built alike for every kind of key package.
receipt, error = key_package_returns.receipt, key_package_returns.error
sign_return, unsigned_return = key_package_returns.sign, key_package_returns.unsigned
BadSymmetricKeyReturn = key_package_returns.BadReturn


@dataclass(frozen=True)
class SymmetricKeyReturn:
    kind: str  # rfc7191.RECEIPT or rfc7191.ERROR
    pkg_id: bytes | None
    error_code: int | None  # the enumerated code; 127 (other) for an OID code
    error_name: str | None
    signer: x509.Certificate | None
    der: bytes


def read_return(der: bytes) -> SymmetricKeyReturn:
    """Parse a receipt (must be signed) or an error (signed or not), checking
    any signature against the certificates it carries."""
    returned = key_package_returns.read(der)
    if returned.kind == rfc7191.RECEIPT and returned.pkg_id is None:
        raise BadSymmetricKeyReturn("only receipts naming a pkgID are understood")
    return SymmetricKeyReturn(returned.kind, returned.pkg_id, returned.error_number, returned.error_name,
                            returned.signer, der)


__all__ = ["BadSymmetricKeyPackage", "BadSymmetricKeyReturn", "SymmetricKeyReturn", "LAYERS", "OpenedSymmetricKeyPackage", "SymmetricKey",
           "encrypt_for", "error", "key_package", "media_type", "open_package", "pkg_id_of", "read_return",
           "receipt", "receipt_request", "sign_key_package", "sign_return", "signed_data_of", "unsigned_return"]
