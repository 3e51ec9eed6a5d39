"""RFC 7030 CSR Attributes, as fixed by RFC 8951 (module id-mod-est-2019)."""
from __future__ import annotations

from asn1crypto import core

OIDS = {
    "challengePassword": "1.2.840.113549.1.9.7",
    "extensionRequest": "1.2.840.113549.1.9.14",
    "id-ecPublicKey": "1.2.840.10045.2.1",
    "rsaEncryption": "1.2.840.113549.1.1.1",
    "secp256r1": "1.2.840.10045.3.1.7",
    "secp384r1": "1.3.132.0.34",
    "secp521r1": "1.3.132.0.35",
    "ecdsa-with-SHA256": "1.2.840.10045.4.3.2",
    "ecdsa-with-SHA384": "1.2.840.10045.4.3.3",
    "ecdsa-with-SHA512": "1.2.840.10045.4.3.4",
    "sha256WithRSAEncryption": "1.2.840.113549.1.1.11",
    "sha384WithRSAEncryption": "1.2.840.113549.1.1.12",
    "sha512WithRSAEncryption": "1.2.840.113549.1.1.13",
    "subjectAltName": "2.5.29.17",
}


class SetOfAny(core.SetOf):
    _child_spec = core.Any


class Attribute(core.Sequence):
    """CMS Attribute with values left undecoded (we ignore types we do not know)."""

    _fields = [
        ("type", core.ObjectIdentifier),
        ("values", SetOfAny),
    ]


class AttrOrOID(core.Choice):
    _alternatives = [
        ("oid", core.ObjectIdentifier),
        ("attribute", Attribute),
    ]


class CsrAttrs(core.SequenceOf):
    _child_spec = AttrOrOID
