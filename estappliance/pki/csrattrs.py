"""CSR Attributes (RFC 7030 4.5, RFC 8951): what we ask of a CSR, and how a
client reads such a list (ignoring what it does not know)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asn1crypto import core, x509

from .errors import PkiError
from .asn1.rfc7030 import OIDS, Attribute, AttrOrOID, CsrAttrs
from .asn1.rfc9908 import OIDS as RFC9908_OIDS
from .encoding import der

if TYPE_CHECKING:
    from .csrtemplate import CsrTemplate

TEMPLATE_OID = RFC9908_OIDS["id-aa-certificationRequestInfoTemplate"]

_CURVES = {"ec-p256": "secp256r1", "ec-p384": "secp384r1", "ec-p521": "secp521r1"}
_EC_SIGNATURE = {"ec-p256": "ecdsa-with-SHA256", "ec-p384": "ecdsa-with-SHA384", "ec-p521": "ecdsa-with-SHA512"}
_EXTENSIONS = {"subjectAltName": OIDS["subjectAltName"]}


class BadCsrAttrs(PkiError):
    """The bytes are not a CsrAttrs SEQUENCE."""


def build(*, key_type: str | None, pop_linking: bool, required_extensions: Sequence[str] = (),
          extra: Sequence[Attribute] = ()) -> bytes:
    """DER CsrAttrs: challengePassword (linking), the key type and its curve or
    size, the extensions the profile requires, and the signature algorithm;
    then ``extra`` Attributes (the CSR templates, pki.csrtemplate)."""
    items: list[AttrOrOID] = []
    if pop_linking:
        items.append(AttrOrOID(name="oid", value=OIDS["challengePassword"]))
    signature = None
    if key_type in _CURVES:
        items.append(_attr(OIDS["id-ecPublicKey"], [core.ObjectIdentifier(OIDS[_CURVES[key_type]])]))
        signature = _EC_SIGNATURE[key_type]
    elif key_type and key_type.startswith("rsa"):
        items.append(_attr(OIDS["rsaEncryption"], [core.Integer(int(key_type[3:]))]))
        signature = "sha256WithRSAEncryption"
    if required_extensions:
        # RFC 7030 4.5.2's own example lists the wanted extensions as bare OIDs.
        items.append(_attr(OIDS["extensionRequest"],
                           [core.ObjectIdentifier(_EXTENSIONS[e]) for e in required_extensions]))
    if signature:
        items.append(AttrOrOID(name="oid", value=OIDS[signature]))
    items.extend(AttrOrOID(name="attribute", value=a) for a in extra)
    return der(CsrAttrs(items))


def _attr(oid: str, values: Sequence[core.Asn1Value]) -> AttrOrOID:
    return AttrOrOID(name="attribute", value=Attribute({"type": oid, "values": [core.Any(v) for v in values]}))


@dataclass
class CsrHints:
    """What a client takes from CsrAttrs; anything unknown is ignored."""

    challenge_password: bool = False
    key_type: str | None = None
    signature_algorithm: str | None = None
    extensions: set[str] = field(default_factory=set)
    oids: list[str] = field(default_factory=list)
    attributes: dict[str, list[bytes]] = field(default_factory=dict)
    template: CsrTemplate | None = None  # an RFC 9908 template when the server sent one


def parse(der: bytes) -> CsrHints:
    try:
        parsed = CsrAttrs.load(der, strict=True)
        items = [(item.name, item.chosen) for item in parsed]
    except (ValueError, TypeError) as e:
        raise BadCsrAttrs(f"not a CsrAttrs sequence: {e}") from None
    hints = CsrHints()
    names = {v: k for k, v in OIDS.items()}
    curves = {OIDS[c]: k for k, c in _CURVES.items()}
    for kind, value in items:
        if kind == "oid":
            oid = value.dotted
            hints.oids.append(oid)
            if oid == OIDS["challengePassword"]:
                hints.challenge_password = True
            elif names.get(oid, "").startswith(("ecdsa-with", "sha")):
                hints.signature_algorithm = names[oid]
            continue
        oid = value["type"].dotted
        raw_values = [v.dump() for v in value["values"]]
        hints.attributes[oid] = raw_values
        if oid == TEMPLATE_OID and len(raw_values) == 1:
            from .csrtemplate import BadTemplate, from_der
            try:
                hints.template = from_der(raw_values[0])
            except BadTemplate:
                pass  # one we cannot read is one we ignore, as any attribute
            continue
        try:
            if oid == OIDS["id-ecPublicKey"] and raw_values:
                hints.key_type = curves.get(core.ObjectIdentifier.load(raw_values[0]).dotted)
            elif oid == OIDS["rsaEncryption"] and raw_values:
                hints.key_type = f"rsa{core.Integer.load(raw_values[0]).native}"
            elif oid == OIDS["extensionRequest"]:
                for raw in raw_values:
                    if raw[:1] == b"\x06":  # RFC 7030's example: bare OIDs
                        hints.extensions.add(core.ObjectIdentifier.load(raw).dotted)
                    else:  # the later clarification: an Extensions structure
                        for ext in x509.Extensions.load(raw):
                            hints.extensions.add(ext["extn_id"].dotted)
        except (ValueError, TypeError):
            continue  # an attribute we cannot read is one we ignore
    return hints
