"""Signing CMS content (key packages, CMC responses, distributed packages)
with the content-signer key in the token."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.internet import defer

from ..errors import Unavailable
from asn1crypto import core

from ..pki import signeddata
from ..token import Token, on_token_thread, token_private_key
from ..token.keys import TokenECKey, TokenRSAKey


class ContentSigner:
    def __init__(self, token: Token, key_label: str, cert_file: Path | None, ca_chain: list[x509.Certificate]) -> None:
        self.token = token
        self.key_label = key_label
        self.cert_file = cert_file
        self.ca_chain = ca_chain
        self._cert: x509.Certificate | None = None
        self._key: TokenECKey | TokenRSAKey | None = None

    @property
    def certificate(self) -> x509.Certificate:
        if self._cert is None:
            if self.cert_file is None or not self.cert_file.exists():
                raise Unavailable("the content signer is not set up (run 'estctl ca signer')")
            self._cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        return self._cert

    def reload(self, ca_chain: list[x509.Certificate]) -> None:
        """After a CA key switch: the certificate file was re-issued under the new key."""
        self._cert = None
        self.ca_chain = ca_chain

    # kwargs: passed through to pki.signeddata.sign (its keyword options).
    def _sign_blocking(self, content_type: str, content: bytes | core.Asn1Value,
                       kwargs: dict[str, Any]) -> bytes:
        if self._key is None:
            self._key = token_private_key(self.token, self.key_label)
        kwargs.setdefault("certificates", [self.certificate, *self.ca_chain])
        return signeddata.sign(content_type, content, self._key, self.certificate, **kwargs)

    def sign(self, content_type: str, content: bytes | core.Asn1Value,
             **kwargs: Any) -> defer.Deferred[bytes]:
        """ContentInfo(SignedData) DER; see ``pki.signeddata.sign`` for options."""
        cert = self.certificate  # raise Unavailable here, before the thread hop
        del cert
        return on_token_thread(self._sign_blocking, content_type, content, kwargs)

    def sign_blocking(self, content_type: str, content: bytes | core.Asn1Value, **kwargs: Any) -> bytes:
        """The same, for estctl and code already on the PKCS#11 thread."""
        return self._sign_blocking(content_type, content, kwargs)
