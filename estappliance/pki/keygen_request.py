"""What a /serverkeygen CSR asks for beyond a certificate (RFC 7030 4.4.1,
RFC 8295 8.1): the key to encrypt the new private key to, the algorithms the
client accepts, and the CMS content type it wants. Read by the server, built
by the client (``build_csr``).

Attributes:

* DecryptKeyIdentifier (RFC 4108, id-aa-decryptKeyID): a symmetric KEK both
  sides know;
* AsymmetricDecryptKeyIdentifier (RFC 7030, id-aa-asymmDecryptKeyID): the
  subject key identifier of the client's encryption key;
* SMIMECapabilities (RFC 8551 2.5.2): acceptable algorithms, most preferred first;
* contentType (PKCS#9): id-ct-KP-encryptedKeyPkg asks for an RFC 6032
  Encrypted Key Package (RFC 8295 8.1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asn1crypto import algos, cms, core, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from .errors import PkiError
from . import envelope
from .asn1 import rfc6032
from .encoding import der

OIDS = {
    "challengePassword": "1.2.840.113549.1.9.7",
    "extensionRequest": "1.2.840.113549.1.9.14",
    "contentType": "1.2.840.113549.1.9.3",
    "smimeCapabilities": "1.2.840.113549.1.9.15",
    "id-aa-decryptKeyID": "1.2.840.113549.1.9.16.2.37",
    "id-aa-asymmDecryptKeyID": "1.2.840.113549.1.9.16.2.54",
    "rsaEncryption": "1.2.840.113549.1.1.1",
    "id-RSAES-OAEP": "1.2.840.113549.1.1.7",
}
# Algorithm names (asn1crypto's) by OID, as SMIMECapabilities lists them.
CONTENT_CIPHERS = {
    "2.16.840.1.101.3.4.1.2": "aes128_cbc", "2.16.840.1.101.3.4.1.22": "aes192_cbc",
    "2.16.840.1.101.3.4.1.42": "aes256_cbc", "2.16.840.1.101.3.4.1.6": "aes128_gcm",
    "2.16.840.1.101.3.4.1.26": "aes192_gcm", "2.16.840.1.101.3.4.1.46": "aes256_gcm",
}
KEY_WRAPS = {"2.16.840.1.101.3.4.1.5": "aes128_wrap", "2.16.840.1.101.3.4.1.25": "aes192_wrap",
             "2.16.840.1.101.3.4.1.45": "aes256_wrap"}
ECDH_SCHEMES = {oid: h for h, oid in envelope.ECDH_SCHEMES.items()}
_WRAP_OIDS = {name: oid for oid, name in KEY_WRAPS.items()}
_CIPHER_OIDS = {name: oid for oid, name in CONTENT_CIPHERS.items()}
DEFAULT_CIPHER = "aes256_cbc"
DEFAULT_WRAP = "aes256_wrap"


class BadKeygenRequest(PkiError):
    """An attribute is malformed, or asks for something that cannot be done."""


class _OctetStrings(core.SetOf):
    _child_spec = core.OctetString


class _ObjectIdentifiers(core.SetOf):
    _child_spec = core.ObjectIdentifier


class _Capability(core.Sequence):
    """SMIMECapability: parameters are kept as they came (ANY)."""

    _fields = [("capability_id", core.ObjectIdentifier), ("parameters", core.Any, {"optional": True})]


class _CapabilityList(core.SequenceOf):
    _child_spec = _Capability


class _Capabilities(core.SetOf):
    _child_spec = _CapabilityList


@dataclass(frozen=True)
class Capability:
    oid: str
    parameters: bytes | None  # DER, when present


@dataclass(frozen=True)
class KeygenAttributes:
    decrypt_key_id: bytes | None = None
    asymmetric_decrypt_key_id: bytes | None = None
    content_types: tuple[str, ...] = ()  # dotted OIDs
    capabilities: tuple[Capability, ...] = ()  # in the client's order of preference

    @property
    def wants_encrypted_key_package(self) -> bool:
        return rfc6032.OIDS["id-ct-KP-encryptedKeyPkg"] in self.content_types

    # -- what the client accepts ------------------------------------------------

    def content_cipher(self, *, allow_gcm: bool) -> str:
        """The first content-encryption algorithm offered that fits (AES-GCM
        only where the structure may be AuthEnvelopedData); AES-256-CBC when
        none is offered."""
        offered = [CONTENT_CIPHERS[c.oid] for c in self.capabilities if c.oid in CONTENT_CIPHERS]
        if not offered:
            return DEFAULT_CIPHER
        for name in offered:
            if name in envelope.CBC_CIPHERS or allow_gcm:
                return name
        raise BadKeygenRequest("SMIMECapabilities offer only AES-GCM, which RFC 7030's EnvelopedData cannot"
                               " carry; offer AES-CBC")

    def kek_wrap(self, kek_size: int) -> str:
        """kekri: the wrap algorithm is fixed by the KEK's size; it must be
        acceptable if the client lists key-wrap algorithms at all."""
        needed = envelope.WRAP_FOR_SIZE[kek_size]
        offered = [KEY_WRAPS[c.oid] for c in self.capabilities if c.oid in KEY_WRAPS]
        if offered and needed not in offered:
            raise BadKeygenRequest(f"the KEK needs {needed}, which SMIMECapabilities does not offer")
        return needed

    def key_agreement(self) -> tuple[str, str]:
        """kari: (key-wrap algorithm, KDF hash) from the capabilities,
        preferring an ECDH scheme entry's own wrap; AES-256 wrap, SHA-256 by default."""
        for c in self.capabilities:
            if c.oid in ECDH_SCHEMES:
                wrap = DEFAULT_WRAP
                if c.parameters:
                    try:
                        named = cms.KeyEncryptionAlgorithm.load(c.parameters)["algorithm"].dotted
                    except ValueError:
                        raise BadKeygenRequest("SMIMECapabilities: unreadable key-wrap parameter") from None
                    if named not in KEY_WRAPS:
                        raise BadKeygenRequest(f"SMIMECapabilities: key wrap {named} is not supported")
                    wrap = KEY_WRAPS[named]
                return wrap, ECDH_SCHEMES[c.oid]
        wraps = [KEY_WRAPS[c.oid] for c in self.capabilities if c.oid in KEY_WRAPS]
        return (wraps[0] if wraps else DEFAULT_WRAP), "sha256"

    def key_transport(self) -> str:
        """ktri: RSAES-OAEP's hash (SHA-256 unless the OAEP entry names
        another); PKCS#1 v1.5 key transport is refused."""
        oaep = [c for c in self.capabilities if c.oid == OIDS["id-RSAES-OAEP"]]
        if oaep:
            if not oaep[0].parameters:
                return "sha256"
            try:
                params = algos.RSAESOAEPParams.load(oaep[0].parameters)
                name = params["hash_algorithm"]["algorithm"].native
            except ValueError:
                raise BadKeygenRequest("SMIMECapabilities: unreadable RSAES-OAEP parameters") from None
            if name not in ("sha256", "sha384", "sha512"):
                raise BadKeygenRequest(f"SMIMECapabilities: RSAES-OAEP with {name} is not offered here;"
                                       " use SHA-256 or stronger")
            return str(name)
        if any(c.oid == OIDS["rsaEncryption"] for c in self.capabilities):
            raise BadKeygenRequest("SMIMECapabilities offer RSA PKCS#1 v1.5 key transport only; this server"
                                   " uses RSAES-OAEP")
        return "sha256"


def _values(attr: Any, spec: type[core.SetOf]) -> Any:  # asn1crypto: a CSR attribute, its single value
    try:
        values = spec.load(attr["values"].dump())
        if spec is _Capabilities:
            for caps in values:
                [(c["capability_id"].dotted, c["parameters"].dump()) for c in caps]
        else:
            values.native  # noqa: B018 - parse now: bad input fails here
    except (ValueError, TypeError) as e:
        raise BadKeygenRequest(f"CSR attribute {attr['type'].dotted} is malformed: {e}") from None
    if len(values) != 1:
        raise BadKeygenRequest(f"CSR attribute {attr['type'].dotted} must have exactly one value")
    return values[0]


def read(der: bytes) -> KeygenAttributes:
    """The /serverkeygen attributes of a DER CSR (others are left to the CSR checks)."""
    try:
        request = _Request.load(der, strict=True)
        items = list(request["info"]["attributes"])
    except (ValueError, TypeError) as e:
        raise BadKeygenRequest(f"not a PKCS#10 request ({e})") from None
    found: dict[str, Any] = {}  # decoded attribute values by OID
    for attr in items:
        oid = attr["type"].dotted
        if oid in found:
            raise BadKeygenRequest(f"CSR attribute {oid} appears twice")
        if oid in (OIDS["id-aa-decryptKeyID"], OIDS["id-aa-asymmDecryptKeyID"]):
            value = _values(attr, _OctetStrings).native
            if not value:
                raise BadKeygenRequest(f"CSR attribute {oid}: empty key identifier")
            found[oid] = value
        elif oid == OIDS["contentType"]:
            found[oid] = (_values(attr, _ObjectIdentifiers).dotted,)
        elif oid == OIDS["smimeCapabilities"]:
            caps = _values(attr, _Capabilities)
            found[oid] = tuple(Capability(c["capability_id"].dotted,
                                          None if isinstance(c["parameters"], core.Void) else c["parameters"].dump())
                               for c in caps)
    return KeygenAttributes(
        decrypt_key_id=found.get(OIDS["id-aa-decryptKeyID"]),
        asymmetric_decrypt_key_id=found.get(OIDS["id-aa-asymmDecryptKeyID"]),
        content_types=found.get(OIDS["contentType"], ()),
        capabilities=found.get(OIDS["smimeCapabilities"], ()),
    )


# -- the client's side: a CSR that asks for all this ------------------------------


def capability(name: str, parameters: core.Asn1Value | None = None) -> Capability:
    """A capability by asn1crypto name (``aes256_cbc``, ``aes256_wrap``,
    ``rsaes_oaep``) or dotted OID (e.g. an ECDH scheme)."""
    oid = _CIPHER_OIDS.get(name) or _WRAP_OIDS.get(name) or {"rsaes_oaep": OIDS["id-RSAES-OAEP"]}.get(name, name)
    return Capability(oid, None if parameters is None else parameters.dump(force=True))


def _attribute(oid: str, value: core.Asn1Value) -> dict[str, Any]:
    return {"type": oid, "values": [value]}


def build_csr(subject: x509.Name, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *, dns_names: tuple[str, ...] = (), challenge_password: str | None = None,
              decrypt_key_id: bytes | None = None, asymmetric_decrypt_key_id: bytes | None = None,
              content_type: str | None = None, capabilities: tuple[Capability, ...] = ()) -> bytes:
    """DER PKCS#10 signed by ``key`` (the server ignores that key: RFC 7030
    4.4.1), carrying the /serverkeygen attributes asked for."""
    attributes: list[dict[str, Any]] = []
    if challenge_password is not None:
        attributes.append(_attribute(OIDS["challengePassword"],
                                     asn1_x509.DirectoryString(name="printable_string", value=challenge_password)))
    if dns_names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names])
        ext = asn1_x509.Extension({"extn_id": "subject_alt_name", "critical": False,
                                   "extn_value": asn1_x509.GeneralNames.load(san.public_bytes())})
        attributes.append(_attribute(OIDS["extensionRequest"], asn1_x509.Extensions([ext])))
    if decrypt_key_id is not None:
        attributes.append(_attribute(OIDS["id-aa-decryptKeyID"], core.OctetString(decrypt_key_id)))
    if asymmetric_decrypt_key_id is not None:
        attributes.append(_attribute(OIDS["id-aa-asymmDecryptKeyID"], core.OctetString(asymmetric_decrypt_key_id)))
    if content_type is not None:
        attributes.append(_attribute(OIDS["contentType"], core.ObjectIdentifier(content_type)))
    if capabilities:
        attributes.append(_attribute(OIDS["smimeCapabilities"], _CapabilityList([
            {"capability_id": c.oid, **({"parameters": core.Any.load(c.parameters)} if c.parameters else {})}
            for c in capabilities])))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    info = _RequestInfo({
        "version": 0,
        "subject": asn1_x509.Name.load(subject.public_bytes()),
        "subject_pk_info": keys.PublicKeyInfo.load(spki),
        "attributes": [{"type": a["type"], "values": [core.Any.load(v.dump()) for v in a["values"]]}
                       for a in attributes],
    })
    tbs = info.dump()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature, algorithm = key.sign(tbs, ec.ECDSA(hashes.SHA256())), "sha256_ecdsa"
    elif isinstance(key, rsa.RSAPrivateKey):
        signature, algorithm = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256()), "sha256_rsa"
    else:
        raise TypeError("the CSR key must be EC or RSA")
    return der(_Request({"info": info, "signature_algorithm": {"algorithm": algorithm}, "signature": signature}))


class _Attribute(core.Sequence):
    _fields = [("type", core.ObjectIdentifier), ("values", cms.SetOfAny)]


class _Attributes(core.SetOf):
    _child_spec = _Attribute


class _RequestInfo(core.Sequence):
    """CertificationRequestInfo with attribute values kept as given (asn1crypto's
    own class insists on its idea of the known attribute types)."""

    _fields = [
        ("version", core.Integer),
        ("subject", asn1_x509.Name),
        ("subject_pk_info", keys.PublicKeyInfo),
        ("attributes", _Attributes, {"implicit": 0}),
    ]


class _Request(core.Sequence):
    _fields = [
        ("info", _RequestInfo),
        ("signature_algorithm", algos.SignedDigestAlgorithm),
        ("signature", core.OctetBitString),
    ]


__all__ = ["BadKeygenRequest", "Capability", "KeygenAttributes", "build_csr", "capability", "read"]
