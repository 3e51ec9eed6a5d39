"""Symmetric keys that never leave the token: key-encryption keys (KEKs)
shared with a device, and the key that seals small secrets kept in the store.

Blocking, like ``session.Token``: run on the PKCS#11 thread. These helpers go
through ``Token.run`` so a token failure drops the session and surfaces as
``TokenUnavailable`` exactly as for the Token's own methods.
"""
from __future__ import annotations

import os
from typing import cast

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import GeneralError, NoSuchKey
from pkcs11.mechanisms import GCMParams
from pkcs11.types import DecryptMixin, EncryptMixin, WrapMixin

from .session import Token

AES_SIZES = (16, 24, 32)
_NONCE = 12
_TAG_BITS = 128


def _secret_keys(session: pkcs11.Session, label: str) -> list[pkcs11.Object]:
    return list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}))


def create_kek(token: Token, label: str, value: bytes | None = None, size: int = 32) -> int:
    """Make (or, given ``value``, import) an AES KEK under ``label``: sensitive,
    never extractable, usable only to wrap. Returns its size in octets."""
    if value is not None:
        size = len(value)
    if size not in AES_SIZES:
        raise ValueError("a KEK is an AES key of 16, 24 or 32 octets")
    template = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.WRAP: True,
                Attribute.UNWRAP: False, Attribute.ENCRYPT: False, Attribute.DECRYPT: False}

    def op(session: pkcs11.Session) -> int:
        if _secret_keys(session, label):
            raise ValueError(f"the token already holds a secret key labelled {label!r}")
        if value is None:
            session.generate_key(KeyType.AES, size * 8, store=True, label=label, template=template)
        else:
            session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                                   Attribute.TOKEN: True, Attribute.LABEL: label, Attribute.VALUE: value,
                                   **template})
        return size
    return token.run(op)


def wrap_with_kek(token: Token, label: str, key: bytes) -> bytes:
    """RFC 3394 AES key wrap of ``key`` (e.g. a CMS content-encryption key)
    under the token KEK ``label``. The key to wrap is a session object that
    exists only for this call."""
    def op(session: pkcs11.Session) -> bytes:
        try:
            kek = cast(WrapMixin, session.get_key(object_class=ObjectClass.SECRET_KEY, label=label))
        except NoSuchKey:
            raise LookupError(f"no KEK {label!r} in the token") from None
        temporary = cast(pkcs11.SecretKey, session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE: key,
            Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}))
        try:
            return bytes(kek.wrap_key(temporary, mechanism=Mechanism.AES_KEY_WRAP))
        finally:
            temporary.destroy()
    return token.run(op)


def has_secret_key(token: Token, label: str) -> bool:
    return token.run(lambda session: bool(_secret_keys(session, label)))


def ensure_sealing_key(token: Token, label: str) -> None:
    """The AES-256 key that seals secrets for the store (made on first use).

    PKCS#11 has no "create if absent": worker processes (or nodes) starting
    together may each make one, so several keys under ``label`` are allowed:
    ``seal`` uses the first the token lists, ``unseal`` tries each."""
    def op(session: pkcs11.Session) -> None:
        if not _secret_keys(session, label):
            session.generate_key(KeyType.AES, 256, store=True, label=label, template={
                Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True, Attribute.WRAP: False, Attribute.UNWRAP: False})
    token.run(op)


def _sealing_keys(session: pkcs11.Session, label: str) -> list[pkcs11.Object]:
    keys = _secret_keys(session, label)
    if not keys:
        raise NoSuchKey(f"no secret key {label!r}")
    return keys


def seal(token: Token, label: str, plaintext: bytes, context: bytes) -> bytes:
    """AES-GCM in the token; ``context`` (e.g. the record's name) is bound as
    associated data, so a sealed value cannot be moved to another record."""
    nonce = os.urandom(_NONCE)

    def op(session: pkcs11.Session) -> bytes:
        key = cast(EncryptMixin, _sealing_keys(session, label)[0])
        # Bytes in, bytes out (an iterator only for an iterator of chunks).
        return nonce + cast(bytes, key.encrypt(plaintext, mechanism=Mechanism.AES_GCM,
                                         mechanism_param=GCMParams(nonce, context, _TAG_BITS)))
    return token.run(op)


def unseal(token: Token, label: str, sealed: bytes, context: bytes) -> bytes:
    """The plaintext; ValueError if the sealed value was altered or belongs to
    another context (the token stays in use)."""
    def op(session: pkcs11.Session) -> bytes:
        for key in _sealing_keys(session, label):
            try:
                return cast(bytes, cast(DecryptMixin, key).decrypt(
                    sealed[_NONCE:], mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(sealed[:_NONCE], context, _TAG_BITS)))
            except GeneralError:
                # SoftHSM2 reports a failed GCM tag as a general error: if the
                # token still answers, it was the data (or another of the keys).
                _sealing_keys(session, label)
        raise ValueError("the sealed secret does not open (altered, or another record's)")
    return token.run(op)
