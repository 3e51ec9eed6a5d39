"""RFC 6032 Encrypted Key Package (module id-mod-encryptedKeyPkgV1), in
asn1crypto style.

An ``EncryptedKeyPackage`` is a CHOICE of EncryptedData, [0] EnvelopedData or
[1] AuthEnvelopedData around a key package (RFC 5958, RFC 6031, possibly
signed first). Importing the module registers the content type
id-ct-KP-encryptedKeyPkg (name ``encrypted_key_package``) and the
ContentDecryptKeyID attribute (name ``content_decrypt_key_id``), which names
the symmetric key that decrypts an EncryptedData choice.
"""
from __future__ import annotations

from asn1crypto import cms, core

from ..signeddata import register_attribute, register_content_type

OIDS = {
    "id-ct-KP-encryptedKeyPkg": "2.16.840.1.101.2.1.2.78.2",
    "id-aa-KP-contentDecryptKeyID": "2.16.840.1.101.2.1.5.66",
}
CONTENT_TYPE = "encrypted_key_package"
CONTENT_DECRYPT_KEY_ID = "content_decrypt_key_id"


class ContentDecryptKeyID(core.OctetString):
    pass


class SetOfContentDecryptKeyID(core.SetOf):
    _child_spec = ContentDecryptKeyID


class EncryptedKeyPackage(core.Choice):
    """EnvelopedData is the choice every implementation must support (RFC 6032 2)."""

    _alternatives = [
        ("encrypted", cms.EncryptedData),
        ("enveloped", cms.EnvelopedData, {"implicit": 0}),
        ("auth_enveloped", cms.AuthEnvelopedData, {"implicit": 1}),
    ]


register_content_type(CONTENT_TYPE, OIDS["id-ct-KP-encryptedKeyPkg"], EncryptedKeyPackage)
register_attribute(CONTENT_DECRYPT_KEY_ID, OIDS["id-aa-KP-contentDecryptKeyID"], SetOfContentDecryptKeyID)

__all__ = ["CONTENT_DECRYPT_KEY_ID", "CONTENT_TYPE", "OIDS", "ContentDecryptKeyID", "EncryptedKeyPackage"]
