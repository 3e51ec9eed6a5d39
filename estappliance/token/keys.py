"""Token-held private keys that cryptography's builders can sign with.

``CertificateBuilder.sign()`` and ``CertificateRevocationListBuilder.sign()``
accept any subclass of ``ec.EllipticCurvePrivateKey`` / ``rsa.RSAPrivateKey``
and call its ``sign()``; these classes forward that call into the token. They
block, so use them only on the PKCS#11 thread. (Relied on, not documented by
cryptography: tests/test_token.py pins it.)
"""
from __future__ import annotations

from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from pkcs11 import Mechanism

from .session import Token

_RSA_PKCS1 = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}


def _refuse(*_args: object, **_kwargs: object) -> NoReturn:
    raise TypeError("a token key never leaves the token")


class TokenECKey(ec.EllipticCurvePrivateKey):
    def __init__(self, token: Token, label: str, public: ec.EllipticCurvePublicKey) -> None:
        self._token, self._label, self._public = token, label, public

    def sign(self, data: bytes | bytearray | memoryview, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = bytes(data)
        else:
            h = hashes.Hash(algorithm)
            h.update(data)
            digest = h.finalize()
        # SoftHSM2 has no CKM_ECDSA_SHA256: hash here, sign the digest, and
        # turn PKCS#11's raw r||s into the DER that X.509 and CMS carry.
        raw = self._token.sign(self._label, digest, Mechanism.ECDSA)
        half = len(raw) // 2
        return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    exchange = private_numbers = private_bytes = _refuse

    def __copy__(self) -> TokenECKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenECKey:
        return self


class TokenRSAKey(rsa.RSAPrivateKey):
    def __init__(self, token: Token, label: str, public: rsa.RSAPublicKey) -> None:
        self._token, self._label, self._public = token, label, public

    def sign(self, data: bytes | bytearray | memoryview, pad: padding.AsymmetricPadding,
             algorithm: utils.Prehashed | hashes.HashAlgorithm | utils.NoDigestInfo) -> bytes:
        if not isinstance(pad, padding.PKCS1v15) or not isinstance(algorithm, hashes.HashAlgorithm):
            raise TypeError("token RSA keys sign with PKCS#1 v1.5 over the whole message")
        if algorithm.name not in _RSA_PKCS1:
            raise TypeError(f"no token mechanism for {algorithm.name}")
        # The mechanism policy picks CKM_SHA*_RSA_PKCS, or CKM_RSA_PKCS over a DigestInfo.
        return self._token.sign_rsa_pkcs1(self._label, bytes(data), algorithm.name)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    decrypt = private_numbers = private_bytes = _refuse

    def __copy__(self) -> TokenRSAKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenRSAKey:
        return self


def token_private_key(token: Token, label: str) -> TokenECKey | TokenRSAKey:
    """A cryptography private key object whose operations run in the token."""
    public = serialization.load_der_public_key(token.public_key_der(label))
    if isinstance(public, ec.EllipticCurvePublicKey):
        return TokenECKey(token, label, public)
    if isinstance(public, rsa.RSAPublicKey):
        return TokenRSAKey(token, label, public)
    raise TypeError(f"unsupported token key type for {label!r}")


def signature_hash(public_key: PublicKeyTypes) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The hash we pair with a CA key: SHA-256, SHA-384 for P-384, SHA-512 for P-521."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.key_size == 384:
            return hashes.SHA384()
        if public_key.key_size == 521:
            return hashes.SHA512()
        return hashes.SHA256()
    return hashes.SHA256()
