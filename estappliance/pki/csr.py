"""PKCS#10 certification requests: parse, check, read what they ask for."""
from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import AttributeOID

from .errors import PkiError

_CURVE_NAMES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}


class BadCSR(PkiError):
    """The bytes are not a usable PKCS#10 request."""


def load_csr(der: bytes) -> x509.CertificateSigningRequest:
    """Parse a DER CSR, touching the fields we rely on so bad input fails here."""
    try:
        csr = x509.load_der_x509_csr(der)
        csr.subject  # noqa: B018 - force parsing
        csr.public_key()
        csr.extensions  # noqa: B018
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension, x509.UnsupportedGeneralNameType,
            x509.InvalidVersion) as e:
        raise BadCSR(f"not a PKCS#10 request ({_short(e)})") from None
    return csr


def signature_ok(csr: x509.CertificateSigningRequest) -> bool:
    """The CSR's self-signature (its proof of possession) verifies.

    Checked by hand rather than with ``is_signature_valid``, which refuses
    SHA-1: a SHA-1 self-signature still proves possession of the key, and
    RFC 7030's own example requests use it.
    """
    key = csr.public_key()
    try:
        algorithm = csr.signature_hash_algorithm
        data, signature = csr.tbs_certrequest_bytes, csr.signature
        if isinstance(key, rsa.RSAPublicKey):
            pad = csr.signature_algorithm_parameters
            if algorithm is None or isinstance(pad, ec.ECDSA):
                return False  # what verify() would have refused (TypeError)
            key.verify(signature, data, pad if pad is not None else padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if algorithm is None:
                return False  # what ECDSA(None) would have refused (TypeError)
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def key_type(public_key: PublicKeyTypes) -> str:
    """A profile key-type name (``ec-p256``, ``rsa3072``...) or a description of an unknown key."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa{public_key.key_size}"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _CURVE_NAMES.get(public_key.curve.name, f"ec-{public_key.curve.name}")
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "ed448"
    return type(public_key).__name__


def requested_san(csr: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def challenge_password(csr: x509.CertificateSigningRequest) -> bytes | None:
    try:
        return csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return None


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:80]
