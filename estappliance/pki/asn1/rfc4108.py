"""RFC 4108 Firmware Package, Load Receipt and Load Error, with the firmware
signed attributes, in asn1crypto style.

Importing the module registers the three content types and the attributes
with asn1crypto's CMS maps, so SignedData decodes them.
"""
from __future__ import annotations

from asn1crypto import algos, cms, core

from ..signeddata import register_attribute, register_content_type

OIDS = {
    "id-ct-firmwarePackage": "1.2.840.113549.1.9.16.1.16",
    "id-ct-firmwareLoadReceipt": "1.2.840.113549.1.9.16.1.17",
    "id-ct-firmwareLoadError": "1.2.840.113549.1.9.16.1.18",
    "id-aa-firmwarePackageID": "1.2.840.113549.1.9.16.2.35",
    "id-aa-targetHardwareIDs": "1.2.840.113549.1.9.16.2.36",
    "id-aa-decryptKeyID": "1.2.840.113549.1.9.16.2.37",
    "id-aa-implCryptoAlgs": "1.2.840.113549.1.9.16.2.38",
    "id-aa-wrappedFirmwareKey": "1.2.840.113549.1.9.16.2.39",
    "id-aa-communityIdentifiers": "1.2.840.113549.1.9.16.2.40",
    "id-aa-fwPkgMessageDigest": "1.2.840.113549.1.9.16.2.41",
    "id-aa-firmwarePackageInfo": "1.2.840.113549.1.9.16.2.42",
    "id-aa-implCompressAlgs": "1.2.840.113549.1.9.16.2.43",
    "id-aa-contentHint": "1.2.840.113549.1.9.16.2.4",
    "id-aa-signingCertificateV2": "1.2.840.113549.1.9.16.2.47",
    "id-on-hardwareModuleName": "1.3.6.1.5.5.7.8.4",
}

LOAD_ERROR_CODES = {
    1: "decodeFailure", 2: "badContentInfo", 3: "badSignedData", 4: "badEncapContent", 5: "badCertificate",
    6: "badSignerInfo", 7: "badSignedAttrs", 8: "badUnsignedAttrs", 9: "missingContent", 10: "noTrustAnchor",
    11: "notAuthorized", 12: "badDigestAlgorithm", 13: "badSignatureAlgorithm", 14: "unsupportedKeySize",
    15: "signatureFailure", 16: "contentTypeMismatch", 17: "badEncryptedData", 18: "unprotectedAttrsPresent",
    19: "badEncryptContent", 20: "badEncryptAlgorithm", 21: "missingCiphertext", 22: "noDecryptKey",
    23: "decryptFailure", 24: "badCompressAlgorithm", 25: "missingCompressedContent", 26: "decompressFailure",
    27: "wrongHardware", 28: "stalePackage", 29: "notInCommunity", 30: "unsupportedPackageType",
    31: "missingDependency", 32: "wrongDependencyVersion", 33: "insufficientMemory", 34: "badFirmware",
    35: "unsupportedParameters", 36: "breaksDependency", 99: "otherError",
}


class FirmwarePkgData(core.OctetString):
    """The firmware image itself: opaque octets (need not be DER)."""


class PreferredPackageIdentifier(core.Sequence):
    _fields = [
        ("fw_pkg_id", core.ObjectIdentifier),
        ("ver_num", core.Integer),
    ]


class PreferredOrLegacyPackageIdentifier(core.Choice):
    _alternatives = [
        ("preferred", PreferredPackageIdentifier),
        ("legacy", core.OctetString),
    ]


class PreferredOrLegacyStalePackageIdentifier(core.Choice):
    _alternatives = [
        ("preferred_stale_ver_num", core.Integer),
        ("legacy_stale_version", core.OctetString),
    ]


class FirmwarePackageIdentifier(core.Sequence):
    _fields = [
        ("name", PreferredOrLegacyPackageIdentifier),
        ("stale", PreferredOrLegacyStalePackageIdentifier, {"optional": True}),
    ]


class TargetHardwareIdentifiers(core.SequenceOf):
    _child_spec = core.ObjectIdentifier


class DecryptKeyIdentifier(core.OctetString):
    pass


class ImplementedCryptoAlgorithms(core.SequenceOf):
    _child_spec = core.ObjectIdentifier


class ImplementedCompressAlgorithms(core.SequenceOf):
    _child_spec = core.ObjectIdentifier


class SerialBlock(core.Sequence):
    _fields = [
        ("low", core.OctetString),
        ("high", core.OctetString),
    ]


class HardwareSerialEntry(core.Choice):
    _alternatives = [
        ("all", core.Null),
        ("single", core.OctetString),
        ("block", SerialBlock),
    ]


class HardwareSerialEntries(core.SequenceOf):
    _child_spec = HardwareSerialEntry


class HardwareModules(core.Sequence):
    _fields = [
        ("hw_type", core.ObjectIdentifier),
        ("hw_serial_entries", HardwareSerialEntries),
    ]


class CommunityIdentifier(core.Choice):
    _alternatives = [
        ("community_oid", core.ObjectIdentifier),
        ("hw_module_list", HardwareModules),
    ]


class CommunityIdentifiers(core.SequenceOf):
    _child_spec = CommunityIdentifier


class FirmwarePackageMessageDigest(core.Sequence):
    _fields = [
        ("algorithm", algos.DigestAlgorithm),
        ("msg_digest", core.OctetString),
    ]


class PackageIdentifiers(core.SequenceOf):
    _child_spec = PreferredOrLegacyPackageIdentifier


class FirmwarePackageInfo(core.Sequence):
    _fields = [
        ("fw_pkg_type", core.Integer, {"optional": True}),
        ("dependencies", PackageIdentifiers, {"optional": True}),
    ]


class ContentHints(core.Sequence):
    """RFC 2634 content-hints (a SHOULD of RFC 4108 2.2)."""

    _fields = [
        ("content_description", core.UTF8String, {"optional": True}),
        ("content_type", core.ObjectIdentifier),
    ]


class CurrentFWConfig(core.Sequence):
    _fields = [
        ("fw_pkg_type", core.Integer, {"optional": True}),
        ("fw_pkg_name", PreferredOrLegacyPackageIdentifier),
    ]


class CurrentFWConfigs(core.SequenceOf):
    _child_spec = CurrentFWConfig


class FWReceiptVersion(core.Integer):
    _map = {1: "v1"}


class FirmwarePackageLoadReceipt(core.Sequence):
    _fields = [
        ("version", FWReceiptVersion, {"default": "v1"}),
        ("hw_type", core.ObjectIdentifier),
        ("hw_serial_num", core.OctetString),
        ("fw_pkg_name", PreferredOrLegacyPackageIdentifier),
        ("trust_anchor_key_id", core.OctetString, {"optional": True}),
        ("decrypt_key_id", core.OctetString, {"implicit": 1, "optional": True}),
    ]


class FirmwarePackageLoadErrorCode(core.Enumerated):
    _map = LOAD_ERROR_CODES


class FWErrorVersion(core.Integer):
    _map = {1: "v1"}


class FirmwarePackageLoadError(core.Sequence):
    _fields = [
        ("version", FWErrorVersion, {"default": "v1"}),
        ("hw_type", core.ObjectIdentifier),
        ("hw_serial_num", core.OctetString),
        ("error_code", FirmwarePackageLoadErrorCode),
        ("vendor_error_code", core.Integer, {"optional": True}),
        ("fw_pkg_name", PreferredOrLegacyPackageIdentifier, {"optional": True}),
        ("config", CurrentFWConfigs, {"implicit": 1, "optional": True}),
    ]


class HardwareModuleName(core.Sequence):
    """otherName id-on-hardwareModuleName (RFC 4108 5)."""

    _fields = [
        ("hw_type", core.ObjectIdentifier),
        ("hw_serial_num", core.OctetString),
    ]


def _set_of(spec: type[core.Asn1Value]) -> type[core.SetOf]:
    return type(f"SetOf{spec.__name__}", (core.SetOf,), {"_child_spec": spec})


# The eContent of id-ct-firmwarePackage is the image itself (like id-data):
# SignedData keeps its plain OCTET STRING, only ContentInfo learns the spec.
register_content_type("firmware_package", OIDS["id-ct-firmwarePackage"], FirmwarePkgData)
cms.EncapsulatedContentInfo._oid_specs.pop("firmware_package", None)
register_content_type("firmware_load_receipt", OIDS["id-ct-firmwareLoadReceipt"], FirmwarePackageLoadReceipt)
register_content_type("firmware_load_error", OIDS["id-ct-firmwareLoadError"], FirmwarePackageLoadError)
for _name, _oid, _spec in (
        ("firmware_package_id", "id-aa-firmwarePackageID", FirmwarePackageIdentifier),
        ("target_hardware_ids", "id-aa-targetHardwareIDs", TargetHardwareIdentifiers),
        ("decrypt_key_id", "id-aa-decryptKeyID", DecryptKeyIdentifier),
        ("implemented_crypto_algorithms", "id-aa-implCryptoAlgs", ImplementedCryptoAlgorithms),
        ("community_identifiers", "id-aa-communityIdentifiers", CommunityIdentifiers),
        ("firmware_package_message_digest", "id-aa-fwPkgMessageDigest", FirmwarePackageMessageDigest),
        ("firmware_package_info", "id-aa-firmwarePackageInfo", FirmwarePackageInfo),
        ("implemented_compress_algorithms", "id-aa-implCompressAlgs", ImplementedCompressAlgorithms),
        ("content_hints", "id-aa-contentHint", ContentHints)):
    register_attribute(_name, OIDS[_oid], _set_of(_spec))

__all__ = ["FirmwarePackageIdentifier", "FirmwarePackageLoadError", "FirmwarePackageLoadReceipt", "FirmwarePkgData",
           "HardwareModuleName", "LOAD_ERROR_CODES", "OIDS", "PreferredOrLegacyPackageIdentifier"]
