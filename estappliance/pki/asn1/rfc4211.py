"""RFC 4211 CRMF (module PKIXCRMF-2005), the part CMC carries: CertReqMsg
with its certificate template and proof of possession, in asn1crypto style.

The module is IMPLICIT TAGS, but a tag on a CHOICE type (Name, Time,
GeneralName, POPOPrivKey) is explicit all the same (X.680 31.2.7): those
fields say ``explicit`` here.
"""
from __future__ import annotations

from asn1crypto import algos, cms, core, keys, x509

OIDS = {
    "id-pkip": "1.3.6.1.5.5.7.5",
    "id-regCtrl-regToken": "1.3.6.1.5.5.7.5.1.1",
    "id-regCtrl-authenticator": "1.3.6.1.5.5.7.5.1.2",
    "id-regCtrl-pkiPublicationInfo": "1.3.6.1.5.5.7.5.1.3",
    "id-regCtrl-pkiArchiveOptions": "1.3.6.1.5.5.7.5.1.4",
    "id-regCtrl-oldCertID": "1.3.6.1.5.5.7.5.1.5",
    "id-regCtrl-protocolEncrKey": "1.3.6.1.5.5.7.5.1.6",
    "id-regInfo-utf8Pairs": "1.3.6.1.5.5.7.5.2.1",
    "id-regInfo-certReq": "1.3.6.1.5.5.7.5.2.2",
}


class AttributeTypeAndValue(core.Sequence):
    """Registration controls and regInfo entries: left undecoded."""

    _fields = [
        ("type", core.ObjectIdentifier),
        ("value", core.Any),
    ]


class Controls(core.SequenceOf):
    _child_spec = AttributeTypeAndValue


class OptionalValidity(core.Sequence):
    _fields = [
        ("not_before", x509.Time, {"explicit": 0, "optional": True}),
        ("not_after", x509.Time, {"explicit": 1, "optional": True}),
    ]


class CertTemplate(core.Sequence):
    _fields = [
        ("version", x509.Version, {"implicit": 0, "optional": True}),
        ("serial_number", core.Integer, {"implicit": 1, "optional": True}),
        ("signing_alg", algos.SignedDigestAlgorithm, {"implicit": 2, "optional": True}),
        ("issuer", x509.Name, {"explicit": 3, "optional": True}),
        ("validity", OptionalValidity, {"implicit": 4, "optional": True}),
        ("subject", x509.Name, {"explicit": 5, "optional": True}),
        ("public_key", keys.PublicKeyInfo, {"implicit": 6, "optional": True}),
        ("issuer_uid", core.OctetBitString, {"implicit": 7, "optional": True}),
        ("subject_uid", core.OctetBitString, {"implicit": 8, "optional": True}),
        ("extensions", x509.Extensions, {"implicit": 9, "optional": True}),
    ]


class CertRequest(core.Sequence):
    _fields = [
        ("cert_req_id", core.Integer),
        ("cert_template", CertTemplate),
        ("controls", Controls, {"optional": True}),
    ]


class PKMACValue(core.Sequence):
    _fields = [
        ("alg_id", algos.AnyAlgorithmIdentifier),
        ("value", core.OctetBitString),
    ]


class AuthInfo(core.Choice):
    _alternatives = [
        ("sender", x509.GeneralName, {"explicit": 0}),
        ("public_key_mac", PKMACValue),
    ]


class POPOSigningKeyInput(core.Sequence):
    _fields = [
        ("auth_info", AuthInfo),
        ("public_key", keys.PublicKeyInfo),
    ]


class POPOSigningKey(core.Sequence):
    """RFC 4211 4.1: without ``poposk_input`` the signature is over the DER
    of the CertRequest; with it, over the DER of ``poposk_input``."""

    _fields = [
        ("poposk_input", POPOSigningKeyInput, {"implicit": 0, "optional": True}),
        ("algorithm_identifier", algos.SignedDigestAlgorithm),
        ("signature", core.OctetBitString),
    ]


class SubsequentMessage(core.Integer):
    _map = {0: "encr_cert", 1: "challenge_resp"}


class POPOPrivKey(core.Choice):
    _alternatives = [
        ("this_message", core.OctetBitString, {"implicit": 0}),
        ("subsequent_message", SubsequentMessage, {"implicit": 1}),
        ("dh_mac", core.OctetBitString, {"implicit": 2}),
        ("agree_mac", PKMACValue, {"implicit": 3}),
        ("encrypted_key", cms.EnvelopedData, {"implicit": 4}),
    ]


class ProofOfPossession(core.Choice):
    _alternatives = [
        ("ra_verified", core.Null, {"implicit": 0}),
        ("signature", POPOSigningKey, {"implicit": 1}),
        ("key_encipherment", POPOPrivKey, {"explicit": 2}),
        ("key_agreement", POPOPrivKey, {"explicit": 3}),
    ]


class SequenceOfAttributeTypeAndValue(core.SequenceOf):
    _child_spec = AttributeTypeAndValue


class CertReqMsg(core.Sequence):
    _fields = [
        ("cert_req", CertRequest),
        ("popo", ProofOfPossession, {"optional": True}),
        ("reg_info", SequenceOfAttributeTypeAndValue, {"optional": True}),
    ]


class CertReqMessages(core.SequenceOf):
    _child_spec = CertReqMsg


__all__ = ["OIDS", "AttributeTypeAndValue", "AuthInfo", "CertReqMessages", "CertReqMsg", "CertRequest",
           "CertTemplate", "Controls", "OptionalValidity", "PKMACValue", "POPOPrivKey", "POPOSigningKey",
           "POPOSigningKeyInput", "ProofOfPossession", "SubsequentMessage"]
