"""The issuing CA: signs in the token, records in the store, then answers.

The certificate is durably in the store before the Deferred that carries it
fires, so nothing is handed out that the appliance does not know about.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from twisted.internet import defer

from ..config import Profile
from ..pki import certs
from ..store import DuplicateSerial, Store
from ..store.group import GroupCommitter
from ..token import on_token_thread
from .generations import LiveGeneration, cacerts
from .signer import TokenSigner

SERIAL_ATTEMPTS = 3


@dataclass(frozen=True)
class IssueRequest:
    subject: x509.Name
    public_key: CertificatePublicKeyTypes
    san: x509.SubjectAlternativeName | None
    profile: Profile
    label: str
    client: str | None
    replaces: int | None = None  # serial of the certificate renewed or rekeyed
    pending_id: int | None = None  # the approved request this fulfils


def load_pem_certs(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file; an empty file holds none."""
    data = path.read_bytes()
    return x509.load_pem_x509_certificates(data) if data.strip() else []


class CertificateAuthority:
    def __init__(self, signer: TokenSigner, certificate: x509.Certificate, chain: list[x509.Certificate],
                 store: Store) -> None:
        self.signer = signer
        self.certificate = certificate
        self.chain = chain
        self.store = store
        self.recorder = GroupCommitter(store)
        self.generations: list[LiveGeneration] = []  # LiveGeneration, current first (ca/generations.py); empty: one CA, no rollover

    def apply_generations(self, generations: list[LiveGeneration]) -> None:
        """Sign from now on with the current generation's key (on the reactor
        thread: a request already signing keeps the builder it made)."""
        current = next(g for g in generations if g.state == "current")
        if current.record.key_label != self.signer.key_label:
            self.signer = TokenSigner(self.signer.token, current.record.key_label)
        assert current.certificate is not None, "the current generation has its certificate"
        self.certificate = current.certificate
        self.chain = current.chain
        self.generations = generations

    @classmethod
    def from_files(cls, signer: TokenSigner, cert_file: Path, chain_file: Path | None, store: Store) -> CertificateAuthority:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        chain = load_pem_certs(chain_file) if chain_file is not None and chain_file.exists() else []
        return cls(signer, cert, chain, store)

    def ca_certificates(self) -> list[x509.Certificate]:
        """What /cacerts serves: the issuing CA, then the rest of its chain
        (and, during a key update, the other generation and the links)."""
        if self.generations:
            return cacerts(self.generations)
        return [self.certificate, *[c for c in self.chain if c != self.certificate]]

    def check_key_matches(self) -> defer.Deferred[bool]:
        """Fires with True if the token key is the CA certificate's key."""
        def compare() -> bool:
            spki = self.signer.token.public_key_der(self.signer.key_label)
            return spki == self.certificate.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return on_token_thread(compare)

    def builder(self, req: IssueRequest, now: datetime.datetime | None = None) -> x509.CertificateBuilder:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return certs.end_entity(
            subject=req.subject, public_key=req.public_key, issuer=self.certificate,
            serial=x509.random_serial_number(), now=now, days=req.profile.validity_days,
            key_usages=req.profile.key_usage, extended_key_usages=req.profile.extended_key_usage,
            san=req.san if req.profile.copy_san else None)

    @defer.inlineCallbacks
    def issue(self, req: IssueRequest) -> Generator[defer.Deferred[Any], Any, x509.Certificate]:
        """Sign in the token and record durably; fires with the certificate."""
        for attempt in range(SERIAL_ATTEMPTS):
            cert: x509.Certificate = yield on_token_thread(self.signer.sign_certificate, self.builder(req))
            try:
                yield self.recorder.record_certificate(
                    serial=cert.serial_number, subject=cert.subject.rfc4514_string(),
                    not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, label=req.label,
                    client=req.client, der=cert.public_bytes(serialization.Encoding.DER), replaces=req.replaces,
                    pending_id=req.pending_id)
            except DuplicateSerial:
                if attempt == SERIAL_ATTEMPTS - 1:
                    raise
                continue
            return cert
        raise AssertionError("unreachable: the last attempt returns or raises")
