"""The forms a server-generated private key travels in (RFC 7030 4.4.2,
RFC 8295 8): the RFC 5958 AsymmetricKeyPackage, its RFC 7191 identifier
attribute, and PKCS#12 (RFC 7292). Pure; signing and encryption are done by
the caller (``signeddata``, ``envelope``).
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import os
from dataclasses import dataclass

from asn1crypto import cms, core
from asn1crypto import pkcs12 as asn1_pkcs12
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from . import envelope, signeddata, trust
from .asn1 import rfc5958, rfc7191


class BadKeyPackage(ValueError):
    """Not an AsymmetricKeyPackage we can use."""


def asymmetric_key_package(pkcs8_der: bytes) -> rfc5958.AsymmetricKeyPackage:
    """One key, as PKCS#8 came out of the token, in an AsymmetricKeyPackage."""
    return rfc5958.AsymmetricKeyPackage([rfc5958.OneAsymmetricKey.from_pkcs8(pkcs8_der)])


def receipt_request(pkg_id: bytes, receipts_to: x509.Name | None) -> dict:
    """The signed attribute naming a key package (RFC 7191 3); with
    ``receipts_to`` it also asks every receiver for a receipt, sent there."""
    value = {"pkg_id": pkg_id}
    if receipts_to is not None:
        value["receipt_req"] = {"receipts_to": [rfc7191.SIREntityName.for_name(
            asn1_x509.Name.load(receipts_to.public_bytes()))]}
    return {"type": rfc7191.RECEIPT_REQUEST, "values": [rfc7191.KeyPkgIdentifierAndReceiptReq(value)]}


def pkcs12(pkcs8_der: bytes, certificate: x509.Certificate, chain: list[x509.Certificate], password: bytes, *,
           iterations: int, friendly_name: bytes | None = None) -> bytes:
    """DER PFX with the key and its certificate (and the CA chain):
    PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for key and certificates, an
    HMAC-SHA256 MAC, ``iterations`` rounds for both."""
    key = serialization.load_der_private_key(pkcs8_der, None)
    encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                  .kdf_rounds(iterations)
                  .key_cert_algorithm(crypto_pkcs12.PBES.PBESv2SHA256AndAES256CBC)
                  .hmac_hash(hashes.SHA256())
                  .build(password))
    pfx = crypto_pkcs12.serialize_key_and_certificates(friendly_name, key, certificate, chain or None, encryption)
    return _remac(pfx, password, iterations)


def _pkcs12_mac_key(password: bytes, salt: bytes, iterations: int) -> bytes:
    """RFC 7292 B.2 key derivation (ID 3, MAC key) with SHA-256, for a 32-octet
    key: one hash block, so the B.2 step 6c update never applies."""
    v = 64  # SHA-256 block size
    bmp = password.decode("utf-8").encode("utf-16-be") + b"\0\0" if password else b""

    def fill(data: bytes) -> bytes:  # B.2 steps 2-3: repeated up to a multiple of v octets
        size = v * -(-len(data) // v)
        return (data * (size // len(data) + 1))[:size] if data else b""
    digest = hashlib.sha256(b"\x03" * v + fill(salt) + fill(bmp)).digest()
    for _ in range(iterations - 1):
        digest = hashlib.sha256(digest).digest()
    return digest


def _remac(pfx_der: bytes, password: bytes, iterations: int) -> bytes:
    """cryptography fixes the PFX MAC's iteration count at 2048, which would
    make the MAC the cheap way to test password guesses; the MAC is computed
    again here with the same count as the encryption (fresh salt, HMAC-SHA256)."""
    pfx = asn1_pkcs12.Pfx.load(pfx_der)
    auth_safe = pfx["auth_safe"]["content"].native
    salt = os.urandom(16)
    mac = hmac.new(_pkcs12_mac_key(password, salt, iterations), auth_safe, hashlib.sha256).digest()
    pfx["mac_data"] = {"mac": {"digest_algorithm": {"algorithm": "sha256"}, "digest": mac}, "mac_salt": salt,
                       "iterations": iterations}
    return pfx.dump(force=True)


# -- the receiving side -------------------------------------------------------------


@dataclass(frozen=True)
class OpenedKeyPackage:
    """A delivered, decrypted and signature-checked asymmetric key package."""

    keys: list  # cryptography private keys
    pkg_id: bytes | None  # from the RFC 7191 attribute, if the package carried one
    receipt_requested: bool
    signer: x509.Certificate
    anchor: x509.Certificate  # the trust anchor the signer leads to
    layer: str  # "enveloped", "auth_enveloped" (the encryption layer opened)
    content_encryption: str
    key_encryption: str | None


def read_asymmetric_key_package(der: bytes) -> list:
    """The private keys of an AsymmetricKeyPackage (DER of the content)."""
    try:
        package = rfc5958.AsymmetricKeyPackage.load(der, strict=True)
        package.native  # noqa: B018
        keys = [serialization.load_der_private_key(one.to_pkcs8(), None) for one in package]
    except (ValueError, TypeError) as e:
        raise BadKeyPackage(f"unreadable AsymmetricKeyPackage: {e}") from None
    if not keys:
        raise BadKeyPackage("empty AsymmetricKeyPackage")
    return keys


def package_identifier(signed_attrs: cms.CMSAttributes) -> tuple[bytes | None, bool]:
    """(pkgID, receipt requested) from a SignedData's signed attributes."""
    for attr in signed_attrs:
        if attr["type"].native == rfc7191.RECEIPT_REQUEST:
            if len(attr["values"]) != 1:
                raise BadKeyPackage("the key package identifier attribute must have one value (RFC 7191 3)")
            value = attr["values"][0]
            return value["pkg_id"].native, value["receipt_req"].native is not None
    return None, False


def open_key_package(der: bytes, key: envelope.RecipientKey, anchors: list[x509.Certificate]) -> OpenedKeyPackage:
    """Open what /serverkeygen sent encrypted: EnvelopedData (RFC 7030) or an
    EncryptedKeyPackage (RFC 8295), optionally inside an outer SignedData;
    decrypt it, check the inner signature and that its signer leads to one of
    ``anchors`` (RFC 8295 8.1: reject otherwise), and read the keys."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native == "signed_data":
            outer = signeddata.verify(der)
            trust.chain_to_anchor(outer.signer, anchors, trust.carried_certificates(der))
            der = cms.ContentInfo({"content_type": outer.content_type, "content": cms.ContentInfo._oid_specs[
                outer.content_type].load(outer.content)}).dump()
        opened = envelope.open_content_info(der, key)
        if opened.content_type != "signed_data":
            raise BadKeyPackage(f"the encrypted layer holds {opened.content_type}, not a signed key package")
        inner = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData.load(opened.content)}).dump()
        verified = signeddata.verify(inner)
        anchor = trust.chain_to_anchor(verified.signer, anchors, trust.carried_certificates(inner))
        if verified.content_type != rfc5958.CONTENT_TYPE:
            raise BadKeyPackage(f"the signed layer holds {verified.content_type}, not an asymmetric key package")
        pkg_id, receipt_requested = package_identifier(verified.signed_attrs)
        return OpenedKeyPackage(read_asymmetric_key_package(verified.content), pkg_id, receipt_requested,
                                verified.signer, anchor, opened.layer, opened.content_encryption,
                                opened.key_encryption)
    except envelope.EnvelopeError as e:
        raise BadKeyPackage(f"cannot decrypt: {e}") from None
    except signeddata.BadSignedData as e:
        raise BadKeyPackage(f"signature check failed: {e}") from None
    except trust.Untrusted as e:
        raise BadKeyPackage(f"the key package signer is not trusted: {e}") from None
    except (ValueError, TypeError, KeyError) as e:
        if isinstance(e, BadKeyPackage):
            raise
        raise BadKeyPackage(f"unreadable key package: {e}") from None


# -- receipts and errors (RFC 7191), both ways -----------------------------------------


def _siren(name: x509.Name) -> rfc7191.SIREntityName:
    return rfc7191.SIREntityName.for_name(asn1_x509.Name.load(name.public_bytes()))


def receipt_message(pkg_id: bytes, received_by: x509.Name, key, certificate: x509.Certificate) -> bytes:
    """ContentInfo(SignedData(KeyPackageReceipt)): receipts are always signed
    (RFC 7191 2), with binary-signing-time (RFC 7191 4)."""
    value = rfc7191.KeyPackageReceipt({"receipt_of": rfc7191.KeyPkgIdentifier(name="pkg_id", value=pkg_id),
                                       "received_by": _siren(received_by)})
    return _signed(rfc7191.RECEIPT, value, key, certificate)


def error_message(pkg_id: bytes | None, error_by: x509.Name, code: str | int, key=None,
                  certificate: x509.Certificate | None = None) -> bytes:
    """ContentInfo(KeyPackageError), signed when a key is given."""
    value = {"error_by": _siren(error_by), "error_code": rfc7191.ErrorCodeChoice(name="enum", value=code)}
    if pkg_id is not None:
        value["error_of"] = rfc7191.KeyPkgIdentifier(name="pkg_id", value=pkg_id)
    error = rfc7191.KeyPackageError(value)
    if key is None:
        return cms.ContentInfo({"content_type": rfc7191.ERROR, "content": error}).dump()
    return _signed(rfc7191.ERROR, error, key, certificate)


def _signed(content_type: str, value, key, certificate: x509.Certificate) -> bytes:
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    return signeddata.sign(content_type, value, key, certificate, certificates=[certificate], signing_time=False,
                           signed_attrs=[{"type": "binary_signing_time", "values": [now]}])


class BadReturn(ValueError):
    """Not a usable key package receipt or error."""


@dataclass(frozen=True)
class KeyPackageReturn:
    kind: str  # "receipt" or "error"
    pkg_id: bytes | None  # None: an error about a package that could not be parsed
    error_code: str | None  # RFC 7191 name (or number / OID) for errors
    signer: x509.Certificate | None  # None for an unsigned error
    by: str | None  # receivedBy / errorBy, readable, when an id-dn name


def read_return(der: bytes, candidates: list[x509.Certificate]) -> KeyPackageReturn:
    """Parse a receipt (signed) or an error (signed or not). A signature is
    checked against ``candidates`` (the certificates the sender may sign with)
    first, then against the certificates the message carries; whether the
    signer is acceptable is the caller's call."""
    signer = None
    try:
        info = cms.ContentInfo.load(der, strict=True)
        kind = info["content_type"].native
        if kind == "signed_data":
            verified = signeddata.verify(der, candidates)
            kind, content, signer = verified.content_type, verified.content, verified.signer
        elif kind == rfc7191.ERROR:
            content = info["content"].untag().dump()
        elif kind == rfc7191.RECEIPT:
            raise BadReturn("a key package receipt must be signed (RFC 7191 2)")
        else:
            raise BadReturn(f"{kind} is neither a key package receipt nor a key package error")
        if kind == rfc7191.RECEIPT:
            value = rfc7191.KeyPackageReceipt.load(content, strict=True)
            value.native  # noqa: B018
            identifier, by, code = value["receipt_of"], value["received_by"], None
        elif kind == rfc7191.ERROR:
            value = rfc7191.KeyPackageError.load(content, strict=True)
            value["error_by"].native  # noqa: B018
            identifier, by = value["error_of"], value["error_by"]
            code = rfc7191.error_code_name(value["error_code"])
        else:
            raise BadReturn(f"the signed content is {kind}, not a key package receipt or error")
        pkg_id = None
        if not isinstance(identifier, core.Void):
            if identifier.name != "pkg_id":
                raise BadReturn("only key package identifiers of the pkgID form are understood")
            pkg_id = identifier.chosen.native
        name = by.name()
        return KeyPackageReturn("receipt" if kind == rfc7191.RECEIPT else "error", pkg_id, code, signer,
                                None if name is None else name.human_friendly)
    except signeddata.BadSignedData as e:
        raise BadReturn(f"signature check failed: {e}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        if isinstance(e, BadReturn):
            raise
        raise BadReturn(f"unreadable key package receipt or error: {e}") from None


__all__ = ["BadKeyPackage", "BadReturn", "KeyPackageReturn", "OpenedKeyPackage", "asymmetric_key_package",
           "error_message", "open_key_package", "package_identifier", "pkcs12", "read_asymmetric_key_package",
           "read_return", "receipt_message", "receipt_request"]
