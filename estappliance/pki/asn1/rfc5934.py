"""RFC 5934 Trust Anchor Management Protocol (TAMP) messages, in asn1crypto
style. The module is IMPLICIT TAGS; a tagged CHOICE is explicit by X.680.

Importing the module registers the eleven TAMP content types with
asn1crypto's CMS maps, so SignedData decodes them.
"""
from __future__ import annotations

from asn1crypto import core, keys, x509

from ..signeddata import register_content_type
# The TAMP ASN.1 module IMPORTS HardwareModules from RFC 4108's.
from .rfc4108 import HardwareModules, HardwareSerialEntry
from .rfc5914 import CertPathControls, TrustAnchorChoice

ID_TAMP = "2.16.840.1.101.2.1.2.77"
# content type name -> (OID, media type)
MESSAGES = {
    "tamp_status_query": (f"{ID_TAMP}.1", "application/tamp-status-query"),
    "tamp_status_response": (f"{ID_TAMP}.2", "application/tamp-status-response"),
    "tamp_update": (f"{ID_TAMP}.3", "application/tamp-update"),
    "tamp_update_confirm": (f"{ID_TAMP}.4", "application/tamp-update-confirm"),
    "tamp_apex_update": (f"{ID_TAMP}.5", "application/tamp-apex-update"),
    "tamp_apex_update_confirm": (f"{ID_TAMP}.6", "application/tamp-apex-update-confirm"),
    "tamp_community_update": (f"{ID_TAMP}.7", "application/tamp-community-update"),
    "tamp_community_update_confirm": (f"{ID_TAMP}.8", "application/tamp-community-update-confirm"),
    "tamp_error": (f"{ID_TAMP}.9", "application/tamp-error"),
    "tamp_sequence_adjust": (f"{ID_TAMP}.10", "application/tamp-sequence-adjust"),
    "tamp_sequence_adjust_confirm": (f"{ID_TAMP}.11", "application/tamp-sequence-adjust-confirm"),
}

STATUS_CODES = {
    0: "success", 1: "decodeFailure", 2: "badContentInfo", 3: "badSignedData", 4: "badEncapContent",
    5: "badCertificate", 6: "badSignerInfo", 7: "badSignedAttrs", 8: "badUnsignedAttrs", 9: "missingContent",
    10: "noTrustAnchor", 11: "notAuthorized", 12: "badDigestAlgorithm", 13: "badSignatureAlgorithm",
    14: "unsupportedKeySize", 15: "unsupportedParameters", 16: "signatureFailure", 17: "insufficientMemory",
    18: "unsupportedTAMPMsgType", 19: "apexTAMPAnchor", 20: "improperTAAddition", 21: "seqNumFailure",
    22: "contingencyPublicKeyDecrypt", 23: "incorrectTarget", 24: "communityUpdateFailed",
    25: "trustAnchorNotFound", 26: "unsupportedTAAlgorithm", 27: "unsupportedTAKeySize",
    28: "unsupportedContinPubKeyDecryptAlg", 29: "missingSignature", 30: "resourcesBusy",
    31: "versionNumberMismatch", 32: "missingPolicySet", 33: "revokedCertificate",
    34: "unsupportedTrustAnchorFormat", 35: "improperTAChange", 36: "malformed", 37: "cmsError",
    38: "unsupportedTargetIdentifier", 127: "other",
}


class TAMPVersion(core.Integer):
    _map = {1: "v1", 2: "v2"}


class TerseOrVerbose(core.Enumerated):
    _map = {1: "terse", 2: "verbose"}


class HardwareModuleIdentifierList(core.SequenceOf):
    _child_spec = HardwareModules


class CommunityIdentifierList(core.SequenceOf):
    _child_spec = core.ObjectIdentifier


class TargetIdentifier(core.Choice):
    _alternatives = [
        ("hw_modules", HardwareModuleIdentifierList, {"implicit": 1}),
        ("communities", CommunityIdentifierList, {"implicit": 2}),
        ("all_modules", core.Null, {"implicit": 3}),
        ("uri", core.IA5String, {"implicit": 4}),
        ("other_name", x509.AnotherName, {"implicit": 5}),
    ]


class TAMPMsgRef(core.Sequence):
    _fields = [
        ("target", TargetIdentifier),
        ("seq_num", core.Integer),
    ]


class TAMPStatusQuery(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("terse", TerseOrVerbose, {"implicit": 1, "default": "verbose"}),
        ("query", TAMPMsgRef),
    ]


class KeyIdentifiers(core.SequenceOf):
    _child_spec = core.OctetString


class TrustAnchorChoiceList(core.SequenceOf):
    _child_spec = TrustAnchorChoice


class TAMPSequenceNumber(core.Sequence):
    _fields = [
        ("key_id", core.OctetString),
        ("seq_number", core.Integer),
    ]


class TAMPSequenceNumbers(core.SequenceOf):
    _child_spec = TAMPSequenceNumber


class TerseStatusResponse(core.Sequence):
    _fields = [
        ("ta_key_ids", KeyIdentifiers),
        ("communities", CommunityIdentifierList, {"optional": True}),
    ]


class VerboseStatusResponse(core.Sequence):
    _fields = [
        ("ta_info", TrustAnchorChoiceList),
        ("contin_pub_key_decrypt_alg", keys.PublicKeyAlgorithm, {"implicit": 0, "optional": True}),
        ("communities", CommunityIdentifierList, {"implicit": 1, "optional": True}),
        ("tamp_seq_numbers", TAMPSequenceNumbers, {"implicit": 2, "optional": True}),
    ]


class StatusResponse(core.Choice):
    _alternatives = [
        ("terse_response", TerseStatusResponse, {"implicit": 0}),
        ("verbose_response", VerboseStatusResponse, {"implicit": 1}),
    ]


class TAMPStatusResponse(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("query", TAMPMsgRef),
        ("response", StatusResponse),
        ("uses_apex", core.Boolean, {"default": True}),
    ]


class TBSCertificateChangeInfo(core.Sequence):
    _fields = [
        ("serial_number", core.Integer, {"optional": True}),
        ("signature", x509.SignedDigestAlgorithm, {"implicit": 0, "optional": True}),
        ("issuer", x509.Name, {"implicit": 1, "optional": True}),
        ("validity", x509.Validity, {"implicit": 2, "optional": True}),
        ("subject", x509.Name, {"implicit": 3, "optional": True}),
        ("subject_public_key_info", keys.PublicKeyInfo, {"implicit": 4}),
        ("exts", x509.Extensions, {"explicit": 5, "optional": True}),
    ]


class TrustAnchorChangeInfo(core.Sequence):
    _fields = [
        ("pub_key", keys.PublicKeyInfo),
        ("key_id", core.OctetString, {"optional": True}),
        ("ta_title", core.UTF8String, {"optional": True}),
        ("cert_path", CertPathControls, {"optional": True}),
        ("exts", x509.Extensions, {"implicit": 1, "optional": True}),
    ]


class TrustAnchorChangeInfoChoice(core.Choice):
    _alternatives = [
        ("tbs_cert_change", TBSCertificateChangeInfo, {"implicit": 0}),
        ("ta_change", TrustAnchorChangeInfo, {"implicit": 1}),
    ]


class TrustAnchorUpdate(core.Choice):
    _alternatives = [
        ("add", TrustAnchorChoice, {"explicit": 1}),
        ("remove", keys.PublicKeyInfo, {"implicit": 2}),
        ("change", TrustAnchorChangeInfoChoice, {"explicit": 3}),
    ]


class TrustAnchorUpdates(core.SequenceOf):
    _child_spec = TrustAnchorUpdate


class TAMPUpdate(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("terse", TerseOrVerbose, {"implicit": 1, "default": "verbose"}),
        ("msg_ref", TAMPMsgRef),
        ("updates", TrustAnchorUpdates),
        ("tamp_seq_numbers", TAMPSequenceNumbers, {"implicit": 2, "optional": True}),
    ]


class StatusCode(core.Enumerated):
    _map = STATUS_CODES


class StatusCodeList(core.SequenceOf):
    _child_spec = StatusCode


class VerboseUpdateConfirm(core.Sequence):
    _fields = [
        ("status", StatusCodeList),
        ("ta_info", TrustAnchorChoiceList),
        ("tamp_seq_numbers", TAMPSequenceNumbers, {"optional": True}),
        ("uses_apex", core.Boolean, {"default": True}),
    ]


class UpdateConfirm(core.Choice):
    _alternatives = [
        ("terse_confirm", StatusCodeList, {"implicit": 0}),
        ("verbose_confirm", VerboseUpdateConfirm, {"implicit": 1}),
    ]


class TAMPUpdateConfirm(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("update", TAMPMsgRef),
        ("confirm", UpdateConfirm),
    ]


class TAMPApexUpdate(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("terse", TerseOrVerbose, {"implicit": 1, "default": "verbose"}),
        ("msg_ref", TAMPMsgRef),
        ("clear_trust_anchors", core.Boolean),
        ("clear_communities", core.Boolean),
        ("seq_number", core.Integer, {"optional": True}),
        ("apex_ta", TrustAnchorChoice),
    ]


class VerboseApexUpdateConfirm(core.Sequence):
    _fields = [
        ("status", StatusCode),
        ("ta_info", TrustAnchorChoiceList),
        ("communities", CommunityIdentifierList, {"implicit": 0, "optional": True}),
        ("tamp_seq_numbers", TAMPSequenceNumbers, {"implicit": 1, "optional": True}),
    ]


class ApexUpdateConfirm(core.Choice):
    _alternatives = [
        ("terse_apex_confirm", StatusCode, {"implicit": 0}),
        ("verbose_apex_confirm", VerboseApexUpdateConfirm, {"implicit": 1}),
    ]


class TAMPApexUpdateConfirm(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("apex_replace", TAMPMsgRef),
        ("apex_confirm", ApexUpdateConfirm),
    ]


class CommunityUpdates(core.Sequence):
    _fields = [
        ("remove", CommunityIdentifierList, {"implicit": 1, "optional": True}),
        ("add", CommunityIdentifierList, {"implicit": 2, "optional": True}),
    ]


class TAMPCommunityUpdate(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("terse", TerseOrVerbose, {"implicit": 1, "default": "verbose"}),
        ("msg_ref", TAMPMsgRef),
        ("updates", CommunityUpdates),
    ]


class VerboseCommunityConfirm(core.Sequence):
    _fields = [
        ("status", StatusCode),
        ("communities", CommunityIdentifierList, {"optional": True}),
    ]


class CommunityConfirm(core.Choice):
    _alternatives = [
        ("terse_comm_confirm", StatusCode, {"implicit": 0}),
        ("verbose_comm_confirm", VerboseCommunityConfirm, {"implicit": 1}),
    ]


class TAMPCommunityUpdateConfirm(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("update", TAMPMsgRef),
        ("comm_confirm", CommunityConfirm),
    ]


class SequenceNumberAdjust(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("msg_ref", TAMPMsgRef),
    ]


class SequenceNumberAdjustConfirm(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("adjust", TAMPMsgRef),
        ("status", StatusCode),
    ]


class TAMPError(core.Sequence):
    _fields = [
        ("version", TAMPVersion, {"implicit": 0, "default": "v2"}),
        ("msg_type", core.ObjectIdentifier),
        ("status", StatusCode),
        ("msg_ref", TAMPMsgRef, {"optional": True}),
    ]


SPECS: dict[str, type[core.Asn1Value]] = {
    "tamp_status_query": TAMPStatusQuery,
    "tamp_status_response": TAMPStatusResponse,
    "tamp_update": TAMPUpdate,
    "tamp_update_confirm": TAMPUpdateConfirm,
    "tamp_apex_update": TAMPApexUpdate,
    "tamp_apex_update_confirm": TAMPApexUpdateConfirm,
    "tamp_community_update": TAMPCommunityUpdate,
    "tamp_community_update_confirm": TAMPCommunityUpdateConfirm,
    "tamp_error": TAMPError,
    "tamp_sequence_adjust": SequenceNumberAdjust,
    "tamp_sequence_adjust_confirm": SequenceNumberAdjustConfirm,
}
for _name, (_oid, _media) in MESSAGES.items():
    register_content_type(_name, _oid, SPECS[_name])

__all__ = ["ID_TAMP", "MESSAGES", "SPECS", "STATUS_CODES", "HardwareModules", "HardwareSerialEntry", "TAMPMsgRef",
           "TargetIdentifier", "TrustAnchorUpdate"]
