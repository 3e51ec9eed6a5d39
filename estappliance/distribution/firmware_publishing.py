"""Publishing firmware (RFC 8295 6.1, RFC 4108): a package already signed
by its vendor, checked on import against the configured firmware trust
anchors, or a raw image signed here by the appliance's firmware signer.

Blocking, for ``estctl publish firmware``. The stored package is served as
is, to every client the target covers; receipts and errors come back naming
the package (``details["fw_name"]``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509

from ..ca import roles
from ..ca.authority import load_pem_certs
from ..config import Config
from ..pki import firmware
from ..store import Store
from ..store.package_tables import TARGET_KINDS, Package
from ..token import Token
from ..pki import pal_types
from .symmetric_publishing import PublishError

_ECT = {"firmware_package": "signedData", "compressed_data": "signedData, compressedData",
        "encrypted_data": "signedData, encryptedData"}


def media_type(content_type: str) -> str:
    """application/cms with its RFC 7193 parameters for a signed firmware package."""
    ect = _ECT.get(content_type, "signedData")
    quoted = f'"{ect}"' if "," in ect else ect
    return f"application/cms; encapsulatingContent={quoted}; innerContent=firmwarePackage"


def firmware_anchors(config: Config) -> list[x509.Certificate]:
    """The anchors ``[distribution] firmware_anchors`` names ("ca": this CA)."""
    out: list[x509.Certificate] = []
    for name in config.distribution.firmware_anchors:
        if name == "ca":
            out.append(x509.load_pem_x509_certificate(config.ca.cert_file.read_bytes()))
        else:
            out += load_pem_certs(config.trust_anchors[name])
    return out


@dataclass(frozen=True)
class Target:
    label: str
    kind: str  # client | group | label
    name: str

    def check(self, config: Config, store: Store) -> None:
        if config.label(self.label) is None:
            raise PublishError(f"no label {self.label!r} in the config")
        if self.kind not in TARGET_KINDS:
            raise PublishError(f"target must be one of {', '.join(TARGET_KINDS)}")
        if self.kind == "client":
            record = store.clients.client(self.name)  # None: a client known by its certificate only
            if record is not None and not record.may_use(self.label):
                raise PublishError(f"client {self.name!r} may not use label {self.label!r}")


def _queue(store: Store, target: Target, package: firmware.FirmwarePackage, origin: str) -> Package:
    return store.packages.queue_package(
        label=target.label, pal_type=pal_types.FIRMWARE, target_kind=target.kind, target=target.name,
        content=package.der, media_type=media_type(package.content_type),
        name=f"firmware {package.name}" + (f" ({package.description})" if package.description else ""),
        receipt_requested=True,
        details={"fw_name": package.name.key(), "targets": list(package.targets), "origin": origin,
                 "signer": package.signer.subject.rfc4514_string()})


def import_signed(config: Config, store: Store, der: bytes, target: Target) -> Package:
    """Queue a vendor-signed package after checking its signature and shape."""
    target.check(config, store)
    anchors = firmware_anchors(config)
    if not anchors:
        raise PublishError("no firmware trust anchor is configured: name one in [distribution] firmware_anchors")
    try:
        package = firmware.check(der, anchors)
    except firmware.BadFirmware as e:
        raise PublishError(f"firmware refused: {e}") from None
    return _queue(store, target, package, "imported")


@dataclass(frozen=True)
class FirmwareImage:
    image: bytes
    name: firmware.PackageName
    targets: tuple[str, ...]
    description: str | None = None
    stale_version: int | None = None
    package_type: int | None = None
    dependencies: tuple[firmware.PackageName, ...] = field(default_factory=tuple)


def sign_and_queue(config: Config, token: Token, store: Store, image: FirmwareImage, target: Target) -> Package:
    """Sign a raw image with the firmware signer (made on first use) and queue it."""
    target.check(config, store)
    if not image.targets:
        raise PublishError("give at least one target hardware module type (--target OID)")
    roles.ensure(config, token, store, "firmware")
    signer = roles.signer(config, token, "firmware")
    attrs = firmware.signed_attributes(image.name, list(image.targets), image.image,
                                       stale_version=image.stale_version, description=image.description,
                                       package_type=image.package_type, dependencies=list(image.dependencies),
                                       signer_cert=signer.certificate)
    der = signer.sign_blocking(firmware.FIRMWARE, image.image, signed_attrs=attrs)
    package = firmware.check(der, signer.ca_chain)
    return _queue(store, target, package, "signed by the appliance")


__all__ = ["FirmwareImage", "Target", "firmware_anchors", "import_signed", "media_type", "sign_and_queue"]
