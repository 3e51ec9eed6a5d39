"""A token key that signs certificate, CRL and CSR builders (the key never
leaves the token: ``token_private_key`` gives a ``cryptography`` key object
whose ``sign`` runs in the token). Blocking: use it on the PKCS#11 thread."""
from __future__ import annotations

from cryptography import x509

from ..token import Token, signature_hash, token_private_key
from ..token.keys import TokenECKey, TokenRSAKey


class TokenSigner:
    """Signs builders with one token key. Blocking: use on the PKCS#11 thread."""

    def __init__(self, token: Token, key_label: str) -> None:
        self.token = token
        self.key_label = key_label
        self._key: TokenECKey | TokenRSAKey | None = None

    def key(self) -> TokenECKey | TokenRSAKey:
        if self._key is None:
            self._key = token_private_key(self.token, self.key_label)
        return self._key

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        key = self.key()
        return builder.sign(key, signature_hash(key.public_key()))

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList:
        key = self.key()
        return builder.sign(key, signature_hash(key.public_key()))

    def sign_csr(self, builder: x509.CertificateSigningRequestBuilder) -> x509.CertificateSigningRequest:
        key = self.key()
        return builder.sign(key, signature_hash(key.public_key()))
