"""The policy engine for enrollment: who asks, under which label, for what.

Plain code over plain objects: every decision here can be tested without TLS
or a token. Every refusal is audited with the client's identity before it is
returned, and changes nothing else.
"""
from __future__ import annotations

from cryptography import x509
from twisted.internet import defer

from ..ca import CertificateAuthority, IssueRequest
from ..config import Config, Label
from ..errors import EstError, MalformedRequest, NotFound, PolicyRefused
from ..pki import csr as csrs
from ..store import Store, on_store_thread
from .auth import Authenticator, Credentials, Identity


class Registrar:
    def __init__(self, config: Config, authenticator: Authenticator, ca: CertificateAuthority, store: Store):
        self.config = config
        self.authenticator = authenticator
        self.ca = ca
        self.store = store

    def label(self, name: str | None) -> Label:
        label = self.config.label(name)
        if label is None:
            raise NotFound(f"no such CA label {name!r}")
        return label

    def cacerts(self, label_name: str | None) -> list[x509.Certificate]:
        self.label(label_name)
        return self.ca.ca_certificates()

    def check_csr(self, der: bytes, label: Label) -> x509.CertificateSigningRequest:
        """Parse and judge a CSR against the label's profile; raises on refusal."""
        try:
            csr = csrs.load_csr(der)
        except csrs.BadCSR as e:
            raise MalformedRequest(str(e)) from None
        if not csrs.signature_ok(csr):
            raise MalformedRequest("CSR signature does not verify (proof of possession failed)")
        key_type = csrs.key_type(csr.public_key())
        profile = label.profile
        if key_type not in profile.key_types:
            raise PolicyRefused(f"key type {key_type} not allowed by profile {profile.name!r}"
                                f" (allowed: {', '.join(profile.key_types)})")
        if not len(csr.subject) and csrs.requested_san(csr) is None:
            raise PolicyRefused("CSR has neither a subject nor a subjectAltName")
        return csr

    @defer.inlineCallbacks
    def simpleenroll(self, label_name: str | None, creds: Credentials, der: bytes):
        """Fires with the issued certificate."""
        identity: Identity | None = None
        label = None
        try:
            label = self.label(label_name)
            identity = yield self.authenticator.authenticate(creds, label)
            csr = self.check_csr(der, label)
        except EstError as e:
            yield self._refused("simpleenroll", e, identity, label, creds)
            raise
        cert = yield self.ca.issue(IssueRequest(
            subject=csr.subject, public_key=csr.public_key(), san=csrs.requested_san(csr),
            profile=label.profile, label=label.name, client=identity.name))
        return cert

    def _refused(self, operation: str, error: EstError, identity: Identity | None, label: Label | None,
                 creds: Credentials) -> defer.Deferred:
        who = identity.name if identity else (creds.username or _cert_name(creds) or None)
        return on_store_thread(self.store.audit, operation, f"refused: {type(error).__name__}",
                               client=who, label=label.name if label else None, detail=error.reason)


def _cert_name(creds: Credentials) -> str | None:
    return creds.peer_chain[0].subject.rfc4514_string() if creds.peer_chain else None
