"""RFC 5272 CMC with the RFC 6402 updates (module EnrollmentMessageSyntax),
in asn1crypto style.

Importing the module registers, with asn1crypto:

* the content types id-cct-PKIData (``pki_data``) and id-cct-PKIResponse
  (``pki_response``), so SignedData encapsulates them;
* the CMC control attribute types (``transaction_id``, ``status_info_v2``
  ...), both for TaggedAttribute here and as CMS attributes (a CMC control
  may also travel as one, e.g. changeSubjectName in a PKCS#10).

Field names are snake_case as asn1crypto does; class names are the RFC's.
"""
from __future__ import annotations

from asn1crypto import algos, cms, core, crl, csr, x509

from ..signeddata import register_attribute, register_content_type
from .rfc4211 import CertReqMsg, CertTemplate

ID_CMC = "1.3.6.1.5.5.7.7"
ID_CCT = "1.3.6.1.5.5.7.12"
OIDS = {
    "id-cct-PKIData": f"{ID_CCT}.2",
    "id-cct-PKIResponse": f"{ID_CCT}.3",
    "id-kp-cmcCA": "1.3.6.1.5.5.7.3.27",
    "id-kp-cmcRA": "1.3.6.1.5.5.7.3.28",
    "id-kp-cmcArchive": "1.3.6.1.5.5.7.3.29",
    "id-alg-noSignature": "1.3.6.1.5.5.7.6.2",
    "id-aa-cmc-unsignedData": "1.2.840.113549.1.9.16.2.34",
}
PKI_DATA = "pki_data"
PKI_RESPONSE = "pki_response"

# id-cmc-<name> = id-cmc N: asn1crypto name, control name in RFC 5272, arc.
CONTROLS = {
    "status_info": ("statusInfo", 1),
    "identification": ("identification", 2),
    "identity_proof": ("identityProof", 3),
    "data_return": ("dataReturn", 4),
    "transaction_id": ("transactionId", 5),
    "sender_nonce": ("senderNonce", 6),
    "recipient_nonce": ("recipientNonce", 7),
    "add_extensions": ("addExtensions", 8),
    "encrypted_pop": ("encryptedPOP", 9),
    "decrypted_pop": ("decryptedPOP", 10),
    "lra_pop_witness": ("lraPOPWitness", 11),
    "get_cert": ("getCert", 15),
    "get_crl": ("getCRL", 16),
    "revoke_request": ("revokeRequest", 17),
    "reg_info": ("regInfo", 18),
    "response_info": ("responseInfo", 19),
    "query_pending": ("queryPending", 21),
    "pop_link_random": ("popLinkRandom", 22),
    "pop_link_witness": ("popLinkWitness", 23),
    "confirm_cert_acceptance": ("confirmCertAcceptance", 24),
    "status_info_v2": ("statusInfoV2", 25),
    "trusted_anchors": ("trustedAnchors", 26),
    "auth_data": ("authData", 27),
    "batch_requests": ("batchRequests", 28),
    "batch_responses": ("batchResponses", 29),
    "publish_cert": ("publishCert", 30),
    "mod_cert_template": ("modCertTemplate", 31),
    "control_processed": ("controlProcessed", 32),
    "pop_link_witness_v2": ("popLinkWitnessV2", 33),
    "identity_proof_v2": ("identityProofV2", 34),
    "ra_identity_witness": ("raIdentityWitness", 35),
    "change_subject_name": ("changeSubjectName", 36),
    "response_body": ("responseBody", 37),
}
for _name, (_rfc_name, _arc) in CONTROLS.items():
    OIDS[f"id-cmc-{_rfc_name}"] = f"{ID_CMC}.{_arc}"

BODY_PART_ID_MAX = 4294967295


class BodyPartID(core.Integer):
    """INTEGER (0..4294967295); the range is checked by the parser."""


class BodyPartPath(core.SequenceOf):
    _child_spec = BodyPartID


class BodyPartReference(core.Choice):
    _alternatives = [
        ("body_part_id", BodyPartID),
        ("body_part_path", BodyPartPath),
    ]


class BodyPartList(core.SequenceOf):
    _child_spec = BodyPartID


class CMCStatus(core.Integer):
    _map = {0: "success", 2: "failed", 3: "pending", 4: "no_support", 5: "confirm_required", 6: "pop_required",
            7: "partial"}


class CMCFailInfo(core.Integer):
    _map = {0: "bad_alg", 1: "bad_message_check", 2: "bad_request", 3: "bad_time", 4: "bad_cert_id",
            5: "unsupported_ext", 6: "must_archive_keys", 7: "bad_identity", 8: "pop_required", 9: "pop_failed",
            10: "no_key_reuse", 11: "internal_ca_error", 12: "try_later", 13: "auth_data_fail"}


class PendInfo(core.Sequence):
    _fields = [
        ("pend_token", core.OctetString),
        ("pend_time", core.GeneralizedTime),
    ]


class ExtendedFailInfo(core.Sequence):
    _fields = [
        ("fail_info_oid", core.ObjectIdentifier),
        ("fail_info_value", core.Any),
    ]


class OtherStatusInfo(core.Choice):
    _alternatives = [
        ("fail_info", CMCFailInfo),
        ("pend_info", PendInfo),
        ("extended_fail_info", ExtendedFailInfo, {"implicit": 1}),
    ]


class BodyPartReferences(core.SequenceOf):
    _child_spec = BodyPartReference


class CMCStatusInfoV2(core.Sequence):
    _fields = [
        ("cmc_status", CMCStatus),
        ("body_list", BodyPartReferences),
        ("status_string", core.UTF8String, {"optional": True}),
        ("other_info", OtherStatusInfo, {"optional": True}),
    ]


class OtherInfo(core.Choice):
    _alternatives = [
        ("fail_info", CMCFailInfo),
        ("pend_info", PendInfo),
    ]


class CMCStatusInfo(core.Sequence):
    """The RFC 5272 version, kept for reading older peers."""

    _fields = [
        ("cmc_status", CMCStatus),
        ("body_list", BodyPartList),
        ("status_string", core.UTF8String, {"optional": True}),
        ("other_info", OtherInfo, {"optional": True}),
    ]


class IdentifyProofV2(core.Sequence):
    """RFC 5272 6.2.1 (the ASN.1 spells it 'Identify')."""

    _fields = [
        ("proof_alg_id", algos.DigestAlgorithm),
        ("mac_alg_id", algos.HmacAlgorithm),
        ("witness", core.OctetString),
    ]


IdentityProofV2 = IdentifyProofV2


class PopLinkWitnessV2(core.Sequence):
    _fields = [
        ("key_gen_algorithm", algos.KdfAlgorithm),
        ("mac_algorithm", algos.HmacAlgorithm),
        ("witness", core.OctetString),
    ]


class GetCert(core.Sequence):
    _fields = [
        ("issuer_name", x509.GeneralName),
        ("serial_number", core.Integer),
    ]


class GetCRL(core.Sequence):
    _fields = [
        ("issuer_name", x509.Name),
        ("crl_name", x509.GeneralName, {"optional": True}),
        ("time", core.GeneralizedTime, {"optional": True}),
        ("reasons", crl.ReasonFlags, {"optional": True}),
    ]


class RevokeRequest(core.Sequence):
    _fields = [
        ("issuer_name", x509.Name),
        ("serial_number", core.Integer),
        ("reason", crl.CRLReason),
        ("invalidity_date", core.GeneralizedTime, {"optional": True}),
        ("passphrase", core.OctetString, {"optional": True}),
        ("comment", core.UTF8String, {"optional": True}),
    ]


class ControlsProcessed(core.Sequence):
    _fields = [("body_list", BodyPartReferences)]


class ChangeSubjectName(core.Sequence):
    _fields = [
        ("subject", x509.Name, {"optional": True}),
        ("subject_alt", x509.GeneralNames, {"implicit": 1, "optional": True}),
    ]


class ModCertTemplate(core.Sequence):
    _fields = [
        ("pki_data_reference", BodyPartPath),
        ("cert_references", BodyPartList),
        ("replace", core.Boolean, {"default": True}),
        ("cert_template", CertTemplate),
    ]


class ControlType(core.ObjectIdentifier):
    _map = {f"{ID_CMC}.{arc}": name for name, (_rfc, arc) in CONTROLS.items()}


def _set_of(spec: type[core.Asn1Value]) -> type[core.SetOf]:
    return type(f"SetOf{spec.__name__}", (core.SetOf,), {"_child_spec": spec})


class TaggedAttribute(core.Sequence):
    """``attr_values`` decode by ``attr_type`` (CONTROL_SPECS); others stay
    undecoded (asn1crypto's SetOfAny), as in cms.CMSAttribute."""

    _fields = [
        ("body_part_id", BodyPartID),
        ("attr_type", ControlType),
        ("attr_values", None),
    ]
    _oid_specs: dict[str, type[core.Asn1Value]] = {}

    def _values_spec(self) -> type[core.Asn1Value]:
        spec: type[core.Asn1Value] = self._oid_specs.get(self["attr_type"].native, cms.SetOfAny)
        return spec

    _spec_callbacks = {"attr_values": _values_spec}


class TaggedCertificationRequest(core.Sequence):
    _fields = [
        ("body_part_id", BodyPartID),
        ("certification_request", csr.CertificationRequest),
    ]


class OtherRequestMessage(core.Sequence):
    _fields = [
        ("body_part_id", BodyPartID),
        ("request_message_type", core.ObjectIdentifier),
        ("request_message_value", core.Any),
    ]


class TaggedRequest(core.Choice):
    _alternatives = [
        ("tcr", TaggedCertificationRequest, {"implicit": 0}),
        ("crm", CertReqMsg, {"implicit": 1}),
        ("orm", OtherRequestMessage, {"implicit": 2}),
    ]


class TaggedContentInfo(core.Sequence):
    _fields = [
        ("body_part_id", BodyPartID),
        ("content_info", cms.ContentInfo),
    ]


class OtherMsg(core.Sequence):
    _fields = [
        ("body_part_id", BodyPartID),
        ("other_msg_type", core.ObjectIdentifier),
        ("other_msg_value", core.Any),
    ]


class ControlSequence(core.SequenceOf):
    _child_spec = TaggedAttribute


class ReqSequence(core.SequenceOf):
    _child_spec = TaggedRequest


class CmsSequence(core.SequenceOf):
    _child_spec = TaggedContentInfo


class OtherMsgSequence(core.SequenceOf):
    _child_spec = OtherMsg


class PKIData(core.Sequence):
    _fields = [
        ("control_sequence", ControlSequence),
        ("req_sequence", ReqSequence),
        ("cms_sequence", CmsSequence),
        ("other_msg_sequence", OtherMsgSequence),
    ]


class PKIResponse(core.Sequence):
    _fields = [
        ("control_sequence", ControlSequence),
        ("cms_sequence", CmsSequence),
        ("other_msg_sequence", OtherMsgSequence),
    ]


ResponseBody = PKIResponse

# The value type of each control (RFC 5272 6, RFC 6402 2); controls not
# listed stay undecoded (core.Any).
CONTROL_SPECS = {
    "status_info": CMCStatusInfo,
    "identification": core.UTF8String,
    "identity_proof": core.OctetString,
    "data_return": core.OctetString,
    "transaction_id": core.Integer,
    "sender_nonce": core.OctetString,
    "recipient_nonce": core.OctetString,
    "get_cert": GetCert,
    "get_crl": GetCRL,
    "revoke_request": RevokeRequest,
    "reg_info": core.OctetString,
    "response_info": core.OctetString,
    "query_pending": core.OctetString,
    "pop_link_random": core.OctetString,
    "pop_link_witness": core.OctetString,
    "status_info_v2": CMCStatusInfoV2,
    "batch_requests": BodyPartList,
    "batch_responses": BodyPartList,
    "mod_cert_template": ModCertTemplate,
    "control_processed": ControlsProcessed,
    "pop_link_witness_v2": PopLinkWitnessV2,
    "identity_proof_v2": IdentifyProofV2,
    "change_subject_name": ChangeSubjectName,
    "response_body": ResponseBody,
}
for _name, _spec in CONTROL_SPECS.items():
    _set = _set_of(_spec)
    TaggedAttribute._oid_specs[_name] = _set
    register_attribute(_name, f"{ID_CMC}.{CONTROLS[_name][1]}", _set)

register_content_type(PKI_DATA, OIDS["id-cct-PKIData"], PKIData)
register_content_type(PKI_RESPONSE, OIDS["id-cct-PKIResponse"], PKIResponse)

__all__ = ["BODY_PART_ID_MAX", "CONTROLS", "CONTROL_SPECS", "ID_CMC", "OIDS", "PKI_DATA", "PKI_RESPONSE",
           "BodyPartID", "BodyPartList", "BodyPartPath", "BodyPartReference", "BodyPartReferences",
           "ChangeSubjectName", "CMCFailInfo", "CMCStatus", "CMCStatusInfo", "CMCStatusInfoV2", "ControlType",
           "ControlsProcessed", "ExtendedFailInfo", "GetCRL", "GetCert", "IdentifyProofV2", "IdentityProofV2",
           "ModCertTemplate", "OtherMsg", "OtherRequestMessage", "OtherStatusInfo", "PKIData", "PKIResponse",
           "PendInfo", "PopLinkWitnessV2", "ResponseBody", "RevokeRequest", "TaggedAttribute",
           "TaggedCertificationRequest", "TaggedContentInfo", "TaggedRequest"]
