"""RFC 6031 Symmetric Key Package, with the PSKC attributes of its companion
module (id-mod-pskcAttributesModule), in asn1crypto style.

Importing the module registers id-ct-KP-sKeyPackage with asn1crypto's CMS
content types, so SignedData and EncapsulatedContentInfo decode it.
"""
from __future__ import annotations

from asn1crypto import core

from ..signeddata import register_content_type

OIDS = {
    "id-ct-KP-sKeyPackage": "1.2.840.113549.1.9.16.1.25",
    "id-pskc": "1.2.840.113549.1.9.16.12",
}

# PSKC attributes (1.2.840.113549.1.9.16.12.n): package-level ones ...
PACKAGE_ATTRIBUTES = {
    "1.2.840.113549.1.9.16.12.1": "manufacturer",
    "1.2.840.113549.1.9.16.12.2": "serial_no",
    "1.2.840.113549.1.9.16.12.3": "model",
    "1.2.840.113549.1.9.16.12.4": "issue_no",
    "1.2.840.113549.1.9.16.12.5": "device_binding",
    "1.2.840.113549.1.9.16.12.6": "device_start_date",
    "1.2.840.113549.1.9.16.12.7": "device_expiry_date",
    "1.2.840.113549.1.9.16.12.8": "module_id",
    "1.2.840.113549.1.9.16.12.26": "device_user_id",
}
# ... and key-level ones.
KEY_ATTRIBUTES = {
    "1.2.840.113549.1.9.16.12.9": "key_id",
    "1.2.840.113549.1.9.16.12.10": "algorithm",
    "1.2.840.113549.1.9.16.12.11": "issuer",
    "1.2.840.113549.1.9.16.12.12": "key_profile_id",
    "1.2.840.113549.1.9.16.12.13": "key_reference",
    "1.2.840.113549.1.9.16.12.14": "friendly_name",
    "1.2.840.113549.1.9.16.12.15": "algorithm_parameters",
    "1.2.840.113549.1.9.16.12.16": "counter",
    "1.2.840.113549.1.9.16.12.17": "time",
    "1.2.840.113549.1.9.16.12.18": "time_interval",
    "1.2.840.113549.1.9.16.12.19": "time_drift",
    "1.2.840.113549.1.9.16.12.20": "value_mac",
    "1.2.840.113549.1.9.16.12.21": "key_start_date",
    "1.2.840.113549.1.9.16.12.22": "key_expiry_date",
    "1.2.840.113549.1.9.16.12.23": "number_of_transactions",
    "1.2.840.113549.1.9.16.12.24": "key_usages",
    "1.2.840.113549.1.9.16.12.25": "pin_policy",
    "1.2.840.113549.1.9.16.12.27": "key_user_id",
}

# PSKC algorithm URIs for the keys we make (RFC 6030 section 10 / RFC 6931).
ALGORITHM_URIS = {
    "aes128": "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "aes192": "http://www.w3.org/2001/04/xmlenc#aes192-cbc",
    "aes256": "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
}

KEY_USAGES = ("OTP", "CR", "Encrypt", "Integrity", "Verify", "Unlock", "Decrypt", "KeyWrap", "Unwrap", "Derive",
              "Generate")


class FriendlyName(core.Sequence):
    _fields = [
        ("friendly_name", core.UTF8String),
        ("friendly_name_lang_tag", core.UTF8String, {"optional": True}),
    ]


class ChallengeFormat(core.Sequence):
    _fields = [
        ("encoding", core.UTF8String),
        ("check_digit", core.Boolean, {"default": False}),
        ("min", core.Integer),
        ("max", core.Integer),
    ]


class ResponseFormat(core.Sequence):
    _fields = [
        ("encoding", core.UTF8String),
        ("length", core.Integer),
        ("check_digit", core.Boolean, {"default": False}),
    ]


class PSKCAlgorithmParameters(core.Choice):
    _alternatives = [
        ("suite", core.UTF8String),
        ("challenge_format", ChallengeFormat, {"implicit": 0}),
        ("response_format", ResponseFormat, {"implicit": 1}),
    ]


class ValueMac(core.Sequence):
    _fields = [
        ("mac_algorithm", core.UTF8String),
        ("mac", core.UTF8String),
    ]


class PSKCKeyUsages(core.SequenceOf):
    _child_spec = core.UTF8String


class PINPolicy(core.Sequence):
    _fields = [
        ("pin_key_id", core.UTF8String, {"implicit": 0, "optional": True}),
        ("pin_usage_mode", core.UTF8String, {"implicit": 1}),
        ("max_failed_attempts", core.Integer, {"implicit": 2, "optional": True}),
        ("min_length", core.Integer, {"implicit": 3, "optional": True}),
        ("max_length", core.Integer, {"implicit": 4, "optional": True}),
        ("pin_encoding", core.UTF8String, {"implicit": 5, "optional": True}),
    ]


def _set_of(spec: type[core.Asn1Value]) -> type[core.SetOf]:
    return type(f"SetOf{spec.__name__}", (core.SetOf,), {"_child_spec": spec})


_UTF8 = _set_of(core.UTF8String)
_TIME = _set_of(core.GeneralizedTime)
_INT = _set_of(core.Integer)
_ANY = _set_of(core.Any)  # attributes we do not know are carried, not decoded


class SKeyPkgAttributeType(core.ObjectIdentifier):
    _map = PACKAGE_ATTRIBUTES


class SKeyPkgAttribute(core.Sequence):
    _fields = [
        ("type", SKeyPkgAttributeType),
        ("values", None),
    ]

    def _values_spec(self) -> type[core.Asn1Value]:
        return self._oid_specs.get(self["type"].native, _ANY)

    _spec_callbacks = {"values": _values_spec}
    _oid_specs = {
        "manufacturer": _UTF8, "serial_no": _UTF8, "model": _UTF8, "issue_no": _UTF8,
        "device_binding": _UTF8, "device_start_date": _TIME, "device_expiry_date": _TIME,
        "module_id": _UTF8, "device_user_id": _UTF8,
    }


class SKeyAttributeType(core.ObjectIdentifier):
    _map = KEY_ATTRIBUTES


class SKeyAttribute(core.Sequence):
    _fields = [
        ("type", SKeyAttributeType),
        ("values", None),
    ]

    def _values_spec(self) -> type[core.Asn1Value]:
        return self._oid_specs.get(self["type"].native, _ANY)

    _spec_callbacks = {"values": _values_spec}
    _oid_specs = {
        "key_id": _UTF8, "algorithm": _UTF8, "issuer": _UTF8, "key_profile_id": _UTF8,
        "key_reference": _UTF8, "friendly_name": _set_of(FriendlyName),
        "algorithm_parameters": _set_of(PSKCAlgorithmParameters), "counter": _INT,
        "time": _INT,  # BinaryTime (RFC 6019): seconds since 1970 as an INTEGER
        "time_interval": _INT, "time_drift": _INT, "value_mac": _set_of(ValueMac),
        "key_start_date": _TIME, "key_expiry_date": _TIME, "number_of_transactions": _INT,
        "key_usages": _set_of(PSKCKeyUsages), "pin_policy": _set_of(PINPolicy), "key_user_id": _UTF8,
    }


class SKeyPkgAttributes(core.SequenceOf):
    _child_spec = SKeyPkgAttribute


class SKeyAttributes(core.SequenceOf):
    _child_spec = SKeyAttribute


class OneSymmetricKey(core.Sequence):
    """At least one of the two is present (RFC 6031 section 3)."""

    _fields = [
        ("s_key_attrs", SKeyAttributes, {"optional": True}),
        ("s_key", core.OctetString, {"optional": True}),
    ]


class SymmetricKeys(core.SequenceOf):
    _child_spec = OneSymmetricKey


class KeyPkgVersion(core.Integer):
    _map = {1: "v1", 2: "v2"}


class SymmetricKeyPackage(core.Sequence):
    _fields = [
        ("version", KeyPkgVersion, {"default": "v1"}),
        ("s_key_pkg_attrs", SKeyPkgAttributes, {"implicit": 0, "optional": True}),
        ("s_keys", SymmetricKeys),
    ]


register_content_type("symmetric_key_package", OIDS["id-ct-KP-sKeyPackage"], SymmetricKeyPackage)

__all__ = ["ALGORITHM_URIS", "KEY_ATTRIBUTES", "KEY_USAGES", "OIDS", "OneSymmetricKey", "PACKAGE_ATTRIBUTES",
           "SKeyAttribute", "SKeyPkgAttribute", "SymmetricKeyPackage"]
