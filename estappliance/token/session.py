"""A logged-in PKCS#11 session that survives the token going away.

Every method here is blocking and must run on the PKCS#11 thread (see
``worker.on_token_thread``) when called from a running service. Any PKCS#11
failure drops the session and raises ``TokenUnavailable``; the next call
re-initialises the library and logs in again, so the service recovers by
itself once the token is back.
"""
from __future__ import annotations

import os
import time
from typing import Callable, TypeVar, cast

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import (AttributeReadOnly, AttributeSensitive, KeyTypeInconsistent, KeyUnextractable,
                               MechanismInvalid, NoSuchKey, PKCS11Error, UserAlreadyLoggedIn)
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.types import SignMixin, WrapMixin
from pkcs11.util.rsa import encode_rsa_public_key
from asn1crypto.keys import PublicKeyInfo, RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
from cryptography.hazmat.primitives.padding import PKCS7

from .. import metrics
from ..config import TokenConfig
from ..errors import TokenCannot, TokenUnavailable
from .key_specs import KeySpec
from .policy import MechanismPolicy

T = TypeVar("T")

# One logged-in session per (module, token) for the whole process: PKCS#11
# login state is per application, and every call runs on the one PKCS#11
# thread anyway, so Token objects share it.
_SESSIONS: dict[tuple[str, str], pkcs11.Session] = {}
_STALE: dict[tuple[str, str], bool] = {}
# The mechanism policy of each token (policy.py), read once per process.
_POLICIES: dict[tuple[str, str], MechanismPolicy] = {}
# DigestInfo prefixes (RFC 8017 9.2) for RSA PKCS#1 v1.5 over a host-made hash.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


def drop_all() -> None:
    """Close every session of this process and re-initialise each library on
    its next use (after a call that hung: the state it left is suspect).
    Token objects notice the new session and forget the key handles they held."""
    for key in list(_SESSIONS):
        session = _SESSIONS.pop(key)
        _STALE[key] = True
        try:
            session.close()
        except (PKCS11Error, RuntimeError):
            pass




class TokenRefused(Exception):
    """The token is there but refuses the operation (e.g. the key is not extractable)."""


# Errors that say "not this operation", not "no token": the session is kept.
_REFUSALS = (KeyUnextractable, AttributeReadOnly, AttributeSensitive, MechanismInvalid, KeyTypeInconsistent)


class Token:
    """One PKCS#11 token, found by label, logged in as the user."""

    @classmethod
    def from_config(cls, settings: TokenConfig) -> Token:
        """The token ``[token]`` names (module, label, where the PIN is)."""
        return cls(settings.module, settings.label, settings.read_pin, settings.softhsm2_conf)

    def __init__(self, module: str | os.PathLike[str], label: str, pin: Callable[[], str],
                 softhsm2_conf: str | os.PathLike[str] | None = None) -> None:
        self._module = str(module)
        self._label = label
        self._pin = pin
        if softhsm2_conf is not None:
            # SoftHSM2 reads this once, when the library is first loaded; the
            # config names it so that an inherited variable cannot point us at
            # another token store.
            os.environ["SOFTHSM2_CONF"] = str(softhsm2_conf)
        self._session: pkcs11.Session | None = None
        self._keys: dict[str, tuple[pkcs11.PrivateKey, bytes]] = {}

    # -- session lifecycle -------------------------------------------------

    def _open(self) -> pkcs11.Session:
        key = (self._module, self._label)
        session = _SESSIONS.get(key)
        if session is None:
            try:
                lib = pkcs11.lib(self._module)
                if _STALE.pop(key, False):
                    lib.reinitialize()
                token = lib.get_token(token_label=self._label)
                try:
                    session = token.open(rw=True, user_pin=self._pin())
                except UserAlreadyLoggedIn:
                    # Login is per application: another session already did it.
                    session = token.open(rw=True)
            except (PKCS11Error, RuntimeError) as e:
                _STALE[key] = True
                raise TokenUnavailable(f"token {self._label!r} unavailable") from e
            _SESSIONS[key] = session
        if session is not self._session:
            self._session = session
            self._keys.clear()
        return session

    def _drop(self) -> None:
        """Forget the session after a failure; the next call starts afresh."""
        key = (self._module, self._label)
        session = _SESSIONS.pop(key, None)
        _STALE[key] = True
        self._session = None
        self._keys.clear()
        if session is not None:
            try:
                session.close()
            except PKCS11Error:
                pass

    def run(self, op: Callable[[pkcs11.Session], T]) -> T:
        session = self._open()
        try:
            return op(session)
        except _REFUSALS as e:
            # The token works; it refuses this operation on this key.
            raise TokenRefused(f"{type(e).__name__}") from e
        except (PKCS11Error, RuntimeError) as e:
            self._drop()
            raise TokenUnavailable(f"token {self._label!r} unavailable") from e

    # -- keys ----------------------------------------------------------------

    def _private_key(self, session: pkcs11.Session, label: str) -> tuple[pkcs11.PrivateKey, bytes]:
        cached = self._keys.get(label)
        if cached is None:
            priv = cast(pkcs11.PrivateKey, session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label))
            cached = (priv, _public_spki(session, label, priv))
            self._keys[label] = cached
        return cached

    def has_key(self, label: str) -> bool:
        def op(session: pkcs11.Session) -> bool:
            try:
                session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
                return True
            except NoSuchKey:
                return False
        return self.run(op)

    def public_key_der(self, label: str) -> bytes:
        """SubjectPublicKeyInfo (DER) of the key pair with this label."""
        return self.run(lambda s: self._private_key(s, label)[1])

    def private_key_attributes(self, label: str) -> dict[str, bool]:
        """The security attributes a CA key must have, as the token reports them."""
        def op(session: pkcs11.Session) -> dict[str, bool]:
            priv = self._private_key(session, label)[0]
            return {
                "sensitive": bool(priv[Attribute.SENSITIVE]),
                "extractable": bool(priv[Attribute.EXTRACTABLE]),
                "always_sensitive": bool(priv[Attribute.ALWAYS_SENSITIVE]),
                "never_extractable": bool(priv[Attribute.NEVER_EXTRACTABLE]),
            }
        return self.run(op)

    def sign(self, label: str, data: bytes, mechanism: Mechanism) -> bytes:
        started, ok = time.perf_counter(), False
        try:
            # A private key made to sign (CKA_SIGN): python-pkcs11 gives its class SignMixin at run time.
            signature = self.run(
                lambda s: bytes(cast(SignMixin, self._private_key(s, label)[0]).sign(data, mechanism=mechanism)))
            ok = True
            return signature
        finally:
            metrics.observe_token_op(mechanism.name, time.perf_counter() - started, ok)

    def policy(self) -> MechanismPolicy:
        """This token's MechanismPolicy (what each feature uses here)."""
        key = (self._module, self._label)
        cached = _POLICIES.get(key)
        if cached is None:
            cached = _POLICIES[key] = self.run(lambda s: MechanismPolicy.of_slot(s.token.slot))
        return cached

    def sign_rsa_pkcs1(self, label: str, data: bytes, hash_name: str) -> bytes:
        """RSASSA-PKCS1-v1_5 over ``data`` with the token's SHA-2 mechanism, or,
        where the token has none (opencryptoki's soft token), CKM_RSA_PKCS over
        a DigestInfo made on the host: the same signature."""
        mechanism, prehash = self.policy().rsa_signing(hash_name)
        if prehash:
            import hashlib
            data = _DIGEST_INFO[hash_name] + hashlib.new(hash_name, data).digest()
        return self.sign(label, data, mechanism)

    def generate_keypair(self, label: str, spec: KeySpec, *, extractable: bool = False) -> bytes:
        """Make a key pair inside the token; returns the public key (SPKI DER).

        The private key is always sensitive; it is extractable (wrappable) only
        when asked, for keys made on behalf of a device.
        """
        private_template = {
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: extractable,
            Attribute.SIGN: True,
            Attribute.DECRYPT: spec.kind == "rsa",
            Attribute.UNWRAP: False,
        }
        public_template = {Attribute.VERIFY: True, Attribute.ENCRYPT: spec.kind == "rsa",
                           Attribute.WRAP: False}

        def op(session: pkcs11.Session) -> bytes:
            try:
                session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
                raise ValueError(f"the token already holds a key labelled {label!r}")
            except NoSuchKey:
                pass
            if spec.kind == "ec":
                assert spec.curve is not None  # every EC spec names its curve
                params = session.create_domain_parameters(
                    KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(spec.curve)}, local=True)
                pub, _ = params.generate_keypair(store=True, label=label, public_template=public_template,
                                                 private_template=private_template)
                return bytes(encode_ec_public_key(pub))
            pub, _ = session.generate_keypair(KeyType.RSA, spec.bits, store=True, label=label,
                                              public_template=public_template,
                                              private_template=private_template)
            return _rsa_spki(pub)
        return self.run(op)

    # -- keys made for devices: they leave only wrapped -----------------------

    def export_key(self, session: pkcs11.Session, key: pkcs11.Key) -> bytes:
        """Wrap ``key`` under a throw-away session AES key and unwrap it here.

        The caller (the CA building a package for one device) needs the bytes
        to encrypt them again for that device; the transport key never
        outlives this call. The wrap is the policy's: AES key wrap where the
        token has it, else AES-CBC with PKCS#7 padding.
        """
        mechanism = self.policy().export_wrap()
        if mechanism is None:
            raise TokenCannot(self.policy().export_problem() or "the token cannot wrap a key out")
        transport = cast(WrapMixin, session.generate_key(KeyType.AES, 256, store=False, template={
            Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, Attribute.WRAP: True, Attribute.UNWRAP: False,
            Attribute.ENCRYPT: False, Attribute.DECRYPT: False}))
        try:
            if mechanism == Mechanism.AES_KEY_WRAP:
                wrapped = transport.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP)
                return aes_key_unwrap(bytes(transport[Attribute.VALUE]), wrapped)
            iv = os.urandom(16)
            wrapped = transport.wrap_key(key, mechanism=mechanism, mechanism_param=iv)
            decryptor = Cipher(algorithms.AES(bytes(transport[Attribute.VALUE])), modes.CBC(iv)).decryptor()
            unpadder = PKCS7(128).unpadder()
            return unpadder.update(decryptor.update(wrapped) + decryptor.finalize()) + unpadder.finalize()
        finally:
            transport.destroy()

    def export_private_key(self, label: str) -> bytes:
        """PKCS#8 PrivateKeyInfo (DER) of an extractable key pair."""
        def op(session: pkcs11.Session) -> bytes:
            priv = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
            padded = self.export_key(session, priv)
            # SoftHSM2 pads the wrapped PKCS#8 with zeros to a multiple of 8.
            return padded[:_der_length(padded)]
        return self.run(op)

    def generate_secret_key(self, label: str, bits: int = 256, *, extractable: bool = True) -> None:
        """An AES key inside the token (sensitive; wrappable when extractable)."""
        def op(session: pkcs11.Session) -> None:
            if list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})):
                raise ValueError(f"the token already holds a secret key labelled {label!r}")
            session.generate_key(KeyType.AES, bits, store=True, label=label, template={
                Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: extractable, Attribute.ENCRYPT: False,
                Attribute.DECRYPT: False, Attribute.WRAP: False, Attribute.UNWRAP: False})
        self.run(op)

    def export_secret_key(self, label: str) -> bytes:
        def op(session: pkcs11.Session) -> bytes:
            return self.export_key(session, session.get_key(object_class=ObjectClass.SECRET_KEY, label=label))
        return self.run(op)

    def seal(self, label: str) -> None:
        """Make a key non-extractable for good (escrow after delivery)."""
        def op(session: pkcs11.Session) -> None:
            for obj in session.get_objects({Attribute.LABEL: label}):
                if obj.object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY):
                    obj[Attribute.EXTRACTABLE] = False
        self.run(op)

    def key_labels(self, prefix: str = "") -> list[str]:
        """Labels of the private and secret keys in the token (for audits and tests)."""
        def op(session: pkcs11.Session) -> list[str]:
            labels: set[str] = set()
            for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY):
                for obj in session.get_objects({Attribute.CLASS: cls}):
                    key = cast(pkcs11.Key, obj)  # the classes asked for are keys
                    if key.label and key.label.startswith(prefix):
                        labels.add(key.label)
            return sorted(labels)
        return self.run(op)

    def destroy_keypair(self, label: str) -> None:
        def op(session: pkcs11.Session) -> None:
            for cls in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.SECRET_KEY):
                for obj in list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: label})):
                    obj.destroy()
            self._keys.pop(label, None)
        self.run(op)


def _public_spki(session: pkcs11.Session, label: str, priv: pkcs11.PrivateKey) -> bytes:
    pub = cast(pkcs11.PublicKey, session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label))
    if priv.key_type == KeyType.EC:
        return bytes(encode_ec_public_key(pub))
    return _rsa_spki(pub)


def _der_length(der: bytes) -> int:
    """Total length of the DER TLV at the start of ``der``."""
    if len(der) < 2:
        raise ValueError("truncated DER")
    first = der[1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    return 2 + n + int.from_bytes(der[2:2 + n], "big")


def _rsa_spki(pub: pkcs11.PublicKey) -> bytes:
    # python-pkcs11 encodes RSA public keys as PKCS#1; callers want SPKI.
    spki: bytes = PublicKeyInfo.wrap(RSAPublicKey.load(encode_rsa_public_key(pub)), "rsa").dump()
    return spki
