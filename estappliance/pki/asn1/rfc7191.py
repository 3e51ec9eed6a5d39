"""RFC 7191 Key Package Receipt and Error (module id-mod-keyPkgReceiptAndErrV2),
in asn1crypto style, plus the attributes its published samples carry.

Importing the module registers, with asn1crypto:

* content types id-ct-KP-keyPackageReceipt (``key_package_receipt``) and
  id-ct-KP-keyPackageError (``key_package_error``);
* the signed attribute id-aa-KP-keyPkgIdAndReceiptReq
  (``key_pkg_id_and_receipt_req``): the identifier of a key package and,
  optionally, the request for a receipt;
* id-aa-binarySigningTime (RFC 6019, ``binary_signing_time``), which RFC 7191
  4 asks receipt signers with a clock to include, and id-aa-contentIdentifier
  (RFC 2634, ``content_identifier``), as in the published samples.
"""
from __future__ import annotations

from asn1crypto import cms, core, x509

from ..signeddata import register_attribute, register_content_type

OIDS = {
    "id-ct-KP-keyPackageReceipt": "2.16.840.1.101.2.1.2.78.3",
    "id-ct-KP-keyPackageError": "2.16.840.1.101.2.1.2.78.6",
    "id-aa-KP-keyPkgIdAndReceiptReq": "2.16.840.1.101.2.1.5.65",
    "id-aa-binarySigningTime": "1.2.840.113549.1.9.16.2.46",
    "id-aa-contentIdentifier": "1.2.840.113549.1.9.16.2.7",
    "id-dn": "2.16.840.1.101.2.1.16.0",
}
RECEIPT = "key_package_receipt"
ERROR = "key_package_error"
RECEIPT_REQUEST = "key_pkg_id_and_receipt_req"


class KeyPkgID(core.OctetString):
    """Opaque; a receipt or error must repeat it exactly (RFC 7191 3)."""


class KeyPkgVersion(core.Integer):
    """v2 MUST be used; the DEFAULT is v2, so DER omits it."""

    _map = {1: "v1", 2: "v2"}


class SIREntityNameType(core.ObjectIdentifier):
    _map = {OIDS["id-dn"]: "dn"}


class SIREntityName(core.Sequence):
    """``siren_value`` holds the DER of the typed value (for ``dn``: a Name)."""

    _fields = [
        ("siren_type", SIREntityNameType),
        ("siren_value", core.OctetString),
    ]

    @classmethod
    def for_name(cls, name: x509.Name) -> "SIREntityName":
        """The id-dn form naming an X.500 distinguished name."""
        return cls({"siren_type": "dn", "siren_value": name.dump()})

    def name(self) -> x509.Name | None:
        """The distinguished name, for the id-dn type; None for other types."""
        if self["siren_type"].native != "dn":
            return None
        return x509.Name.load(self["siren_value"].native)


class SIREntityNames(core.SequenceOf):
    _child_spec = SIREntityName


class KeyPkgReceiptReq(core.Sequence):
    _fields = [
        ("encrypt_receipt", core.Boolean, {"default": False}),
        ("receipts_from", SIREntityNames, {"implicit": 0, "optional": True}),
        ("receipts_to", SIREntityNames),
    ]


class KeyPkgIdentifierAndReceiptReq(core.Sequence):
    """The signed attribute that names a key package and may ask for a receipt."""

    _fields = [
        ("pkg_id", KeyPkgID),
        ("receipt_req", KeyPkgReceiptReq, {"optional": True}),
    ]


class SetOfKeyPkgIdentifierAndReceiptReq(core.SetOf):
    _child_spec = KeyPkgIdentifierAndReceiptReq


class SingleAttribute(core.Sequence):
    """A CMS Attribute with exactly one value."""

    _fields = [
        ("type", cms.CMSAttributeType),
        ("values", cms.SetOfAny),
    ]


class KeyPkgIdentifier(core.Choice):
    """``pkg_id`` must be supported; ``attribute`` may be."""

    _alternatives = [
        ("pkg_id", KeyPkgID),
        ("attribute", SingleAttribute),
    ]


class KeyPackageReceipt(core.Sequence):
    _fields = [
        ("version", KeyPkgVersion, {"default": "v2"}),
        ("receipt_of", KeyPkgIdentifier),
        ("received_by", SIREntityName),
    ]


class EnumeratedErrorCode(core.Enumerated):
    """Codes up to 33 follow RFC 5934's; the list is extensible."""

    _map = {
        1: "decodeFailure", 2: "badContentInfo", 3: "badSignedData", 4: "badEncapContent",
        5: "badCertificate", 6: "badSignerInfo", 7: "badSignedAttrs", 8: "badUnsignedAttrs",
        9: "missingContent", 10: "noTrustAnchor", 11: "notAuthorized", 12: "badDigestAlgorithm",
        13: "badSignatureAlgorithm", 14: "unsupportedKeySize", 15: "unsupportedParameters",
        16: "signatureFailure", 17: "insufficientMemory", 23: "incorrectTarget", 29: "missingSignature",
        30: "resourcesBusy", 31: "versionNumberMismatch", 33: "revokedCertificate", 60: "ambiguousDecrypt",
        61: "noDecryptKey", 62: "badEncryptedData", 63: "badEnvelopedData", 64: "badAuthenticatedData",
        65: "badAuthEnvelopedData", 66: "badKeyAgreeRecipientInfo", 67: "badKEKRecipientInfo",
        68: "badEncryptContent", 69: "badEncryptAlgorithm", 70: "missingCiphertext", 71: "decryptFailure",
        72: "badMACAlgorithm", 73: "badAuthAttrs", 74: "badUnauthAttrs", 75: "invalidMAC",
        76: "mismatchedDigestAlg", 77: "missingCertificate", 78: "tooManySigners",
        79: "missingSignedAttributes", 80: "derEncodingNotUsed", 81: "missingContentHints",
        82: "invalidAttributeLocation", 83: "badMessageDigest", 84: "badKeyPackage", 85: "badAttributes",
        86: "attributeComparisonFailure", 87: "unsupportedSymmetricKeyPackage",
        88: "unsupportedAsymmetricKeyPackage", 89: "constraintViolation", 90: "ambiguousDefaultValue",
        91: "noMatchingRecipientInfo", 92: "unsupportedKeyWrapAlgorithm", 93: "badKeyTransRecipientInfo",
        127: "other",
    }


ERROR_CODES = dict(EnumeratedErrorCode._map)


class ErrorCodeChoice(core.Choice):
    _alternatives = [
        ("enum", EnumeratedErrorCode),
        ("oid", core.ObjectIdentifier),
    ]


class KeyPackageError(core.Sequence):
    """``error_of`` is absent when the key package could not be parsed far
    enough to find its identifier. A tagged CHOICE is explicitly tagged."""

    _fields = [
        ("version", KeyPkgVersion, {"default": "v2"}),
        ("error_of", KeyPkgIdentifier, {"explicit": 0, "optional": True}),
        ("error_by", SIREntityName),
        ("error_code", ErrorCodeChoice),
    ]


class BinaryTime(core.Integer):
    """RFC 6019: seconds since 1970-01-01T00:00:00Z."""


class SetOfBinaryTime(core.SetOf):
    _child_spec = BinaryTime


class SetOfContentIdentifier(core.SetOf):
    _child_spec = core.OctetString


def error_code_name(choice: ErrorCodeChoice) -> str:
    """A readable error code: its RFC 7191 name, the number, or the OID."""
    if choice.name == "oid":
        dotted: str = choice.chosen.dotted
        return dotted
    number = int(choice.chosen)  # int(), not .native: unknown codes (the list is extensible) are no error
    return ERROR_CODES.get(number, str(number))


register_content_type(RECEIPT, OIDS["id-ct-KP-keyPackageReceipt"], KeyPackageReceipt)
register_content_type(ERROR, OIDS["id-ct-KP-keyPackageError"], KeyPackageError)
register_attribute(RECEIPT_REQUEST, OIDS["id-aa-KP-keyPkgIdAndReceiptReq"], SetOfKeyPkgIdentifierAndReceiptReq)
register_attribute("binary_signing_time", OIDS["id-aa-binarySigningTime"], SetOfBinaryTime)
register_attribute("content_identifier", OIDS["id-aa-contentIdentifier"], SetOfContentIdentifier)

__all__ = ["ERROR", "ERROR_CODES", "OIDS", "RECEIPT", "RECEIPT_REQUEST", "BinaryTime", "EnumeratedErrorCode",
           "ErrorCodeChoice", "KeyPackageError", "KeyPackageReceipt", "KeyPkgID", "KeyPkgIdentifier",
           "KeyPkgIdentifierAndReceiptReq", "KeyPkgReceiptReq", "KeyPkgVersion", "SIREntityName",
           "SIREntityNames", "SingleAttribute", "error_code_name"]
