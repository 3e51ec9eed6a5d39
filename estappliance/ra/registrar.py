"""The policy engine for enrollment: who asks, under which label, for what.

Plain code over plain objects: every decision here can be tested without TLS
or a token. Every refusal is audited with the client's identity before it is
returned, and changes nothing else.
"""
from __future__ import annotations

import base64
import hmac
from typing import Any, Callable, Generator, Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import defer

from ..ca import CertificateAuthority, IssueRequest
from ..config import Config, Label
from ..errors import AuthenticationRequired, EstError, NotAuthorized, NotFound, Pending, PolicyRefused
from ..pki import csr as csrs
from ..pki import csrattrs, csrtemplate
from ..pki.asn1.rfc7030 import Attribute
from ..store import Store, on_store_thread
from . import csrtemplates, profiles
from .approvals import Approvals, Fulfilled, Submission
from .auth import OWN_CA, Authenticator, Credentials, Identity


# The request's DER, or a callable giving it (raising MalformedRequest).
Body = Union[bytes, Callable[[], bytes]]


class Registrar:
    def __init__(self, config: Config, authenticator: Authenticator, ca: CertificateAuthority, store: Store) -> None:
        self.config = config
        self.authenticator = authenticator
        self.ca = ca
        self.store = store
        self.approvals = Approvals(ca, store, config.server.retry_after)

    def label(self, name: str | None) -> Label:
        label = self.config.label(name)
        if label is None:
            raise NotFound(f"no such CA label {name!r}")
        return label

    def cacerts(self, label_name: str | None) -> list[x509.Certificate]:
        self.label(label_name)
        return self.ca.ca_certificates()

    def csrattrs(self, label_name: str | None) -> bytes | None:
        """DER CsrAttrs for the label, or None when it asks nothing (204)."""
        label = self.label(label_name)
        profile = label.profile
        if not profile.csrattrs:
            return None
        extra: tuple[Attribute, ...] = ()
        if label.csr_template:  # RFC 9908 for new clients, RFC 8295 Appendix B for PAL 0006/0013 ones
            template = csrtemplates.template_for(label)
            extra = (csrtemplate.rfc9908_attribute(template), csrtemplate.rfc8295_attribute(template))
        return csrattrs.build(key_type=profile.key_types[0], pop_linking=label.pop_linking,
                              required_extensions=profile.required_extensions, extra=extra)

    def check_csr(self, der: bytes, label: Label) -> x509.CertificateSigningRequest:
        """Parse and judge a CSR against the label's profile (and its CSR
        template, where the label offers one); raises on refusal."""
        csr = profiles.load_checked(der, label.profile)
        if label.csr_template:
            reason = csrtemplate.contradiction(csr, csrtemplates.template_for(label))
            if reason is not None:
                raise PolicyRefused(reason)
        return csr

    @staticmethod
    def check_linking(csr: x509.CertificateSigningRequest, label: Label, creds: Credentials,
                      identity: Identity) -> None:
        """RFC 7030 3.5: a challengePassword present must be this TLS session's
        channel binding; a label may require it. RAs relay other sessions' CSRs."""
        if identity.is_ra:
            return
        given = csrs.challenge_password(csr)
        if given is None:
            if label.pop_linking:
                raise PolicyRefused("this label requires proof-of-possession linking: challengePassword must be"
                                    " the base64 tls-unique (TLS 1.2) or tls-exporter (TLS 1.3) value")
            return
        binding = creds.binding()
        if binding is None:
            raise PolicyRefused("challengePassword given but this connection has no channel binding")
        expected = base64.b64encode(binding)
        if not hmac.compare_digest(b"".join(given.split()), expected):
            raise PolicyRefused("challengePassword does not match this TLS session's channel binding")

    @defer.inlineCallbacks
    def simpleenroll(self, label_name: str | None, creds: Credentials, body: Body
                     ) -> Generator[defer.Deferred[Any], Any, x509.Certificate]:
        """Fires with the issued certificate."""
        return (yield self._enroll("simpleenroll", label_name, creds, body))

    @defer.inlineCallbacks
    def simplereenroll(self, label_name: str | None, creds: Credentials, body: Body
                       ) -> Generator[defer.Deferred[Any], Any, x509.Certificate]:
        """Renew or rekey the certificate the client authenticated with."""
        return (yield self._enroll("simplereenroll", label_name, creds, body))

    @defer.inlineCallbacks
    def identify(self, operation: str, label_name: str | None, creds: Credentials, *, anonymous: bool = False
                 ) -> Generator[defer.Deferred[Any], Any, tuple[Label, Identity | None]]:
        """The one way an operation learns who asks: fires with (Label,
        Identity), or (Label, None) for an anonymous client where
        ``anonymous`` allows one (no password given; a TLS client certificate
        we cannot use leaves a client anonymous there). An unknown label
        (404), missing or wrong credentials (401) and a client the label does
        not take (403) are audited, then raised."""
        label = None
        try:
            label = self.label(label_name)
            if anonymous and not _explicit(creds) and not creds.peer_chain:
                return label, None
            try:
                identity = yield self.authenticator.authenticate(creds, label)
            except EstError:
                if anonymous and not _explicit(creds):
                    return label, None
                raise
        except EstError as e:
            yield self.refused(operation, e, label, creds)
            raise
        return label, identity

    @defer.inlineCallbacks
    def _enroll(self, operation: str, label_name: str | None, creds: Credentials, body: Body
                ) -> Generator[defer.Deferred[Any], Any, x509.Certificate]:
        label, identity = yield self.identify(operation, label_name, creds)
        try:
            # The body is read only now: clients probe with an empty body
            # before they answer an authentication challenge.
            csr = self.check_csr(body() if callable(body) else body, label)
            self.check_linking(csr, label, creds, identity)
            subject = profiles.subject_for(csr, label.profile, identity.name)
            replaces = None
            if operation == "simplereenroll":
                replaces = self._check_renewal(csr, subject, label, identity)
            cert = yield self._issue(operation, label, identity, csr, subject, replaces)
        except EstError as e:
            yield self.refused(operation, e, label, creds, identity)
            raise
        return cert

    @staticmethod
    def _check_renewal(csr: x509.CertificateSigningRequest, subject: x509.Name, label: Label,
                       identity: Identity) -> int:
        """RFC 7030 4.2.2: same subject and subjectAltName as the certificate
        being renewed (unless the profile allows a change). Renew or rekey."""
        current = identity.certificate
        if identity.method != "cert" or identity.anchor != OWN_CA or current is None:
            raise NotAuthorized("re-enrollment needs the certificate being renewed as TLS client certificate")
        if label.profile.allow_subject_change:
            return current.serial_number
        if subject != current.subject:
            raise PolicyRefused("CSR subject differs from the certificate being renewed")
        try:
            current_san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            current_san = None
        requested = csrs.requested_san(csr) if label.profile.copy_san else None
        if set(current_san or ()) != set(requested or ()):
            raise PolicyRefused("CSR subjectAltName differs from the certificate being renewed")
        return current.serial_number

    @defer.inlineCallbacks
    def _issue(self, operation: str, label: Label, identity: Identity, csr: x509.CertificateSigningRequest,
               subject: x509.Name, replaces: int | None) -> Generator[defer.Deferred[Any], Any, x509.Certificate]:
        pending_id = None
        if label.approval == "manual":
            decision = yield self.approvals.submit(Submission(
                label=label.name, client=identity.name, operation=operation, subject=subject,
                public_key=csr.public_key(), request=csr.public_bytes(serialization.Encoding.DER),
                replaces=replaces))
            if isinstance(decision, Fulfilled):
                return decision.certificate
            pending_id = yield self.approvals.approved_id(decision)
        cert = yield self.approvals.issue(IssueRequest(
            subject=subject, public_key=csr.public_key(), san=csrs.requested_san(csr), profile=label.profile,
            label=label.name, client=identity.name, replaces=replaces, pending_id=pending_id))
        return cert

    def refused(self, operation: str, error: EstError, label: Label | None, creds: Credentials,
                identity: Identity | None = None) -> defer.Deferred[None]:
        """The one refusal audit of every operation: the refusal recorded
        with whoever asked, and the challenges a 401 must carry. A request
        waiting for approval is recorded with the request itself."""
        if isinstance(error, AuthenticationRequired) and label is not None:
            error.challenges = self.authenticator.challenge(label, error.stale)
        if isinstance(error, Pending):
            return defer.succeed(None)
        who = identity.name if identity else (error.client or claimed_name(creds))
        return self.record_refusal(operation, f"refused: {type(error).__name__}", label, who, error.reason)

    def record_refusal(self, operation: str, outcome: str, label: Label | None, who: str | None,
                       reason: str) -> defer.Deferred[None]:
        """The audit row of a refusal (``refused`` for EST errors; /fullcmc
        records its CMC failures, which are no EST errors, here too)."""
        return on_store_thread(self.store.audit.record, operation, outcome, client=who,
                               label=label.name if label else None, detail=reason)


def _explicit(creds: Credentials) -> bool:
    """A password (Basic or Digest) was given."""
    return creds.username is not None or creds.digest is not None


def claimed_name(creds: Credentials) -> str | None:
    """Who the request says it is before that is proven: the Basic or Digest
    user name, else the TLS client certificate's subject."""
    if creds.username:
        return creds.username
    if creds.digest and creds.digest.get("username"):
        return creds.digest["username"]
    return creds.peer_chain[0].subject.rfc4514_string() if creds.peer_chain else None
