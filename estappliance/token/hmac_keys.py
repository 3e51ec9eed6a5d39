"""HMAC keys that never leave the token (CMC identity-proof keys).

Generic secret keys, sensitive and never extractable, usable only to sign
(compute a MAC). Blocking, like ``session.Token``: run on the PKCS#11 thread.
These helpers go through ``Token.run`` so a token failure drops the session
and surfaces as ``TokenUnavailable`` exactly as for the Token's own methods.
"""
from __future__ import annotations

from typing import cast

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import NoSuchKey
from pkcs11.types import SignMixin

from .session import Token

MECHANISMS = {
    "sha1": Mechanism.SHA_1_HMAC,
    "sha256": Mechanism.SHA256_HMAC,
    "sha384": Mechanism.SHA384_HMAC,
    "sha512": Mechanism.SHA512_HMAC,
}


def _secret_keys(session: pkcs11.Session, label: str) -> list[pkcs11.Object]:
    return list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}))


def import_hmac_key(token: Token, label: str, value: bytes) -> None:
    """Store ``value`` under ``label`` as an HMAC key, replacing any key of
    that label."""
    def op(session: pkcs11.Session) -> None:
        for old in _secret_keys(session, label):
            old.destroy()
        session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.LABEL: label, Attribute.VALUE: value,
            Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.SIGN: True, Attribute.VERIFY: False,
            Attribute.ENCRYPT: False, Attribute.DECRYPT: False, Attribute.WRAP: False, Attribute.UNWRAP: False,
            Attribute.DERIVE: False})
    token.run(op)


def hmac(token: Token, label: str, data: bytes, mac: str) -> bytes | None:
    """HMAC (``mac``: sha1, sha256, sha384, sha512) of ``data`` with the key
    ``label``; None if the token holds no such key."""
    def op(session: pkcs11.Session) -> bytes | None:
        try:
            # python-pkcs11 builds a key's class from its capabilities at run time.
            key = cast(SignMixin, session.get_key(object_class=ObjectClass.SECRET_KEY, label=label))
        except NoSuchKey:
            return None
        return bytes(key.sign(data, mechanism=MECHANISMS[mac]))
    return token.run(op)


def destroy(token: Token, label: str) -> bool:
    """Remove the key ``label``; False if there was none."""
    def op(session: pkcs11.Session) -> bool:
        found = _secret_keys(session, label)
        for key in found:
            key.destroy()
        return bool(found)
    return token.run(op)


__all__ = ["MECHANISMS", "destroy", "hmac", "import_hmac_key"]
