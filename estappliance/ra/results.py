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

from cryptography import x509
from twisted.internet import defer

from ..ca import IssueRequest
from ..errors import EstError, NotAuthorized, NotFound, Pending
from ..pki import csr as csrs
from ..store import AlreadyIssued, PendingRequest, on_store_thread
from . import profiles
from .auth import OWN_CA, Credentials, Identity
from .distribution import Distribution

OPERATIONS = ("simpleenroll", "simplereenroll")


class EnrollmentResults:
    def __init__(self, distribution: Distribution):
        self.distribution = distribution
        self.registrar = distribution.registrar
        self.store = distribution.store

    @defer.inlineCallbacks
    def fetch(self, operation: str, label_name: str | None, creds: Credentials):
        """Fires with the certificate; fails with NotAuthorized (rejected),
        Pending (202) or NotFound."""
        if operation not in OPERATIONS:
            raise ValueError(operation)
        label, identity = yield self.distribution.identify(operation, label_name, creds, required=True)
        try:
            cert = yield self._fetch(operation, label, identity)
        except EstError as e:
            if not isinstance(e, (Pending, NotFound)):
                yield self.distribution.refused(operation, e, label, creds, identity)
            raise
        return cert

    @defer.inlineCallbacks
    def _fetch(self, operation: str, label, identity: Identity):
        requests = yield on_store_thread(self.store.client_requests, label.name, identity.name, operation)
        delivered = yield on_store_thread(self.store.delivered_results, [r.id for r in requests])
        for request in requests:
            if request.state == "approved":
                cert = yield self._issue(request, label, identity)
                return cert
            if request.state == "rejected" and request.id not in delivered:
                yield on_store_thread(self.store.mark_result_delivered, request.id)
                raise NotAuthorized(f"request {request.id} was rejected by an operator")
        for request in reversed(requests):
            if request.state == "issued" and request.serial is not None:
                cert = yield self.registrar._issued_for(request.serial)
                if cert is not None:
                    return cert
        waiting = [r for r in requests if r.state == "pending"]
        if waiting:
            raise Pending(f"request {waiting[0].id} is waiting for approval", self.registrar.config.server.retry_after)
        raise NotFound("no enrollment result is waiting for this client")

    @defer.inlineCallbacks
    def _issue(self, request: PendingRequest, label, identity: Identity):
        """Issue for an approved request, as the repeated POST would have."""
        csr = x509.load_der_x509_csr(request.csr)
        subject = profiles.subject_for(csr, label.profile, identity.name)
        replaces = None
        if request.operation == "simplereenroll" and identity.method == "cert" and identity.anchor == OWN_CA \
                and identity.certificate is not None:
            replaces = identity.certificate.serial_number
        try:
            cert = yield self.registrar.ca.issue(IssueRequest(
                subject=subject, public_key=csr.public_key(), san=csrs.requested_san(csr), profile=label.profile,
                label=label.name, client=identity.name, replaces=replaces, pending_id=request.id))
        except AlreadyIssued:
            done = yield on_store_thread(self.store.pending, request.id)
            cert = yield self.registrar._issued_for(done.serial)
            if cert is None:
                raise NotAuthorized(f"request {request.id} was fulfilled and its certificate is no longer valid")
        yield on_store_thread(self.store.mark_result_delivered, request.id)
        return cert
