"""The forms a server-generated private key travels in (RFC 7030 4.4.2,
RFC 8295 8): the RFC 5958 AsymmetricKeyPackage, its RFC 7191 identifier
attribute, and PKCS#12 (RFC 7292). Pure; signing and encryption are done by
the caller (``signeddata``, ``envelope``).
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from asn1crypto import cms
from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from .errors import PkiError
from . import envelope, key_package_returns, signeddata, trust
from .asn1 import rfc5958, rfc7191
from .key_package_returns import receipt_request


class BadKeyPackage(PkiError):
    """Not an AsymmetricKeyPackage we can use."""


def complete_pkcs8(pkcs8_der: bytes) -> bytes:
    """PKCS#8 as OpenSSL and most tools write it: an EC key gains the
    optional RFC 5915 ``publicKey`` that tokens leave out (SoftHSM2 does),
    which some readers need to use the key. Other keys are returned as they are."""
    key = serialization.load_der_private_key(pkcs8_der, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return pkcs8_der
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def asymmetric_key_package(pkcs8_der: bytes) -> rfc5958.AsymmetricKeyPackage:
    """One key, as PKCS#8 came out of the token, in an AsymmetricKeyPackage."""
    return rfc5958.AsymmetricKeyPackage([rfc5958.OneAsymmetricKey.from_pkcs8(pkcs8_der)])


def pkcs12(pkcs8_der: bytes, certificate: x509.Certificate, chain: list[x509.Certificate], password: bytes, *,
           iterations: int, friendly_name: bytes | None = None) -> bytes:
    """DER PFX with the key and its certificate (and the CA chain):
    PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) for key and certificates, an
    HMAC-SHA256 MAC, ``iterations`` rounds for both."""
    key = serialization.load_der_private_key(pkcs8_der, None)
    if not isinstance(key, (rsa.RSAPrivateKey, dsa.DSAPrivateKey, ec.EllipticCurvePrivateKey,
                            ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        raise ValueError(f"a {type(key).__name__} cannot be put in a PKCS#12")
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
    out: bytes = pfx.dump(force=True)
    return out


# -- the receiving side -------------------------------------------------------------


@dataclass(frozen=True)
class OpenedKeyPackage:
    """A delivered, decrypted and signature-checked asymmetric key package."""

    keys: list[PrivateKeyTypes]
    pkg_id: bytes | None  # from the RFC 7191 attribute, if the package carried one
    receipt_requested: bool
    signer: x509.Certificate
    anchor: x509.Certificate  # the trust anchor the signer leads to
    layer: str  # "enveloped", "auth_enveloped" (the encryption layer opened)
    content_encryption: str
    key_encryption: str | None


def read_asymmetric_key_package(der: bytes) -> list[PrivateKeyTypes]:
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
            trust.chain_to_anchor(outer.signer_certificate, anchors, trust.carried_certificates(der))
            der = cms.ContentInfo({"content_type": outer.content_type, "content": cms.ContentInfo._oid_specs[
                outer.content_type].load(outer.content)}).dump()
        opened = envelope.open_content_info(der, key)
        if opened.content_type != "signed_data":
            raise BadKeyPackage(f"the encrypted layer holds {opened.content_type}, not a signed key package")
        inner = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData.load(opened.content)}).dump()
        verified = signeddata.verify(inner)
        anchor = trust.chain_to_anchor(verified.signer_certificate, anchors, trust.carried_certificates(inner))
        if verified.content_type != rfc5958.CONTENT_TYPE:
            raise BadKeyPackage(f"the signed layer holds {verified.content_type}, not an asymmetric key package")
        pkg_id, receipt_requested = package_identifier(verified.signed_attrs)
        return OpenedKeyPackage(read_asymmetric_key_package(verified.content), pkg_id, receipt_requested,
                                verified.signer_certificate, anchor, opened.layer, opened.content_encryption,
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


def receipt_message(pkg_id: bytes, received_by: x509.Name, key: signeddata.SigningKey,
                    certificate: x509.Certificate) -> bytes:
    """ContentInfo(SignedData(KeyPackageReceipt)): receipts are always signed
    (RFC 7191 2), with binary-signing-time (RFC 7191 4)."""
    return key_package_returns.sign(rfc7191.RECEIPT, key_package_returns.receipt(pkg_id, received_by), key,
                                    certificate)


def error_message(pkg_id: bytes | None, error_by: x509.Name, code: str | int, key: signeddata.SigningKey | None = None,
                  certificate: x509.Certificate | None = None) -> bytes:
    """ContentInfo(KeyPackageError), signed when a key is given."""
    error = key_package_returns.error(pkg_id, error_by, code)
    if key is None:
        return key_package_returns.unsigned(rfc7191.ERROR, error)
    if certificate is None:
        raise ValueError("a signed KeyPackageError needs the signer's certificate")
    return key_package_returns.sign(rfc7191.ERROR, error, key, certificate)


BadReturn = key_package_returns.BadReturn


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
    returned = key_package_returns.read(der, candidates)
    if returned.other_identifier:
        raise BadReturn("only key package identifiers of the pkgID form are understood")
    return KeyPackageReturn("receipt" if returned.kind == rfc7191.RECEIPT else "error", returned.pkg_id,
                            returned.error_name, returned.signer, key_package_returns.readable_name(returned.by))


__all__ = ["BadKeyPackage", "BadReturn", "KeyPackageReturn", "OpenedKeyPackage", "asymmetric_key_package",
           "error_message", "open_key_package", "package_identifier", "pkcs12", "read_asymmetric_key_package",
           "read_return", "receipt_message", "receipt_request"]
