"""RFC 4108 firmware packages: sign one, check one, read load receipts and
load errors. Pure: the signing key is passed in (a token key in the service).

Profile followed (RFC 4108 section 2): ContentInfo(SignedData v3), exactly
one digest algorithm and one SignerInfo (v3, subjectKeyIdentifier), signed
attributes content-type, message-digest, firmware-package-identifier,
target-hardware-module-identifiers, plus signing-time, content-hints,
firmware-package-message-digest and firmware-package-info when there are
dependencies or a package type.
"""
from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .errors import PkiError
from . import signeddata
from .asn1 import rfc4108
from .maybe_signed import open_content_info, reading
from .trust import Untrusted, carried_certificates, chain_to_anchor
from .encoding import der

FIRMWARE = "firmware_package"
RECEIPT = "firmware_load_receipt"
ERROR = "firmware_load_error"
# What RFC 4108 allows the SignedData to encapsulate.
_ENCAPSULATED = {FIRMWARE, "compressed_data", "encrypted_data"}


class BadFirmware(PkiError):
    """Not an RFC 4108 firmware package, or one that does not verify."""


class BadFirmwareReport(PkiError):
    """Not a firmware load receipt or load error we can read."""


@dataclass(frozen=True)
class PackageName:
    """PreferredOrLegacyPackageIdentifier: (OID, version) or opaque legacy bytes."""

    oid: str | None = None
    version: int | None = None
    legacy: bytes | None = None

    def __post_init__(self) -> None:
        if (self.legacy is None) == (self.oid is None):
            raise ValueError("a firmware package name is an OID with a version, or a legacy name")
        if self.oid is not None and (self.version is None or self.version < 0):
            raise ValueError("a preferred firmware package name needs a version number >= 0")

    def asn1(self) -> rfc4108.PreferredOrLegacyPackageIdentifier:
        if self.legacy is not None:
            return rfc4108.PreferredOrLegacyPackageIdentifier(name="legacy", value=self.legacy)
        return rfc4108.PreferredOrLegacyPackageIdentifier(
            name="preferred", value={"fw_pkg_id": self.oid, "ver_num": self.version})

    @classmethod
    def from_asn1(cls, value: rfc4108.PreferredOrLegacyPackageIdentifier) -> "PackageName":
        if value.name == "legacy":
            return cls(legacy=value.native)
        return cls(oid=value.chosen["fw_pkg_id"].dotted, version=value.chosen["ver_num"].native)

    def key(self) -> str:
        """A stable text form, to match a receipt to the package it names."""
        return f"legacy:{self.legacy.hex()}" if self.legacy is not None else f"{self.oid}:{self.version}"

    def __str__(self) -> str:
        if self.legacy is not None:
            return self.legacy.decode("utf-8", "replace")
        return f"{self.oid} version {self.version}"


@dataclass(frozen=True)
class FirmwarePackage:
    """What a checked firmware package says about itself."""

    der: bytes
    name: PackageName
    targets: tuple[str, ...]
    content_type: str
    image: bytes  # the eContent (the firmware, or its compressed/encrypted form)
    signer: x509.Certificate
    anchor: x509.Certificate | None
    stale_version: int | None = None
    description: str | None = None
    dependencies: tuple[PackageName, ...] = field(default_factory=tuple)


def signing_certificate(cert: x509.Certificate) -> signeddata.AttributeDict:
    """ESS signing-certificate-v2 (RFC 5035) naming the signer's certificate:
    a SHOULD of RFC 4108 2.2 when the signer has one."""
    asn1_cert = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    return {"type": "signing_certificate_v2", "values": [tsp.SigningCertificateV2({"certs": [{
        "cert_hash": hashlib.sha256(asn1_cert.dump()).digest(),
        "issuer_serial": {"issuer": [asn1_x509.GeneralName(name="directory_name", value=asn1_cert.issuer)],
                          "serial_number": asn1_cert.serial_number}}]})]}


def signed_attributes(name: PackageName, targets: list[str], image: bytes, *, stale_version: int | None = None,
                      description: str | None = None, package_type: int | None = None,
                      dependencies: Sequence[PackageName] = (), signer_cert: x509.Certificate | None = None
                      ) -> list[signeddata.AttributeDict]:
    """The RFC 4108 signed attributes beyond content-type, message-digest and signing-time."""
    if not targets:
        raise ValueError("a firmware package needs at least one target hardware module type")
    package_id: dict[str, Any] = {"name": name.asn1()}
    if stale_version is not None:
        package_id["stale"] = rfc4108.PreferredOrLegacyStalePackageIdentifier(
            name="preferred_stale_ver_num", value=stale_version)
    attrs: list[signeddata.AttributeDict] = [
        {"type": "firmware_package_id", "values": [rfc4108.FirmwarePackageIdentifier(package_id)]},
        {"type": "target_hardware_ids", "values": [rfc4108.TargetHardwareIdentifiers(list(targets))]},
        {"type": "content_hints", "values": [rfc4108.ContentHints(
            {"content_description": description, "content_type": rfc4108.OIDS["id-ct-firmwarePackage"]}
            if description else {"content_type": rfc4108.OIDS["id-ct-firmwarePackage"]})]},
        {"type": "firmware_package_message_digest", "values": [rfc4108.FirmwarePackageMessageDigest(
            {"algorithm": {"algorithm": "sha256"}, "msg_digest": hashlib.sha256(image).digest()})]},
    ]
    if package_type is not None or dependencies:
        info: dict[str, Any] = {}
        if package_type is not None:
            info["fw_pkg_type"] = package_type
        if dependencies:
            info["dependencies"] = [d.asn1() for d in dependencies]
        attrs.append({"type": "firmware_package_info", "values": [rfc4108.FirmwarePackageInfo(info)]})
    if signer_cert is not None:
        attrs.append(signing_certificate(signer_cert))
    return attrs


def sign(image: bytes, key: signeddata.SigningKey, cert: x509.Certificate, *, name: PackageName, targets: list[str],
         certificates: list[x509.Certificate] | None = None, signing_time: datetime.datetime | None = None,
         **attrs: Any) -> bytes:
    """ContentInfo(SignedData(firmwarePackage)) DER, signed with ``key``."""
    return signeddata.sign(FIRMWARE, image, key, cert, certificates=certificates, use_ski=True,
                           signing_time=signing_time,
                           signed_attrs=signed_attributes(name, targets, image, signer_cert=cert, **attrs))


def _attr(attrs: cms.CMSAttributes, name: str) -> Any:  # the attribute's asn1crypto value, or None
    found = [a for a in attrs if a["type"].native == name]
    if len(found) > 1:
        raise BadFirmware(f"more than one {name} attribute (RFC 4108 2.2)")
    if not found:
        return None
    if len(found[0]["values"]) != 1:
        raise BadFirmware(f"{name} attribute must have exactly one value")
    return found[0]["values"][0]


def check(der: bytes, anchors: list[x509.Certificate] | None, *,
          at: datetime.datetime | None = None) -> FirmwarePackage:
    """Parse a signed firmware package, verify its signature and its RFC 4108
    shape, and (unless ``anchors`` is None) that the signer leads to one of
    ``anchors`` (a TA signing directly, or through carried certificates)."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise BadFirmware("a firmware package is a ContentInfo holding SignedData (RFC 4108 2)")
        sd = info["content"]
        if len(sd["signer_infos"]) != 1 or len(sd["digest_algorithms"]) != 1:
            raise BadFirmware("a firmware package has exactly one signer and one digest algorithm")
        if sd["version"].native != "v3":
            raise BadFirmware("firmware SignedData must be version 3 (RFC 4108 2.1)")
    except (ValueError, TypeError, KeyError, AttributeError, UnsupportedAlgorithm, x509.InvalidVersion) as e:
        if isinstance(e, BadFirmware):
            raise
        raise BadFirmware(f"not a CMS ContentInfo: {e}") from None
    carried = carried_certificates(der)
    try:
        verified = signeddata.verify(der, list(anchors or []))
    except signeddata.BadSignedData as e:
        raise BadFirmware(f"signature check failed: {e}") from None
    if verified.content_type not in _ENCAPSULATED:
        raise BadFirmware(f"encapsulated content {verified.content_type} is not a firmware package")
    anchor = None
    if anchors is not None:
        try:
            anchor = chain_to_anchor(verified.signer_certificate, anchors, carried, at=at)
        except Untrusted as e:
            raise BadFirmware(f"not signed by a trusted firmware signer: {e}") from None
    try:
        package_id = _attr(verified.signed_attrs, "firmware_package_id")
        targets = _attr(verified.signed_attrs, "target_hardware_ids")
        if package_id is None:
            raise BadFirmware("firmware-package-identifier attribute missing (RFC 4108 2.2.1)")
        if targets is None or not len(targets):
            raise BadFirmware("target-hardware-module-identifiers attribute missing (RFC 4108 2.2.2)")
        name = PackageName.from_asn1(package_id["name"])
        stale = package_id["stale"]
        stale_version = (stale.chosen.native if not isinstance(stale, core.Void)
                         and stale.name == "preferred_stale_ver_num" else None)
        hints = _attr(verified.signed_attrs, "content_hints")
        description = hints["content_description"].native if hints is not None else None
        fw_digest = _attr(verified.signed_attrs, "firmware_package_message_digest")
        if fw_digest is not None and verified.content_type == FIRMWARE:
            algorithm = fw_digest["algorithm"]["algorithm"].native
            if algorithm in ("sha256", "sha384", "sha512") and \
                    hashlib.new(algorithm, verified.content).digest() != fw_digest["msg_digest"].native:
                raise BadFirmware("firmware-package-message-digest does not match the firmware")
        info_attr = _attr(verified.signed_attrs, "firmware_package_info")
        dependencies: tuple[PackageName, ...] = ()
        if info_attr is not None and info_attr["dependencies"].native is not None:
            dependencies = tuple(PackageName.from_asn1(d) for d in info_attr["dependencies"])
        return FirmwarePackage(der=der, name=name, targets=tuple(t.dotted for t in targets),
                               content_type=verified.content_type, image=verified.content,
                               signer=verified.signer_certificate, anchor=anchor, stale_version=stale_version,
                               description=description, dependencies=dependencies)
    except (ValueError, TypeError, KeyError, AttributeError, UnsupportedAlgorithm, x509.InvalidVersion) as e:
        if isinstance(e, BadFirmware):
            raise
        raise BadFirmware(f"unreadable firmware attributes: {e}") from None


# -- load receipts and load errors (RFC 4108 3 and 4) ---------------------------------


@dataclass(frozen=True)
class FirmwareReport:
    """A load receipt (error_code None) or a load error, and who signed it."""

    kind: str  # RECEIPT or ERROR
    hw_type: str
    hw_serial: bytes
    name: PackageName | None
    error_code: int | None
    vendor_error_code: int | None
    signer: x509.Certificate | None
    der: bytes

    @property
    def error_name(self) -> str | None:
        return None if self.error_code is None else rfc4108.LOAD_ERROR_CODES.get(self.error_code, "unknown")


def receipt(hw_type: str, hw_serial: bytes, name: PackageName, *, trust_anchor_key_id: bytes | None = None
            ) -> rfc4108.FirmwarePackageLoadReceipt:
    value = {"hw_type": hw_type, "hw_serial_num": hw_serial, "fw_pkg_name": name.asn1()}
    if trust_anchor_key_id is not None:
        value["trust_anchor_key_id"] = trust_anchor_key_id
    return rfc4108.FirmwarePackageLoadReceipt(value)


def load_error(hw_type: str, hw_serial: bytes, code: int, name: PackageName | None = None, *,
               vendor_code: int | None = None) -> rfc4108.FirmwarePackageLoadError:
    if code not in rfc4108.LOAD_ERROR_CODES:
        raise ValueError(f"unknown firmware load error code {code}")
    value = {"hw_type": hw_type, "hw_serial_num": hw_serial, "error_code": code}
    if vendor_code is not None:
        value["vendor_error_code"] = vendor_code
    if name is not None:
        value["fw_pkg_name"] = name.asn1()
    return rfc4108.FirmwarePackageLoadError(value)


def enumerated(value: core.Enumerated) -> int:
    """The number of an ENUMERATED, also for values outside our map."""
    return int.from_bytes(value.contents, "big", signed=True)


def unsigned(kind: str, value: core.Asn1Value) -> bytes:
    """ContentInfo DER of an unsigned receipt or error (RFC 4108 allows both)."""
    return der(cms.ContentInfo({"content_type": kind, "content": value}))


def read_report(der: bytes, candidates: list[x509.Certificate] | None = None) -> FirmwareReport:
    """Parse a load receipt or load error, signed (its signature checked) or not."""
    with reading(BadFirmwareReport, "firmware report"):
        opened = open_content_info(der, candidates, (RECEIPT, ERROR))
        kind, content, signer = opened.content_type, opened.content, opened.signer
        if kind == RECEIPT:
            value = rfc4108.FirmwarePackageLoadReceipt.load(content, strict=True)
            value.native  # parse everything now, inside the try
            return FirmwareReport(RECEIPT, value["hw_type"].dotted, value["hw_serial_num"].native,
                                  PackageName.from_asn1(value["fw_pkg_name"]), None, None, signer, der)
        if kind == ERROR:
            value = rfc4108.FirmwarePackageLoadError.load(content, strict=True)
            value["config"].native  # parse the rest now; error_code is read by number below
            name = value["fw_pkg_name"]
            return FirmwareReport(ERROR, value["hw_type"].dotted, value["hw_serial_num"].native,
                                  None if isinstance(name, core.Void) else PackageName.from_asn1(name),
                                  enumerated(value["error_code"]), value["vendor_error_code"].native, signer, der)
    raise BadFirmwareReport(f"{kind} is neither a firmware load receipt nor a load error")


__all__ = ["BadFirmware", "BadFirmwareReport", "FirmwarePackage", "FirmwareReport", "PackageName",
           "check", "load_error", "read_report", "receipt", "sign", "signed_attributes", "unsigned"]
