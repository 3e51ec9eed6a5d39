"""CRMF certificate requests (RFC 4211) as CMC carries them: build one with
its signature proof of possession, read one back and check that proof.

Pure: keys are cryptography objects passed in.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from asn1crypto import algos, core, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PublicKeyTypes

from .certs import load_subject_public_key
from .errors import PkiError
from .asn1 import rfc4211
from .keyids import spki_der
from .encoding import der
from .signeddata import SigningKey

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
           "sha512": hashes.SHA512}
_SAN_TYPES: dict[str, Callable[[str], x509.GeneralName]] = {
    "dns_name": x509.DNSName,
    "rfc822_name": x509.RFC822Name,
    "uniform_resource_identifier": x509.UniformResourceIdentifier,
}


class BadCrmfRequest(PkiError):
    """The CertReqMsg cannot be used; ``fail_info`` names the CMCFailInfo."""

    def __init__(self, reason: str, fail_info: str = "bad_request") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fail_info = fail_info


@dataclass(frozen=True)
class CrmfRequest:
    """What a CertReqMsg asks for, and how it proves possession of the key."""

    cert_req_id: int
    subject: x509.Name
    public_key: CertificatePublicKeyTypes
    san: x509.SubjectAlternativeName | None
    pop: str  # "signature" (checked here), "ra_verified", "key_encipherment", "key_agreement" or "none"


def build(cert_req_id: int, private_key: SigningKey, subject: x509.Name, *,
          san: x509.SubjectAlternativeName | None = None) -> rfc4211.CertReqMsg:
    """A CertReqMsg with subject and public key in the template and a
    signature POP over the DER of the CertRequest (RFC 4211 4.1, no
    poposkInput since the template names both)."""
    spki = spki_der(private_key.public_key())
    template = {"subject": asn1_x509.Name.load(subject.public_bytes()),
                "public_key": keys.PublicKeyInfo.load(spki)}
    if san is not None:
        template["extensions"] = [{"extn_id": "subject_alt_name", "critical": False,
                                   "extn_value": asn1_x509.GeneralNames.load(san.public_bytes())}]
    cert_req = rfc4211.CertRequest({"cert_req_id": cert_req_id, "cert_template": template})
    algorithm, signature = _sign(private_key, cert_req.dump())
    return rfc4211.CertReqMsg({
        "cert_req": cert_req,
        "popo": rfc4211.ProofOfPossession(name="signature", value={
            "algorithm_identifier": algorithm, "signature": signature}),
    })


def read(msg: rfc4211.CertReqMsg, *, check_pop: bool = True) -> CrmfRequest:
    """Read a parsed CertReqMsg; raises BadCrmfRequest (with a CMCFailInfo
    name) when it is unusable or its signature POP does not verify."""
    try:
        cert_req = msg["cert_req"]
        template = cert_req["cert_template"]
        cert_req_id = int(cert_req["cert_req_id"].native)
        public_key = _public_key(template)
        subject = _name(template["subject"]) if template["subject"].native is not None else x509.Name([])
        san = _san(template["extensions"])
        popo = msg["popo"]
        pop = "none" if isinstance(popo, core.Void) or popo.name is None else popo.name
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        if isinstance(e, BadCrmfRequest):
            raise
        raise BadCrmfRequest(f"unreadable CRMF request: {_short(e)}") from None
    if pop == "signature" and check_pop:
        _check_signature_pop(popo.chosen, cert_req, public_key)
    return CrmfRequest(cert_req_id, subject, public_key, san, pop)


def _public_key(template: Any) -> CertificatePublicKeyTypes:
    spki = template["public_key"]
    if isinstance(spki, core.Void) or spki.native is None:
        raise BadCrmfRequest("CRMF template without a public key")
    try:
        return load_subject_public_key(_untagged(spki))
    except (ValueError, UnsupportedAlgorithm) as e:
        raise BadCrmfRequest(f"CRMF template public key unusable: {_short(e)}", "bad_alg") from None


def _untagged(value: core.Asn1Value) -> bytes:
    """The universal encoding of an implicitly tagged field (what is signed
    and what cryptography loads)."""
    return der(value.untag())


def _name(name: asn1_x509.Name) -> x509.Name:
    rdns: list[x509.RelativeDistinguishedName] = []
    for rdn in name.chosen:
        attrs: list[x509.NameAttribute[str]] = []
        for atv in rdn:
            value = atv["value"].native
            if not isinstance(value, str):
                raise BadCrmfRequest("CRMF subject holds a value that is not a string")
            attrs.append(x509.NameAttribute(x509.ObjectIdentifier(atv["type"].dotted), value))
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


def _san(extensions: asn1_x509.Extensions) -> x509.SubjectAlternativeName | None:
    if isinstance(extensions, core.Void) or extensions.native is None:
        return None
    for ext in extensions:
        if ext["extn_id"].native != "subject_alt_name":
            continue
        names: list[x509.GeneralName] = []
        for gn in ext["extn_value"].parsed:
            if gn.name in _SAN_TYPES:
                names.append(_SAN_TYPES[gn.name](gn.native))
            elif gn.name == "ip_address":
                names.append(x509.IPAddress(ipaddress.ip_address(gn.native)))
            else:
                raise BadCrmfRequest(f"subjectAltName type {gn.name} is not supported", "unsupported_ext")
        return x509.SubjectAlternativeName(names)
    return None


def _check_signature_pop(poposk: rfc4211.POPOSigningKey, cert_req: rfc4211.CertRequest,
                         public_key: CertificatePublicKeyTypes) -> None:
    """RFC 4211 4.1: over the CertRequest DER, or over poposkInput when present
    (whose public key must then be the template's)."""
    poposk_input = poposk["poposk_input"]
    if isinstance(poposk_input, core.Void) or poposk_input.native is None:
        signed = der(cert_req)
    else:
        if poposk_input["auth_info"].name != "sender":
            raise BadCrmfRequest("POPOSigningKeyInput with publicKeyMAC is not supported", "pop_failed")
        try:
            given = serialization.load_der_public_key(poposk_input["public_key"].dump())
        except (ValueError, UnsupportedAlgorithm):
            raise BadCrmfRequest("poposkInput public key unusable", "pop_failed") from None
        if spki_der(given) != spki_der(public_key):
            raise BadCrmfRequest("poposkInput names another public key than the template", "pop_failed")
        signed = _untagged(poposk_input)
    if not verify_signature(public_key, poposk["signature"].native, signed, poposk["algorithm_identifier"]):
        raise BadCrmfRequest("CRMF proof-of-possession signature does not verify", "pop_failed")


def verify_signature(public_key: PublicKeyTypes, signature: bytes, data: bytes, algorithm: algos.SignedDigestAlgorithm) -> bool:
    """True if ``signature`` over ``data`` verifies with the algorithm named
    (RSA PKCS#1 v1.5 or PSS, ECDSA, Ed25519, Ed448); BadCrmfRequest(bad_alg)
    for an algorithm we do not take."""
    try:
        kind = algorithm.signature_algo
        digest = None if kind in ("ed25519", "ed448") else _HASHES[algorithm.hash_algo]()
    except (ValueError, KeyError):
        raise BadCrmfRequest("unsupported POP signature algorithm", "bad_alg") from None
    try:
        # digest is None only for the EdDSA kinds.
        if kind == "ecdsa" and digest is not None and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(digest))
        elif kind == "rsassa_pkcs1v15" and digest is not None and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), digest)
        elif kind == "rsassa_pss" and digest is not None and isinstance(public_key, rsa.RSAPublicKey):
            salt = algorithm["parameters"]["salt_length"].native
            public_key.verify(signature, data, padding.PSS(padding.MGF1(digest), salt), digest)
        elif kind == "ed25519" and isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        elif kind == "ed448" and isinstance(public_key, ed448.Ed448PublicKey):
            public_key.verify(signature, data)
        else:
            raise BadCrmfRequest("POP signature algorithm does not fit the key", "bad_alg")
    except InvalidSignature:
        return False
    return True


def _sign(private_key: SigningKey, data: bytes) -> tuple[dict[str, str], bytes]:
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        name = {384: "sha384", 521: "sha512"}.get(private_key.key_size, "sha256")
        return {"algorithm": f"{name}_ecdsa"}, private_key.sign(data, ec.ECDSA(_HASHES[name]()))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return {"algorithm": "sha256_rsa"}, private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return {"algorithm": "ed25519"}, private_key.sign(data)
    raise TypeError("unsupported key type for a CRMF POP")


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:80]


__all__ = ["BadCrmfRequest", "CrmfRequest", "build", "read", "verify_signature"]
