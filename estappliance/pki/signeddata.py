"""CMS SignedData (RFC 5652) over any content type: build and verify.

Pure: signing goes through a cryptography private-key object passed in (a
token-backed one in the service), so this module never sees a key.
"""
from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from asn1crypto import cms, core, parser
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from .errors import PkiError
from .keyids import key_identifier
from .encoding import der

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512, "sha1": hashes.SHA1}


# What signs here: a cryptography key object (token-backed in the service).
SigningKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey]
# A signed attribute as asn1crypto takes it: {"type": name or OID, "values": [...]}.
AttributeDict = dict[str, Any]


class BadSignedData(PkiError):
    """Not a SignedData, or one whose signature does not hold."""


def register_content_type(name: str, oid: str, spec: type[core.Asn1Value]) -> None:
    """Teach asn1crypto a content type, in all three of its maps."""
    cms.ContentType._map[oid] = name
    cms.ContentType._reverse_map = None
    cms.ContentInfo._oid_specs[name] = spec
    cms.EncapsulatedContentInfo._oid_specs[name] = spec


def register_attribute(name: str, oid: str, spec: type[core.Asn1Value]) -> None:
    """Teach asn1crypto a CMS attribute type (its values decode as ``spec``)."""
    cms.CMSAttributeType._map[oid] = name
    cms.CMSAttributeType._reverse_map = None
    cms.CMSAttribute._oid_specs[name] = spec


def _digest_name(key: SigningKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {384: "sha384", 521: "sha512"}.get(key.key_size, "sha256")
    return "sha256"


def _signature_algorithm(key: SigningKey, digest: str) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"algorithm": f"{digest}_ecdsa"}
    if isinstance(key, rsa.RSAPrivateKey):
        return {"algorithm": f"{digest}_rsa"}
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return {"algorithm": "ed25519"}
    raise TypeError("unsupported signing key")


def _sign(key: SigningKey, data: bytes, digest: str) -> bytes:
    h = _HASHES[digest]()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(h))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), h)
    return key.sign(data)


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def sign(content_type: str, content: bytes | core.Asn1Value, key: SigningKey, signer_cert: x509.Certificate, *,
         certificates: list[x509.Certificate] | None = None, signed_attrs: list[AttributeDict] | None = None,
         use_ski: bool = True, signing_time: datetime.datetime | Literal[False] | None = None,
         detached: bool = False, crls: list[bytes] | None = None) -> bytes:
    """ContentInfo(SignedData) DER with one signer.

    ``content`` is the eContent: bytes (DER of the inner structure) or an
    asn1crypto value of the registered content type. Signed attributes always
    hold contentType and messageDigest (plus signingTime unless ``None`` is
    wanted: pass ``signing_time=False``), then ``signed_attrs``. ``crls``
    (DER CertificateLists) go in the SignedData crls field.
    """
    raw = content if isinstance(content, bytes) else der(content)
    digest = _digest_name(key)
    attrs: list[AttributeDict] = [
        {"type": "content_type", "values": [content_type]},
        {"type": "message_digest", "values": [hashlib.new(digest, raw).digest()]},
    ]
    if signing_time is not False:
        when = signing_time or datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        attrs.append({"type": "signing_time", "values": [cms.Time(name="utc_time", value=when)
                                                         if when.year < 2050 else
                                                         cms.Time(name="generalized_time", value=when)]})
    attrs += signed_attrs or []
    signed = cms.CMSAttributes(attrs)
    signature = _sign(key, signed.dump(), digest)  # over the DER SET OF, RFC 5652 5.4
    if use_ski:
        sid = cms.SignerIdentifier(name="subject_key_identifier", value=key_identifier(signer_cert))
    else:
        cert = _asn1_cert(signer_cert)
        sid = cms.SignerIdentifier(name="issuer_and_serial_number", value={
            "issuer": cert.issuer, "serial_number": cert.serial_number})
    signer_info = cms.SignerInfo({
        "version": "v3" if use_ski else "v1",
        "sid": sid,
        "digest_algorithm": {"algorithm": digest},
        "signed_attrs": signed,
        "signature_algorithm": _signature_algorithm(key, digest),
        "signature": signature,
    })
    # RFC 5652 5.1: v3 when a signer uses SKI or the content is not id-data.
    version = "v3" if use_ski or content_type != "data" else "v1"
    encap: Any = {"content_type": content_type}  # a dict, or the parsed value for a CHOICE
    if not detached:
        # asn1crypto reads a v1 SignedData as PKCS#7, whose id-data is an OctetString.
        encap["content"] = core.OctetString(raw) if version == "v1" else core.ParsableOctetString(raw)
        spec = cms.EncapsulatedContentInfo._oid_specs.get(cms.ContentType(content_type).native)
        if isinstance(spec, type) and issubclass(spec, core.Choice):
            # asn1crypto cannot set a CHOICE (e.g. EncryptedKeyPackage) from octets; it can parse one.
            encap = cms.EncapsulatedContentInfo.load(parser.emit(0, 1, 16, cms.ContentType(content_type).dump()
                                                                 + core.ParsableOctetString(raw, explicit=0).dump()))
    sd: dict[str, Any] = {
        "version": version,
        "digest_algorithms": [{"algorithm": digest}],
        "encap_content_info": encap,
        "signer_infos": [signer_info],
    }
    certs = certificates if certificates is not None else [signer_cert]
    if certs:
        sd["certificates"] = [_asn1_cert(c) for c in certs]
    if crls:
        sd["crls"] = [cms.RevocationInfoChoice(name="crl", value=asn1_crl.CertificateList.load(c)) for c in crls]
    return der(cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(sd)}))


@dataclass(frozen=True)
class Verified:
    content_type: str  # dotted OID or asn1crypto name
    content: bytes  # the eContent octets (DER of the inner structure)
    signer: x509.Certificate | None  # None: verified with one of the given public_keys
    signed_attrs: cms.CMSAttributes
    public_key: PublicKeyTypes | None = None  # the key that verified

    @property
    def signer_certificate(self) -> x509.Certificate:
        """The signer's certificate: always found when verify() was given no public_keys."""
        if self.signer is None:
            raise BadSignedData("signed by a bare public key, not a certificate")
        return self.signer


def verify(der: bytes, candidates: list[x509.Certificate] | None = None,
           public_keys: Sequence[PublicKeyTypes] = ()) -> Verified:
    """Check the (first) signature of a SignedData; the signer certificate is
    found among ``candidates`` or the certificates the message carries. The
    caller decides whether that signer is one it trusts. ``public_keys`` are
    tried when no certificate names the signer (a CMC request signed by the
    key it asks a certificate for, RFC 5272 3.2.1.3.1)."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise BadSignedData("not a SignedData")
        sd = info["content"]
        encap = sd["encap_content_info"]
        content_type = encap["content_type"].native
        if isinstance(encap["content"], core.Void):  # not .native: that would parse the whole content
            raise BadSignedData("SignedData without content")
        content = encap["content"].__bytes__()
        if not len(sd["signer_infos"]):
            raise BadSignedData("SignedData without a signer")
        si = sd["signer_infos"][0]
        carried = [x509.load_der_x509_certificate(c.chosen.dump()) for c in sd["certificates"]
                   if c.name == "certificate"] if not isinstance(sd["certificates"], core.Void) else []
        try:
            signer = _find_signer(si["sid"], [*(candidates or []), *carried])
            signer.subject, signer.issuer  # noqa: B018 - parsed lazily: a name cryptography cannot read fails here
            keys: list[PublicKeyTypes] = [signer.public_key()]
        except BadSignedData:
            if not public_keys:
                raise
            signer, keys = None, list(public_keys)
        digest = si["digest_algorithm"]["algorithm"].native
        signed_attrs = si["signed_attrs"]
        if isinstance(signed_attrs, core.Void) or not len(signed_attrs):
            raise BadSignedData("SignedData without signed attributes")
        attrs = {a["type"].native: a["values"] for a in signed_attrs}
        if attrs.get("content_type") is None or attrs["content_type"][0].native != content_type:
            raise BadSignedData("contentType attribute does not match")
        if digest not in _HASHES or attrs.get("message_digest") is None or \
                attrs["message_digest"][0].native != hashlib.new(digest, content).digest():
            raise BadSignedData("messageDigest does not match the content")
        to_check = b"\x31" + signed_attrs.dump()[1:]  # [0] IMPLICIT back to SET OF
        for i, key in enumerate(keys):
            try:
                _verify_signature(key, si["signature"].native, to_check, digest, si["signature_algorithm"])
                break
            except BadSignedData:
                if i == len(keys) - 1:
                    raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, UnsupportedAlgorithm,
            x509.InvalidVersion) as e:
        # asn1crypto's AttributeError on odd types; cryptography's refusals of a carried certificate.
        if isinstance(e, BadSignedData):
            raise
        raise BadSignedData(f"unreadable SignedData: {e}") from None
    return Verified(content_type, content, signer, signed_attrs, key)


def _find_signer(sid: cms.SignerIdentifier, certs: list[x509.Certificate]) -> x509.Certificate:
    for cert in certs:
        if sid.name == "subject_key_identifier":
            if sid.chosen.native == key_identifier(cert):
                return cert
        else:
            iasn = sid.chosen
            if iasn["serial_number"].native == cert.serial_number and \
                    iasn["issuer"].dump() == _asn1_cert(cert).issuer.dump():
                return cert
    raise BadSignedData("signer certificate not found")


def _verify_signature(public_key: PublicKeyTypes, signature: bytes, data: bytes, digest: str,
                      algorithm: cms.SignedDigestAlgorithm) -> None:
    h = _HASHES[digest]()
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(h))
        elif isinstance(public_key, rsa.RSAPublicKey):
            if algorithm["algorithm"].native == "rsassa_pss":
                params = algorithm["parameters"]
                salt = params["salt_length"].native
                public_key.verify(signature, data, padding.PSS(padding.MGF1(h), salt), h)
            else:
                public_key.verify(signature, data, padding.PKCS1v15(), h)
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            raise BadSignedData("unsupported signer key type")
    except InvalidSignature:
        raise BadSignedData("signature does not verify") from None


__all__ = ["BadSignedData", "Verified", "register_attribute", "register_content_type", "sign", "verify"]
