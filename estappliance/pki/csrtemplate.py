"""CSR templates: RFC 9908's CertificationRequestInfoTemplate and the
RFC 8295 Appendix B form (a pKCS7PDU attribute carrying a PKIData with one
CSR), both rendered from one model, read back, filled in by a client, and
used by the server to refuse a CSR that contradicts them.

The model: subject RDNs with a value (use it as is) or without (the client
fills it in), the key type (absent: no requirement), and extensions with a
value (use it) or without (the client supplies one, e.g. subjectAltName).
Pure: no token, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, core, csr as asn1_csr, keys, x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtensionOID

from .errors import PkiError
from .asn1.rfc5272 import PKIData, ReqSequence, TaggedCertificationRequest, TaggedRequest
from .asn1.rfc7030 import OIDS as RFC7030_OIDS, Attribute
from .asn1.rfc9908 import OIDS, CertificationRequestInfoTemplate, ExtensionReqTemplate, ExtensionTemplate

PKCS7_PDU = "1.2.840.113549.1.9.25.5"  # RFC 2985 pkcs-9-at-pkcs7PDU, RFC 8295 Appendix B
_CURVES = {"ec-p256": "secp256r1", "ec-p384": "secp384r1", "ec-p521": "secp521r1"}
_KEY_TYPES = {v: k for k, v in _CURVES.items()}
_RDN_NAMES = {"CN": "2.5.4.3", "O": "2.5.4.10", "OU": "2.5.4.11", "C": "2.5.4.6", "L": "2.5.4.7", "ST": "2.5.4.8",
              "serialNumber": "2.5.4.5", "emailAddress": "1.2.840.113549.1.9.1", "DC": "0.9.2342.19200300.100.1.25",
              "UID": "0.9.2342.19200300.100.1.1"}


class BadTemplate(PkiError):
    """The bytes are not a template we can read."""


@dataclass(frozen=True)
class RdnSlot:
    oid: str
    value: str | None  # None: the client fills it in

    @property
    def name(self) -> str:
        return next((k for k, v in _RDN_NAMES.items() if v == self.oid), self.oid)


@dataclass(frozen=True)
class ExtensionSlot:
    oid: str
    critical: bool
    value: bytes | None  # DER of the extension value; None: the client supplies it

    @property
    def name(self) -> str:
        try:
            return x509.ObjectIdentifier(self.oid)._name
        except Exception:
            return self.oid


@dataclass(frozen=True)
class CsrTemplate:
    subject: tuple[RdnSlot, ...] | None = None  # None: no requirement on the subject
    key_type: str | None = None  # "ec-p256" ... "rsa3072"; None: no requirement
    extensions: tuple[ExtensionSlot, ...] = ()


def rdn_oid(name: str) -> str:
    """'CN', 'OU', ... or a dotted OID."""
    if name in _RDN_NAMES:
        return _RDN_NAMES[name]
    if name.replace(".", "").isdigit():
        return name
    raise ValueError(f"unknown RDN type {name!r}")


# -- rendering ----------------------------------------------------------------------------

def _rdn_value(oid: str, value: str) -> core.Any:
    """The attribute value as X.509 names encode it (PrintableString for C, UTF8String else)."""
    der = x509.Name([x509.NameAttribute(x509.ObjectIdentifier(oid), value)]).public_bytes()
    return core.Any.load(asn1_x509.Name.load(der).chosen[0][0]["value"].dump())


def _algorithm(key_type: str) -> tuple[keys.PublicKeyAlgorithm, bytes | None]:
    if key_type in _CURVES:
        return keys.PublicKeyAlgorithm({"algorithm": "ec", "parameters": keys.ECDomainParameters(
            name="named", value=_CURVES[key_type])}), None
    bits = int(key_type.removeprefix("rsa"))
    # RFC 9908 3.4: the RSA size is told by a placeholder public key of that modulus length.
    placeholder = keys.RSAPublicKey({"modulus": (1 << (bits - 1)) | 1, "public_exponent": 65537})
    return keys.PublicKeyAlgorithm({"algorithm": "rsa", "parameters": core.Null()}), placeholder.dump()


def _extension_attribute(extensions: tuple[ExtensionSlot, ...]) -> Attribute:
    """id-ExtensionReq when every value is given, else id-aa-extensionReqTemplate (RFC 9908 3.4)."""
    if all(e.value is not None for e in extensions):
        value = asn1_x509.Extensions([asn1_x509.Extension({
            "extn_id": e.oid, "critical": e.critical, "extn_value": core.ParsableOctetString(e.value)})
            for e in extensions])
        return Attribute({"type": RFC7030_OIDS["extensionRequest"], "values": [core.Any.load(value.dump())]})
    value = ExtensionReqTemplate([ExtensionTemplate({
        "extn_id": e.oid, "critical": e.critical, **({"extn_value": e.value} if e.value is not None else {})})
        for e in extensions])
    return Attribute({"type": OIDS["id-aa-extensionReqTemplate"], "values": [core.Any.load(value.dump())]})


def to_asn1(template: CsrTemplate) -> CertificationRequestInfoTemplate:
    fields = {"version": 0, "attributes": []}
    if template.subject is not None:
        fields["subject"] = ("rdnSequence", [[{"type": s.oid, **({"value": _rdn_value(s.oid, s.value)}
                                                                 if s.value is not None else {})}]
                                             for s in template.subject])
    if template.key_type is not None:
        algorithm, public_key = _algorithm(template.key_type)
        fields["subject_pk_info"] = {"algorithm": algorithm, **({"subject_public_key": core.OctetBitString(
            public_key)} if public_key is not None else {})}
    if template.extensions:
        fields["attributes"] = [_extension_attribute(template.extensions)]
    return CertificationRequestInfoTemplate(fields)


def rfc9908_attribute(template: CsrTemplate) -> Attribute:
    """The CsrAttrs item: Attribute { id-aa-certificationRequestInfoTemplate, { template } }."""
    return Attribute({"type": OIDS["id-aa-certificationRequestInfoTemplate"],
                      "values": [core.Any.load(to_asn1(template).dump())]})


def rfc8295_attribute(template: CsrTemplate) -> Attribute:
    """The same template as RFC 8295 Appendix B has it: pKCS7PDU { ContentInfo
    { id-cct-PKIData, PKIData { reqSequence { tcr { 0, CertificationRequest } } } } }.
    That form has no empty RDN or key: an RDN the client fills in carries an
    empty UTF8String, the key an empty BIT STRING, the signature too."""
    subject = []
    for s in template.subject or ():
        value = _rdn_value(s.oid, s.value) if s.value is not None else core.Any.load(core.UTF8String("").dump())
        subject.append([asn1_x509.NameTypeAndValue({"type": s.oid, "value": value})])
    if template.key_type is not None:
        algorithm, public_key = _algorithm(template.key_type)
    else:
        algorithm, public_key = keys.PublicKeyAlgorithm({"algorithm": "ec", "parameters": keys.ECDomainParameters(
            name="named", value="secp256r1")}), None
    attributes = []
    given = tuple(e for e in template.extensions if e.value is not None)
    if given:
        ext = _extension_attribute(given)
        attributes.append({"type": ext["type"].dotted, "values": [asn1_x509.Extensions.load(ext["values"][0].dump())]})
    info = asn1_csr.CertificationRequestInfo({
        "version": "v1",
        "subject": asn1_x509.Name(name="", value=asn1_x509.RDNSequence(subject)),
        "subject_pk_info": {"algorithm": algorithm, "public_key": public_key or b""},
        "attributes": attributes,
    })
    request = asn1_csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": "sha256_ecdsa" if template.key_type in (None, *_CURVES)
                                else "sha256_rsa"},
        "signature": b"",
    })
    pki_data = PKIData({"control_sequence": [], "req_sequence": ReqSequence([TaggedRequest(
        name="tcr", value=TaggedCertificationRequest({"body_part_id": 0, "certification_request": request}))]),
        "cms_sequence": [], "other_msg_sequence": []})
    content = cms.ContentInfo({"content_type": "pki_data", "content": pki_data})
    return Attribute({"type": PKCS7_PDU, "values": [core.Any.load(content.dump())]})


# -- reading --------------------------------------------------------------------------------

def _text(raw: core.Any) -> str:
    text: str = asn1_x509.DirectoryString.load(raw.dump()).native
    return text


def _extensions_from(attributes: Any) -> tuple[ExtensionSlot, ...]:  # asn1crypto CRIAttributes
    out: list[ExtensionSlot] = []
    for attr in attributes:
        oid = attr["type"].dotted
        if oid not in (OIDS["id-aa-extensionReqTemplate"], RFC7030_OIDS["extensionRequest"]):
            continue
        if len(attr["values"]) != 1:
            raise BadTemplate("an extension request attribute holds exactly one value")
        raw = attr["values"][0].dump()
        if oid == OIDS["id-aa-extensionReqTemplate"]:
            for e in ExtensionReqTemplate.load(raw):
                value = e["extn_value"]
                out.append(ExtensionSlot(e["extn_id"].dotted, bool(e["critical"].native),
                                         None if isinstance(value, core.Void) else value.native))
        else:
            for e in asn1_x509.Extensions.load(raw):
                out.append(ExtensionSlot(e["extn_id"].dotted, bool(e["critical"].native),
                                         e["extn_value"].contents))
    return tuple(out)


def from_der(der: bytes) -> CsrTemplate:
    """A CertificationRequestInfoTemplate (the attribute's value) as the model."""
    try:
        t = CertificationRequestInfoTemplate.load(der, strict=True)
        if t["version"].native != 0:
            raise BadTemplate("version must be v1 (0)")
        subject = None
        if not isinstance(t["subject"], core.Void):
            subject = tuple(RdnSlot(a["type"].dotted, None if isinstance(a["value"], core.Void) else _text(a["value"]))
                            for rdn in t["subject"].chosen for a in rdn)
        key_type = None
        if not isinstance(t["subject_pk_info"], core.Void):
            alg = t["subject_pk_info"]["algorithm"]
            if alg["algorithm"].native == "ec":
                key_type = _KEY_TYPES.get(alg["parameters"].chosen.native)
            elif alg["algorithm"].native == "rsa":
                placeholder = t["subject_pk_info"]["subject_public_key"]
                bits = keys.RSAPublicKey.load(placeholder.native)["modulus"].native.bit_length() \
                    if not isinstance(placeholder, core.Void) else 2048
                key_type = f"rsa{bits}"
        kinds = [a["type"].dotted for a in t["attributes"]]
        if kinds.count(OIDS["id-aa-extensionReqTemplate"]) > 1 or (
                OIDS["id-aa-extensionReqTemplate"] in kinds and RFC7030_OIDS["extensionRequest"] in kinds):
            raise BadTemplate("at most one extension request (template) attribute")
        return CsrTemplate(subject, key_type, _extensions_from(t["attributes"]))
    except BadTemplate:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise BadTemplate(f"not a CertificationRequestInfoTemplate: {e}") from None


# -- the client fills it in -----------------------------------------------------------------

def key_type_of(public_key: PublicKeyTypes) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}.get(public_key.curve.name,
                                                                                            public_key.curve.name)
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa{public_key.key_size}"
    return type(public_key).__name__


def fill(template: CsrTemplate, subject: x509.Name, *, dns_names: tuple[str, ...] = ()) -> x509.CertificateSigningRequestBuilder:
    """A CSR builder that follows the template: its RDNs in its order (values
    given by the server as they are, the others from ``subject``), its
    extensions (a subjectAltName it leaves open from ``dns_names``).
    Raises ValueError naming what the template asks and was not given."""
    builder = x509.CertificateSigningRequestBuilder()
    if template.subject is None:
        builder = builder.subject_name(subject)
    else:
        attrs: list[x509.NameAttribute[str | bytes]] = []
        for slot in template.subject:
            value: str | bytes | None = slot.value
            if value is None:
                mine = subject.get_attributes_for_oid(x509.ObjectIdentifier(slot.oid))
                if not mine:
                    raise ValueError(f"the server's CSR template asks for {slot.name} in the subject")
                value = mine[0].value
            attrs.append(x509.NameAttribute(x509.ObjectIdentifier(slot.oid), value))
        builder = builder.subject_name(x509.Name(attrs))
    for ext in template.extensions:
        oid = x509.ObjectIdentifier(ext.oid)
        if ext.value is not None:
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, ext.value), critical=ext.critical)
        elif oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME:
            if not dns_names:
                raise ValueError("the server's CSR template asks for a subjectAltName (give --dns)")
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                                            critical=ext.critical)
        else:
            raise ValueError(f"the server's CSR template asks for a {ext.name} extension this client cannot fill in")
    if template.subject is not None and dns_names and not any(
            e.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string for e in template.extensions):
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), False)
    return builder


# -- the server checks a CSR against it -------------------------------------------------------

def contradiction(csr: x509.CertificateSigningRequest, template: CsrTemplate) -> str | None:
    """Why the CSR contradicts a part of the template the CA holds to, or
    None. An RDN or extension the template fixes may be left out (the CA sets
    it) but not given another value; one it leaves to the client must be there."""
    for slot in template.subject or ():
        mine = [a.value for a in csr.subject.get_attributes_for_oid(x509.ObjectIdentifier(slot.oid))]
        if slot.value is None and not mine:
            return f"the CSR subject lacks {slot.name}, which the CSR template asks for"
        if slot.value is not None and mine and mine != [slot.value]:
            return f"CSR subject {slot.name}={mine[0]!r} contradicts the CSR template's {slot.value!r}"
    if template.key_type is not None:
        key_type = key_type_of(csr.public_key())
        if key_type != template.key_type:
            return f"CSR key type {key_type} contradicts the CSR template's {template.key_type}"
    for ext_slot in template.extensions:
        try:
            ext = csr.extensions.get_extension_for_oid(x509.ObjectIdentifier(ext_slot.oid))
        except x509.ExtensionNotFound:
            if ext_slot.value is None:
                return f"the CSR lacks the {ext_slot.name} extension, which the CSR template asks for"
            continue
        if ext_slot.value is not None:
            value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else ext.value.public_bytes()
            if value != ext_slot.value:
                return f"CSR {ext_slot.name} contradicts the CSR template's value"
    return None
