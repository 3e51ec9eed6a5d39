"""RFC 5958 Asymmetric Key Packages (module id-mod-asymmetricKeyPkgV1), in
asn1crypto style.

``OneAsymmetricKey`` is PKCS#8 ``PrivateKeyInfo`` grown a version 2 with an
optional public key; ``AsymmetricKeyPackage`` is a SEQUENCE of them and the
content of CMS content type id-ct-KP-aKeyPackage. Importing the module
registers that content type with asn1crypto (name ``asymmetric_key_package``)
so SignedData, EnvelopedData and EncryptedKeyPackage layers decode it.
"""
from __future__ import annotations

from asn1crypto import cms, core, keys

from ..signeddata import register_content_type

OIDS = {
    "id-ct-KP-aKeyPackage": "2.16.840.1.101.2.1.2.78.5",
}
CONTENT_TYPE = "asymmetric_key_package"


class Version(core.Integer):
    _map = {0: "v1", 1: "v2"}


class OneAsymmetricKey(core.Sequence):
    """RFC 5958 2: v1 (0) without ``public_key``, v2 (1) when it is present.

    ``private_key`` stays an OCTET STRING (its content depends on the
    algorithm: RSAPrivateKey, ECPrivateKey, ...); ``to_pkcs8`` gives DER that
    ``cryptography`` loads.
    """

    _fields = [
        ("version", Version),
        ("private_key_algorithm", keys.PrivateKeyAlgorithm),
        ("private_key", core.OctetString),
        ("attributes", cms.CMSAttributes, {"implicit": 0, "optional": True}),
        ("public_key", core.OctetBitString, {"implicit": 1, "optional": True}),
    ]

    @classmethod
    def from_pkcs8(cls, der: bytes) -> "OneAsymmetricKey":
        """A PKCS#8 PrivateKeyInfo (DER) read as a OneAsymmetricKey."""
        key: OneAsymmetricKey = cls.load(der, strict=True)
        key.native  # noqa: B018 - parse everything now, so bad input fails here
        return key

    def to_pkcs8(self) -> bytes:
        """DER PrivateKeyInfo v1 (version 0, no public key): what every PKCS#8
        reader takes; the private key octets are kept byte for byte."""
        info = {
            "version": "v1",
            "private_key_algorithm": self["private_key_algorithm"],
            "private_key": self["private_key"],
        }
        if self["attributes"].native is not None:
            info["attributes"] = self["attributes"]
        out: bytes = OneAsymmetricKey(info).dump(force=True)
        return out


PrivateKeyInfo = OneAsymmetricKey


class AsymmetricKeyPackage(core.SequenceOf):
    """SEQUENCE SIZE (1..MAX) OF OneAsymmetricKey."""

    _child_spec = OneAsymmetricKey


class EncryptedPrivateKeyInfo(keys.EncryptedPrivateKeyInfo):
    """RFC 5958 3 (the PKCS#8 structure, re-exported under the RFC's name)."""


register_content_type(CONTENT_TYPE, OIDS["id-ct-KP-aKeyPackage"], AsymmetricKeyPackage)

__all__ = ["CONTENT_TYPE", "OIDS", "AsymmetricKeyPackage", "EncryptedPrivateKeyInfo", "OneAsymmetricKey",
           "PrivateKeyInfo", "Version"]
