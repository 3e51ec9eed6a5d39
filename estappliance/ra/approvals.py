"""Manual approval and issuance: the one workflow behind /simpleenroll,
/simplereenroll, /serverkeygen, /fullcmc (and its queryPending) and the GET
that fetches an enrollment result (RFC 8295 9).

Under a label with ``approval = "manual"`` a request waits in the store's
one pending table (its ``kind`` says how the kept request reads: a PKCS#10
or a CRMF CertReqMsg) until an operator decides with ``estctl pending``. The
client's repeat of the same request (same label, client, operation, key and
subject, RFC 7030 4.2.3) learns the decision:

    pending   Waiting    the caller answers 202, or a CMC pending status
    rejected  Rejected   refused; the result counts as delivered (the PAL
                         stops announcing it)
    approved  Approved   issue now: the row turns 'issued' in the same commit
                         as the certificate, so of two concurrent repeats
                         one issues and the other gets that certificate
    issued    Fulfilled  the certificate issued for it, while still good
                         (once it is not, the repeat is a new request)
"""
from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Any, Generator, Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from twisted.internet import defer

from ..ca import CertificateAuthority, IssueRequest
from ..errors import NotAuthorized, Pending
from ..store import AlreadyIssued, PendingRequest, Store, on_store_thread


def key_hash(public_key: CertificatePublicKeyTypes) -> str:
    """Identifies a request across retries: a new TLS session means a new CSR
    (new challengePassword), but the same key (RFC 7030 3.5, 4.2.3)."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class Submission:
    """A request that may have to wait for an operator: what the pending table keeps."""

    label: str
    client: str
    operation: str  # simpleenroll | simplereenroll | serverkeygen | fullcmc
    subject: x509.Name
    public_key: CertificatePublicKeyTypes
    request: bytes  # DER
    kind: str = "pkcs10"  # or "crmf"
    replaces: int | None = None


@dataclass(frozen=True)
class Waiting:
    request_id: int


@dataclass(frozen=True)
class Rejected:
    request_id: int


@dataclass(frozen=True)
class Approved:
    request_id: int


@dataclass(frozen=True)
class Fulfilled:
    certificate: x509.Certificate


Decision = Union[Waiting, Rejected, Approved, Fulfilled]


class Approvals:
    def __init__(self, ca: CertificateAuthority, store: Store, retry_after: int) -> None:
        self.ca = ca
        self.store = store
        self.retry_after = retry_after  # seconds a waiting client is told to wait

    @defer.inlineCallbacks
    def submit(self, submission: Submission) -> Generator[defer.Deferred[Any], Any, Decision]:
        """The decision on an earlier identical request, or a new request in
        the pending table (Waiting), recorded and audited before this fires."""
        khash = key_hash(submission.public_key)
        subject = submission.subject.rfc4514_string()
        found = yield on_store_thread(self.store.certificates.find_pending, submission.label, submission.client, khash, subject,
                                      submission.operation)
        if found is not None:
            decision = yield self.decision(found)
            if decision is not None:
                return decision
        new = yield on_store_thread(self.store.certificates.add_pending, label=submission.label, client=submission.client,
                                    key_hash=khash, subject=subject, operation=submission.operation,
                                    request=submission.request, kind=submission.kind, replaces=submission.replaces)
        return Waiting(new.id)

    @defer.inlineCallbacks
    def decision(self, request: PendingRequest) -> Generator[defer.Deferred[Any], Any, Decision | None]:
        """What became of ``request``; None once it was issued and that
        certificate is no longer good (revoked or expired)."""
        if request.state == "pending":
            return Waiting(request.id)
        if request.state == "rejected":
            return Rejected(request.id)
        if request.state == "approved":
            return Approved(request.id)
        cert = yield self.issued_for(request.serial)
        return None if cert is None else Fulfilled(cert)

    @defer.inlineCallbacks
    def approved_id(self, decision: Decision) -> Generator[defer.Deferred[Any], Any, int]:
        """The id of the approved request to issue for now; for any other
        decision the refusal the EST operations answer with: Pending (202)
        while it waits, NotAuthorized when it was rejected (then its result
        counts as delivered)."""
        if isinstance(decision, Approved):
            return decision.request_id
        if isinstance(decision, Waiting):
            raise Pending(f"request {decision.request_id} is waiting for approval", self.retry_after)
        if isinstance(decision, Rejected):
            yield on_store_thread(self.store.packages.mark_result_delivered, decision.request_id)
            raise NotAuthorized(f"request {decision.request_id} was rejected by an operator")
        raise ValueError(f"{decision!r} needs no issuance")

    @defer.inlineCallbacks
    def issue(self, request: IssueRequest) -> Generator[defer.Deferred[Any], Any, x509.Certificate]:
        """Issue the certificate. For an approved request (``pending_id``) a
        concurrent repeat may have got there first: then both get its
        certificate, or NotAuthorized if that one is no longer good."""
        try:
            cert = yield self.ca.issue(request)
        except AlreadyIssued:
            assert request.pending_id is not None  # only an approved request can be issued twice
            done = yield on_store_thread(self.store.certificates.pending, request.pending_id)
            cert = yield self.issued_for(done.serial if done is not None else None)
            if cert is None:
                raise NotAuthorized(f"request {request.pending_id} was fulfilled and its certificate is no longer"
                                    " valid") from None
        assert isinstance(cert, x509.Certificate)
        return cert

    @defer.inlineCallbacks
    def issued_for(self, serial: int | None) -> Generator[defer.Deferred[Any], Any, x509.Certificate | None]:
        """The certificate issued for a request, if it is still good."""
        if serial is None:
            return None
        record = yield on_store_thread(self.store.certificates.certificate, serial)
        if record is None or record.revoked:
            return None
        cert = x509.load_der_x509_certificate(record.der)
        return cert if cert.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc) else None
