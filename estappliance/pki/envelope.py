"""CMS encryption layers (RFC 5652 6 and 8, RFC 5083/5084) and the RFC 6032
EncryptedKeyPackage around them: build for a recipient, open with its key.

Pure: bytes and cryptography key objects in, DER out. A symmetric KEK that
lives in a token is used through a ``wrap`` callable (RFC 3394 AES key wrap of
the content-encryption key), so this module never needs the key itself.

Recipients:

* ``KekRecipient``: kekri, a symmetric key-encryption key both sides know,
  named by its identifier (RFC 7030 DecryptKeyIdentifier); AES key wrap.
* ``KeyTransRecipient``: ktri, RSAES-OAEP (RFC 3560 / RFC 8017), SHA-256 by default.
* ``KeyAgreeRecipient``: kari, ephemeral-static ECDH (RFC 5753,
  dhSinglePass-stdDH-sha*kdf-scheme) with the ANSI X9.63 KDF and AES key wrap.

Content encryption: AES-CBC gives EnvelopedData; AES-GCM gives
AuthEnvelopedData (RFC 5083, RFC 5084), as CMS requires.
"""
from __future__ import annotations

import hmac
import os
import struct
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

from asn1crypto import algos, cms, core, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding as sym_padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .errors import PkiError
from .asn1 import rfc6032
from .encoding import der

# Content-encryption algorithms (asn1crypto names) and their key sizes.
CBC_CIPHERS = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32}
GCM_CIPHERS = {"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}
CIPHERS = {**CBC_CIPHERS, **GCM_CIPHERS}
# AES key wrap (RFC 3394, RFC 3565) by KEK size.
WRAPS = {"aes128_wrap": 16, "aes192_wrap": 24, "aes256_wrap": 32}
WRAP_FOR_SIZE = {size: name for name, size in WRAPS.items()}
# RFC 5753 8.1 / SEC 1: dhSinglePass-stdDH-sha*kdf-scheme, by KDF hash.
ECDH_SCHEMES = {
    "sha256": "1.3.132.1.11.1",
    "sha384": "1.3.132.1.11.2",
    "sha512": "1.3.132.1.11.3",
}
_SCHEME_HASH = {oid: name for name, oid in ECDH_SCHEMES.items()}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
GCM_TAG_LENGTH = 16


class EnvelopeError(PkiError):
    """The structure cannot be built, read or decrypted with the key given."""


class GCMParameters(core.Sequence):
    """RFC 5084 3.2: nonce (12 octets recommended) and tag length (default 12)."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


class EccCmsSharedInfo(core.Sequence):
    """RFC 5753 7.2: the X9.63 KDF's SharedInfo."""

    _fields = [
        ("key_info", cms.KeyEncryptionAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


# -- recipients ------------------------------------------------------------------


@dataclass(frozen=True)
class RecipientId:
    """How a ktri/kari names the recipient's key: its subject key identifier,
    or the issuer and serial number of its certificate."""

    ski: bytes | None = None
    issuer: x509.Name | None = None
    serial: int | None = None

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, *, use_ski: bool = True) -> "RecipientId":
        if use_ski:
            try:
                return cls(ski=cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
            except x509.ExtensionNotFound:
                pass
        return cls(issuer=cert.issuer, serial=cert.serial_number)

    def _iasn(self) -> cms.IssuerAndSerialNumber:
        if self.issuer is None:
            raise EnvelopeError("a recipient named without a key identifier needs its issuer and serial")
        return cms.IssuerAndSerialNumber({
            "issuer": asn1_x509.Name.load(self.issuer.public_bytes()), "serial_number": self.serial})

    def matches(self, choice_name: str, value: Any) -> bool:  # an asn1crypto rid choice
        """Does an asn1crypto rid (ski or issuer-and-serial) name this key?"""
        if choice_name in ("subject_key_identifier", "r_key_id"):
            ski = value.native if choice_name == "subject_key_identifier" else value["subject_key_identifier"].native
            return self.ski is not None and hmac.compare_digest(ski, self.ski)
        if choice_name == "issuer_and_serial_number" and self.issuer is not None:
            return bool(value["serial_number"].native == self.serial
                        and value["issuer"].dump() == asn1_x509.Name.load(self.issuer.public_bytes()).dump())
        return False


@dataclass(frozen=True)
class KekRecipient:
    """kekri: ``wrap(cek) -> wrapped`` is RFC 3394 AES key wrap under the KEK
    named ``key_id``, of ``kek_size`` octets (16, 24 or 32)."""

    key_id: bytes
    wrap: Callable[[bytes], bytes]
    kek_size: int = 32

    @classmethod
    def with_key(cls, key_id: bytes, kek: bytes) -> "KekRecipient":
        """A KEK held here, in memory (clients, tests)."""
        if len(kek) not in WRAP_FOR_SIZE:
            raise EnvelopeError("a KEK is an AES key of 16, 24 or 32 octets")
        return cls(key_id, lambda cek: aes_key_wrap(kek, cek), len(kek))

    @property
    def wrap_algorithm(self) -> str:
        return WRAP_FOR_SIZE[self.kek_size]


@dataclass(frozen=True)
class KeyTransRecipient:
    """ktri with RSAES-OAEP (MGF1 with the same hash)."""

    public_key: rsa.RSAPublicKey
    rid: RecipientId
    oaep_hash: str = "sha256"


@dataclass(frozen=True)
class KeyAgreeRecipient:
    """kari with ephemeral-static ECDH; the KEK comes from the X9.63 KDF."""

    public_key: ec.EllipticCurvePublicKey
    rid: RecipientId
    wrap_algorithm: str = "aes256_wrap"
    kdf_hash: str = "sha256"
    ukm: bytes | None = None


Recipient = Union[KekRecipient, KeyTransRecipient, KeyAgreeRecipient]


def can_encrypt_to(cert: x509.Certificate) -> bool:
    """RFC 7030 4.4.1.2: a certificate may receive a key if its key usage
    allows key transport (RSA) or key agreement (EC), or is unrestricted."""
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return ku.key_encipherment
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ku.key_agreement
    return False


def recipient_for_certificate(cert: x509.Certificate, *, rid: RecipientId | None = None,
                              wrap_algorithm: str = "aes256_wrap", kdf_hash: str = "sha256",
                              oaep_hash: str = "sha256") -> Recipient:
    """ktri for an RSA certificate, kari for an EC one."""
    rid = rid or RecipientId.from_certificate(cert)
    public_key = cert.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        return KeyTransRecipient(public_key, rid, oaep_hash)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return KeyAgreeRecipient(public_key, rid, wrap_algorithm, kdf_hash)
    raise EnvelopeError("the recipient's key is neither RSA nor EC")


def _oaep_algorithm(hash_name: str) -> cms.KeyEncryptionAlgorithm:
    return cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_oaep", "parameters": algos.RSAESOAEPParams({
        "hash_algorithm": {"algorithm": hash_name},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": hash_name}},
    })})


def _oaep(hash_name: str) -> padding.OAEP:
    h = _HASHES[hash_name]()
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)


def _kdf(shared: bytes, wrap_algorithm: str, kdf_hash: str, ukm: bytes | None) -> bytes:
    size = WRAPS[wrap_algorithm]
    info: dict[str, Any] = {"key_info": {"algorithm": wrap_algorithm}, "supp_pub_info": struct.pack(">I", size * 8)}
    if ukm is not None:
        info["entity_u_info"] = ukm
    return X963KDF(algorithm=_HASHES[kdf_hash](), length=size,
                   sharedinfo=EccCmsSharedInfo(info).dump()).derive(shared)


def _recipient_info(recipient: Recipient, cek: bytes) -> cms.RecipientInfo:
    if isinstance(recipient, KekRecipient):
        return cms.RecipientInfo(name="kekri", value={
            "version": "v4",
            "kekid": {"key_identifier": recipient.key_id},
            "key_encryption_algorithm": {"algorithm": recipient.wrap_algorithm},
            "encrypted_key": recipient.wrap(cek),
        })
    if isinstance(recipient, KeyTransRecipient):
        rid = recipient.rid
        if rid.ski is not None:
            version, rid_value = "v2", cms.RecipientIdentifier(name="subject_key_identifier", value=rid.ski)
        else:
            version, rid_value = "v0", cms.RecipientIdentifier(name="issuer_and_serial_number", value=rid._iasn())
        return cms.RecipientInfo(name="ktri", value={
            "version": version,
            "rid": rid_value,
            "key_encryption_algorithm": _oaep_algorithm(recipient.oaep_hash),
            "encrypted_key": recipient.public_key.encrypt(cek, _oaep(recipient.oaep_hash)),
        })
    if isinstance(recipient, KeyAgreeRecipient):
        if recipient.wrap_algorithm not in WRAPS or recipient.kdf_hash not in ECDH_SCHEMES:
            raise EnvelopeError("unsupported key agreement parameters")
        ephemeral = ec.generate_private_key(recipient.public_key.curve)
        kek = _kdf(ephemeral.exchange(ec.ECDH(), recipient.public_key), recipient.wrap_algorithm,
                   recipient.kdf_hash, recipient.ukm)
        point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                    serialization.PublicFormat.UncompressedPoint)
        rid = recipient.rid
        if rid.ski is not None:
            rid_value = cms.KeyAgreementRecipientIdentifier(name="r_key_id",
                                                            value={"subject_key_identifier": rid.ski})
        else:
            rid_value = cms.KeyAgreementRecipientIdentifier(name="issuer_and_serial_number", value=rid._iasn())
        info = {
            "version": "v3",
            # RFC 5753 3.1.1: originatorKey, id-ecPublicKey with absent parameters.
            "originator": cms.OriginatorIdentifierOrKey(name="originator_key", value=keys.PublicKeyInfo({
                "algorithm": {"algorithm": "ec"}, "public_key": point})),
            "key_encryption_algorithm": cms.KeyEncryptionAlgorithm({
                "algorithm": ECDH_SCHEMES[recipient.kdf_hash],
                "parameters": cms.KeyEncryptionAlgorithm({"algorithm": recipient.wrap_algorithm})}),
            "recipient_encrypted_keys": [{"rid": rid_value, "encrypted_key": aes_key_wrap(kek, cek)}],
        }
        if recipient.ukm is not None:
            info["ukm"] = recipient.ukm
        return cms.RecipientInfo(name="kari", value=info)
    raise TypeError(f"not a recipient: {recipient!r}")


# -- building ----------------------------------------------------------------------


def _encrypt(cipher: str, cek: bytes, plaintext: bytes) -> tuple[dict[str, Any], bytes, bytes | None]:
    """(content-encryption AlgorithmIdentifier, ciphertext, GCM tag or None)."""
    if cipher in CBC_CIPHERS:
        iv = os.urandom(16)
        padder = sym_padding.PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        return {"algorithm": cipher, "parameters": iv}, enc.update(padded) + enc.finalize(), None
    if cipher in GCM_CIPHERS:
        nonce = os.urandom(12)
        sealed = AESGCM(cek).encrypt(nonce, plaintext, None)
        params = GCMParameters({"aes_nonce": nonce, "aes_icvlen": GCM_TAG_LENGTH})
        return {"algorithm": cipher, "parameters": params}, sealed[:-GCM_TAG_LENGTH], sealed[-GCM_TAG_LENGTH:]
    raise EnvelopeError(f"unsupported content encryption {cipher!r}")


def _enveloped_version(infos: list[cms.RecipientInfo], unprotected: bool) -> str:
    # RFC 5652 6.1 (no originatorInfo here, never pwri/ori).
    if not unprotected and all(i.name == "ktri" and i.chosen["version"].native == "v0" for i in infos):
        return "v0"
    return "v2"


def envelope(content_type: str, content: bytes, recipients: Sequence[Recipient], *, cipher: str = "aes256_cbc",
             unprotected_attrs: list[dict[str, Any]] | None = None) -> cms.EnvelopedData | cms.AuthEnvelopedData:
    """The encryption layer around ``content`` (DER of a ``content_type``):
    EnvelopedData for AES-CBC, AuthEnvelopedData for AES-GCM."""
    if not recipients:
        raise EnvelopeError("no recipient")
    if cipher not in CIPHERS:
        raise EnvelopeError(f"unsupported content encryption {cipher!r}")
    cek = os.urandom(CIPHERS[cipher])
    infos = [_recipient_info(r, cek) for r in recipients]
    algorithm, ciphertext, tag = _encrypt(cipher, cek, content)
    eci = {"content_type": content_type, "content_encryption_algorithm": algorithm, "encrypted_content": ciphertext}
    data: dict[str, Any]
    if tag is None:
        data = {"version": _enveloped_version(infos, bool(unprotected_attrs)), "recipient_infos": infos,
                "encrypted_content_info": eci}
        if unprotected_attrs:
            data["unprotected_attrs"] = unprotected_attrs
        return cms.EnvelopedData(data)
    data = {"version": "v0", "recipient_infos": infos, "auth_encrypted_content_info": eci, "mac": tag}
    if unprotected_attrs:
        data["unauth_attrs"] = unprotected_attrs
    return cms.AuthEnvelopedData(data)


def enveloped_data(content_type: str, content: bytes, recipients: Sequence[Recipient], **kwargs: Any) -> bytes:
    """ContentInfo(EnvelopedData) DER (ContentInfo(AuthEnvelopedData) for GCM)."""
    layer = envelope(content_type, content, recipients, **kwargs)
    outer = "enveloped_data" if isinstance(layer, cms.EnvelopedData) else "authenticated_enveloped_data"
    return der(cms.ContentInfo({"content_type": outer, "content": layer}))


def encrypted_data(content_type: str, content: bytes, key: bytes, *, cipher: str | None = None,
                   key_id: bytes | None = None) -> cms.EncryptedData:
    """EncryptedData under a symmetric key both sides hold (RFC 5652 8);
    ``key_id`` goes in the ContentDecryptKeyID unprotected attribute (RFC 6032)."""
    cipher = cipher or {16: "aes128_cbc", 24: "aes192_cbc", 32: "aes256_cbc"}.get(len(key), "")
    if cipher not in CBC_CIPHERS or CBC_CIPHERS[cipher] != len(key):
        raise EnvelopeError("EncryptedData takes AES-CBC with a key of the cipher's size")
    algorithm, ciphertext, _ = _encrypt(cipher, key, content)
    data: dict[str, Any] = {"version": "v0", "encrypted_content_info": {
        "content_type": content_type, "content_encryption_algorithm": algorithm, "encrypted_content": ciphertext}}
    if key_id is not None:
        data["version"] = "v2"
        data["unprotected_attrs"] = [{"type": rfc6032.CONTENT_DECRYPT_KEY_ID, "values": [key_id]}]
    return cms.EncryptedData(data)


def encrypted_key_package(content_type: str, content: bytes, recipients: Sequence[Recipient] = (), *,
                          key: bytes | None = None, key_id: bytes | None = None, cipher: str | None = None,
                          **kwargs: Any) -> bytes:
    """ContentInfo(EncryptedKeyPackage) DER (RFC 6032): ``enveloped`` (or
    ``auth_enveloped`` for GCM) for ``recipients``, or ``encrypted`` under
    ``key`` (named by ``key_id``)."""
    if key is not None:
        if recipients:
            raise EnvelopeError("give recipients or a shared key, not both")
        choice = rfc6032.EncryptedKeyPackage(name="encrypted", value=encrypted_data(
            content_type, content, key, cipher=cipher, key_id=key_id))
    else:
        layer = envelope(content_type, content, recipients, cipher=cipher or "aes256_cbc", **kwargs)
        name = "enveloped" if isinstance(layer, cms.EnvelopedData) else "auth_enveloped"
        choice = rfc6032.EncryptedKeyPackage(name=name, value=layer)
    return der(cms.ContentInfo({"content_type": rfc6032.CONTENT_TYPE, "content": choice}))


# -- opening ------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipientKey:
    """What a recipient holds: a private key (with its certificate or SKI, to
    find its RecipientInfo) and/or a KEK with its identifier."""

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None
    rid: RecipientId | None = None
    kek: bytes | None = None
    kek_id: bytes | None = None

    @classmethod
    def for_certificate(cls, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> "RecipientKey":
        """Matches the certificate's SKI or its issuer and serial number."""
        by_ski = RecipientId.from_certificate(cert)
        return cls(private_key=private_key, rid=RecipientId(ski=by_ski.ski, issuer=cert.issuer,
                                                            serial=cert.serial_number))


@dataclass(frozen=True)
class Opened:
    content_type: str  # asn1crypto name or dotted OID of what was encrypted
    content: bytes  # its DER
    layer: str  # "enveloped", "auth_enveloped" or "encrypted"
    content_encryption: str  # e.g. "aes256_cbc"
    recipient_type: str | None  # "kekri", "ktri", "kari" (None for EncryptedData)
    key_encryption: str | None  # e.g. "aes256_wrap", "rsaes_oaep", or the kari scheme OID


def _unwrap_cek(info: cms.RecipientInfo, key: RecipientKey) -> tuple[bytes, str] | None:
    """The CEK if ``key`` opens this RecipientInfo, else None."""
    ri = info.chosen
    if info.name == "kekri":
        if key.kek is None or key.kek_id is None:
            return None
        if not hmac.compare_digest(ri["kekid"]["key_identifier"].native, key.kek_id):
            return None
        algorithm = ri["key_encryption_algorithm"]["algorithm"].native
        if WRAPS.get(algorithm) != len(key.kek):
            raise EnvelopeError(f"kekri key wrap {algorithm} does not fit the KEK")
        return aes_key_unwrap(key.kek, ri["encrypted_key"].native), algorithm
    if info.name == "ktri":
        if not isinstance(key.private_key, rsa.RSAPrivateKey):
            return None
        if key.rid is not None and not key.rid.matches(ri["rid"].name, ri["rid"].chosen):
            return None
        alg = ri["key_encryption_algorithm"]
        if alg["algorithm"].native != "rsaes_oaep":
            raise EnvelopeError(f"key transport {alg['algorithm'].native} refused (RSAES-OAEP only)")
        params = alg["parameters"]
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf_hash = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
        if hash_name not in _HASHES or mgf_hash not in _HASHES:
            raise EnvelopeError("unsupported RSAES-OAEP hash")
        h = _HASHES[hash_name]()
        label = params["p_source_algorithm"]["parameters"].native or None
        return key.private_key.decrypt(ri["encrypted_key"].native, padding.OAEP(
            mgf=padding.MGF1(_HASHES[mgf_hash]()), algorithm=h, label=label)), "rsaes_oaep"
    if info.name == "kari":
        if not isinstance(key.private_key, ec.EllipticCurvePrivateKey):
            return None
        for rek in ri["recipient_encrypted_keys"]:
            if key.rid is not None and not key.rid.matches(rek["rid"].name, rek["rid"].chosen):
                continue
            scheme = ri["key_encryption_algorithm"]["algorithm"].dotted
            if scheme not in _SCHEME_HASH:
                raise EnvelopeError(f"key agreement scheme {scheme} not supported")
            wrap = cms.KeyEncryptionAlgorithm.load(ri["key_encryption_algorithm"]["parameters"].dump())
            wrap_algorithm = wrap["algorithm"].native
            if wrap_algorithm not in WRAPS:
                raise EnvelopeError(f"key wrap {wrap_algorithm} not supported")
            originator = ri["originator"]
            if originator.name != "originator_key":
                raise EnvelopeError("kari without an originator public key")
            point = originator.chosen["public_key"].native
            peer = ec.EllipticCurvePublicKey.from_encoded_point(key.private_key.curve, point)
            kek = _kdf(key.private_key.exchange(ec.ECDH(), peer), wrap_algorithm, _SCHEME_HASH[scheme],
                       ri["ukm"].native if ri["ukm"].native is not None else None)
            return aes_key_unwrap(kek, rek["encrypted_key"].native), scheme
        return None
    return None


def _decrypt(eci: cms.EncryptedContentInfo, cek: bytes, tag: bytes | None) -> tuple[str, bytes, str]:
    algorithm = eci["content_encryption_algorithm"]
    name = algorithm["algorithm"].native
    ciphertext = eci["encrypted_content"].native
    if ciphertext is None:
        raise EnvelopeError("no encrypted content")
    if name in CBC_CIPHERS:
        if len(cek) != CBC_CIPHERS[name]:
            raise EnvelopeError("content-encryption key of the wrong size")
        dec = Cipher(algorithms.AES(cek), modes.CBC(algorithm["parameters"].native)).decryptor()
        padded = dec.update(ciphertext) + dec.finalize()
        unpadder = sym_padding.PKCS7(128).unpadder()
        plaintext = unpadder.update(padded) + unpadder.finalize()
    elif name in GCM_CIPHERS:
        if tag is None:
            raise EnvelopeError("AES-GCM outside AuthEnvelopedData")
        params = GCMParameters.load(algorithm["parameters"].dump())
        if params["aes_icvlen"].native != len(tag):
            raise EnvelopeError("MAC length does not match the GCM parameters")
        plaintext = AESGCM(cek).decrypt(params["aes_nonce"].native, ciphertext + tag, None)
    else:
        raise EnvelopeError(f"unsupported content encryption {name}")
    return eci["content_type"].native, plaintext, name


def open_layer(layer: cms.EnvelopedData | cms.AuthEnvelopedData | cms.EncryptedData, key: RecipientKey) -> Opened:
    """Decrypt one layer (asn1crypto object) with what the recipient holds."""
    try:
        if isinstance(layer, cms.EncryptedData):
            if key.kek is None:
                raise EnvelopeError("EncryptedData needs the shared key")
            ctype, plaintext, cipher = _decrypt(layer["encrypted_content_info"], key.kek, None)
            return Opened(ctype, plaintext, "encrypted", cipher, None, None)
        auth = isinstance(layer, cms.AuthEnvelopedData)
        eci = layer["auth_encrypted_content_info" if auth else "encrypted_content_info"]
        for info in layer["recipient_infos"]:
            unwrapped = _unwrap_cek(info, key)
            if unwrapped is None:
                continue
            cek, key_encryption = unwrapped
            ctype, plaintext, cipher = _decrypt(eci, cek, layer["mac"].native if auth else None)
            return Opened(ctype, plaintext, "auth_enveloped" if auth else "enveloped", cipher, info.name,
                          key_encryption)
    except (InvalidUnwrap, InvalidTag):
        raise EnvelopeError("decryption failed (wrong key or altered message)") from None
    except EnvelopeError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        raise EnvelopeError(f"unreadable encryption layer: {e}") from None
    raise EnvelopeError("no RecipientInfo for the key given")


def open_content_info(der: bytes, key: RecipientKey) -> Opened:
    """Open ContentInfo(EnvelopedData | AuthEnvelopedData | EncryptedData |
    EncryptedKeyPackage) DER with the recipient's key."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        ctype = info["content_type"].native
        content = info["content"]
        if ctype == rfc6032.CONTENT_TYPE:
            layer = content.chosen
        elif ctype in ("enveloped_data", "authenticated_enveloped_data", "encrypted_data"):
            layer = content
        else:
            raise EnvelopeError(f"not an encryption layer: {ctype}")
        layer.native  # noqa: B018 - parse it all now: malformed input fails here
    except EnvelopeError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        raise EnvelopeError(f"unreadable ContentInfo: {e}") from None
    return open_layer(layer, key)


__all__ = ["CBC_CIPHERS", "CIPHERS", "ECDH_SCHEMES", "GCM_CIPHERS", "WRAPS", "EnvelopeError", "KekRecipient",
           "KeyAgreeRecipient", "KeyTransRecipient", "Opened", "Recipient", "RecipientId", "RecipientKey",
           "encrypted_data", "encrypted_key_package", "envelope", "enveloped_data", "open_content_info",
           "open_layer", "recipient_for_certificate"]
