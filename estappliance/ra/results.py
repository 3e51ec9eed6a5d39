"""Enrollment results fetched with GET (RFC 8295 9).

A client whose request waited for an operator may have lost its connection;
its PAL then announces the decision (0008/0009 ...) and a GET on
/simpleenroll or /simplereenroll picks it up: the certificate (issued now for
an approved request, recorded before it is returned) or the refusal. With no
decision waiting, the GET returns the client's latest certificate from an
approved request of that operation if it is still good (a lost answer can be
fetched again), 202 while a request still waits, and 404 otherwise.
"""
from __future__ import annotations

from typing import Any, Generator

from cryptography import x509
from twisted.internet import defer

from ..ca import IssueRequest
from ..config import Label
from ..errors import EstError, NotFound, Pending
from ..pki import csr as csrs
from ..store import PendingRequest, on_store_thread
from . import profiles
from .approvals import Rejected, Waiting
from .auth import OWN_CA, Credentials, Identity
from .package_access import Distribution

OPERATIONS = ("simpleenroll", "simplereenroll")


class EnrollmentResults:
    def __init__(self, distribution: Distribution) -> None:
        self.distribution = distribution
        self.registrar = distribution.registrar
        self.store = distribution.store

    @defer.inlineCallbacks
    def fetch(self, operation: str, label_name: str | None, creds: Credentials) -> Generator[defer.Deferred[Any], Any, x509.Certificate]:
        """Fires with the certificate; fails with NotAuthorized (rejected),
        Pending (202) or NotFound."""
        if operation not in OPERATIONS:
            raise ValueError(operation)
        label, identity = yield self.distribution.registrar.identify(operation, label_name, creds)
        try:
            cert = yield self._fetch(operation, label, identity)
        except EstError as e:
            if not isinstance(e, (Pending, NotFound)):
                yield self.distribution.refused(operation, e, label, creds, identity)
            raise
        return cert

    @defer.inlineCallbacks
    def _fetch(self, operation: str, label: Label, identity: Identity) -> Generator[defer.Deferred[Any], Any, x509.Certificate]:
        approvals = self.registrar.approvals
        requests = yield on_store_thread(self.store.certificates.client_requests, label.name, identity.name, operation)
        delivered = yield on_store_thread(self.store.packages.delivered_results, [r.id for r in requests])
        for request in requests:
            if request.state == "approved":
                cert = yield self._issue(request, label, identity)
                return cert
            if request.state == "rejected" and request.id not in delivered:
                yield approvals.approved_id(Rejected(request.id))  # raises, the result marked delivered
        for request in reversed(requests):
            if request.state == "issued":
                cert = yield approvals.issued_for(request.serial)
                if cert is not None:
                    return cert
        waiting = [r for r in requests if r.state == "pending"]
        if waiting:
            yield approvals.approved_id(Waiting(waiting[0].id))  # raises Pending
        raise NotFound("no enrollment result is waiting for this client")

    @defer.inlineCallbacks
    def _issue(self, request: PendingRequest, label: Label, identity: Identity) -> Generator[defer.Deferred[Any], Any, x509.Certificate]:
        """Issue for an approved request, as the repeated POST would have."""
        csr = x509.load_der_x509_csr(request.request)
        subject = profiles.subject_for(csr, label.profile, identity.name)
        replaces = request.replaces
        if replaces is None and request.operation == "simplereenroll" and identity.method == "cert" \
                and identity.anchor == OWN_CA and identity.certificate is not None:
            replaces = identity.certificate.serial_number
        cert = yield self.registrar.approvals.issue(IssueRequest(
            subject=subject, public_key=csr.public_key(), san=csrs.requested_san(csr), profile=label.profile,
            label=label.name, client=identity.name, replaces=replaces, pending_id=request.id))
        yield on_store_thread(self.store.packages.mark_result_delivered, request.id)
        return cert
