"""/fullcmc certification requests (PKCS#10 and CRMF): the label's profile,
proof of possession and linking, renewal and re-key, manual approval with
pendToken follow-ups, issuance."""
from __future__ import annotations

from typing import Any, Generator

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from twisted.internet import defer

from ...ca import IssueRequest
from ...config import Label, Profile
from ...errors import MalformedRequest, NotAuthorized, PolicyRefused
from ...pki import cmc, crmf
from ...pki import csr as csrs
from ...pki.asn1 import rfc4211
from ...store import PendingRequest, on_store_thread
from .. import profiles
from ..auth import Credentials
from .common import Refusal, Requester, pending_id, pending_status
from ..approvals import Approved, Decision, Fulfilled, Rejected, Submission, Waiting
from ..registrar import Registrar


class _Subject:
    """What ``profiles.subject_for`` reads of a request: its subject."""

    def __init__(self, subject: x509.Name) -> None:
        self.subject = subject


def _subject_and_key(req: cmc.CertificationRequest) -> tuple[x509.Name, CertificatePublicKeyTypes]:
    """What every readable request has (one that lacks them carries a problem, refused first)."""
    if req.subject is None or req.public_key is None:
        raise Refusal("bad_request", "the request has no subject or public key")
    return req.subject, req.public_key


class CmcEnrollment:
    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar
        self.approvals = registrar.approvals
        self.store = registrar.store
        self.retry_after = registrar.approvals.retry_after

    @defer.inlineCallbacks
    def enroll(self, req: cmc.CertificationRequest, ref: cmc.BodyPartRef, label: Label, requester: Requester,
               creds: Credentials) -> Generator[defer.Deferred[Any], Any, tuple[cmc.Status, x509.Certificate | None]]:
        """Fires with (Status, certificate or None) for one request of reqSequence."""
        try:
            self._check(req, label, requester, creds)
            requested, public_key = _subject_and_key(req)
            subject = profiles.subject_for(_Subject(requested), label.profile, requester.identity.name)
            replaces = self._renewal(req, subject, label, requester)
            pending = None
            if self._needs_approval(label, requester):
                decision = yield self.approvals.submit(Submission(
                    label=label.name, client=requester.identity.name, operation="fullcmc", subject=subject,
                    public_key=public_key, request=req.der, kind=req.kind, replaces=replaces))
                if not isinstance(decision, Approved):
                    return self._answer(decision, ref)
                pending = decision.request_id
            cert = yield self._issue(subject, public_key, req.san, label, requester.identity.name, replaces,
                                     pending)
        except Refusal as e:
            return e.status_for((ref,)), None
        except (MalformedRequest, PolicyRefused, NotAuthorized) as e:
            return cmc.Status("failed", (ref,), e.reason, "bad_request"), None
        return cmc.Status("success", (ref,)), cert

    @defer.inlineCallbacks
    def query_pending(self, control: cmc.Control, ref: cmc.BodyPartRef, label: Label, requester: Requester
                      ) -> Generator[defer.Deferred[Any], Any, tuple[cmc.Status, x509.Certificate | None]]:
        """RFC 5272 6.13: the state of a request by its pendToken; fires with
        (Status, certificate or None)."""
        try:
            token = control.value.native if control.value is not None else None
            found = yield self._pending(token)
            if found is None or found.label != label.name or found.client != requester.identity.name:
                raise Refusal("bad_request", "no request of yours has this pendToken")
            decision = yield self.approvals.decision(found)
            if decision is None:
                raise Refusal("bad_request", f"request {found.id} was fulfilled and its certificate is no longer"
                                             " valid")
            if not isinstance(decision, Approved):
                return self._answer(decision, ref)
            public_key, san = _stored_request(found.kind, found.request)
            cert = yield self._issue(x509.Name.from_rfc4514_string(found.subject), public_key, san, label,
                                     found.client, found.replaces, found.id)
        except Refusal as e:
            return e.status_for((ref,)), None
        except NotAuthorized as e:
            return cmc.Status("failed", (ref,), e.reason, "bad_request"), None
        return cmc.Status("success", (ref,)), cert

    @defer.inlineCallbacks
    def waiting_keys(self, pki: cmc.PkiData | None, label: Label) -> Generator[defer.Deferred[Any], Any, list[CertificatePublicKeyTypes]]:
        """The public keys of the requests a PKIData's queryPending controls
        ask about: a client may sign its follow-up with the key it asked a
        certificate for (who it is is checked as for the request itself)."""
        keys: list[CertificatePublicKeyTypes] = []
        for c in pki.controls_of("query_pending") if pki is not None else ():
            token = c.value.native if c.value is not None else None
            found = yield self._pending(token)
            if found is not None and found.label == label.name:
                try:
                    keys.append(_stored_request(found.kind, found.request)[0])
                except (ValueError, crmf.BadCrmfRequest):
                    continue
        return keys

    # -- checks -----------------------------------------------------------------

    def _check(self, req: cmc.CertificationRequest, label: Label, requester: Requester, creds: Credentials) -> None:
        if req.problem is not None:
            raise Refusal(req.problem.fail_info, req.problem.reason, status=req.problem.status)
        if req.pop == "ra_verified" and not requester.is_ra:
            raise Refusal("pop_failed", "raVerified proof of possession is accepted from a registration authority"
                                        " only")
        if req.pop in ("key_encipherment", "key_agreement", "none"):
            raise Refusal("pop_required", "a signature proof of possession is required (encryptedPOP is not"
                                          " supported)")
        profile = label.profile
        key_type = csrs.key_type(_subject_and_key(req)[1])
        if key_type not in profile.key_types:
            raise Refusal("bad_alg", f"key type {key_type} not allowed by profile {profile.name!r}"
                                     f" (allowed: {', '.join(profile.key_types)})")
        if req.kind == "pkcs10":
            self.registrar.check_csr(req.der, label)
            if not requester.is_ra:
                assert req.csr is not None  # read for every pkcs10 request
                try:
                    self.registrar.check_linking(req.csr, label, creds, requester.identity)
                except PolicyRefused as e:
                    raise Refusal("pop_failed", e.reason) from None
        else:
            _check_template(_subject_and_key(req)[0], req.san, profile)
            if label.pop_linking and not requester.is_ra:
                raise Refusal("pop_failed", "this label requires proof-of-possession linking: send a PKCS#10 whose"
                                            " challengePassword is this TLS session's channel binding")

    @staticmethod
    def _renewal(req: cmc.CertificationRequest, subject: x509.Name, label: Label,
                 requester: Requester) -> int | None:
        """A request signed with a certificate of ours, for that certificate's
        subject, renews it (same key) or re-keys it (RFC 7030 3.2.2); its
        subjectAltName must stay the same unless the profile allows a change."""
        current = requester.signer
        if current is None or subject != current.subject:
            return None
        if not label.profile.allow_subject_change:
            try:
                current_san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except x509.ExtensionNotFound:
                current_san = None
            requested = req.san if label.profile.copy_san else None
            if set(current_san or ()) != set(requested or ()):
                raise Refusal("bad_request", "subjectAltName differs from the certificate being renewed")
        return current.serial_number

    @staticmethod
    def _needs_approval(label: Label, requester: Requester) -> bool:
        if label.approval != "manual":
            return False
        return not (requester.is_ra and label.cmc_ra_approval == "auto")

    # -- approval and issuance (ra/approvals.py) -------------------------------------

    def _pending(self, token: object) -> defer.Deferred[PendingRequest | None]:
        """Fires with the /fullcmc request a pendToken names, or None."""
        request_id = pending_id(token)
        if request_id is None:
            return defer.succeed(None)
        d = on_store_thread(self.store.certificates.pending, request_id)
        return d.addCallback(lambda found: found if found is not None and found.operation == "fullcmc" else None)

    def _answer(self, decision: Decision, ref: cmc.BodyPartRef) -> tuple[cmc.Status, x509.Certificate | None]:
        """The CMC answer to a request that is not to be issued now."""
        if isinstance(decision, Waiting):
            return pending_status((ref,), decision.request_id, self.retry_after), None
        if isinstance(decision, Rejected):
            return cmc.Status("failed", (ref,), f"request {decision.request_id} was rejected by an operator",
                              "bad_request"), None
        assert isinstance(decision, Fulfilled)
        return cmc.Status("success", (ref,)), decision.certificate

    def _issue(self, subject: x509.Name, public_key: CertificatePublicKeyTypes, san: x509.SubjectAlternativeName | None,
               label: Label, client: str, replaces: int | None, pending: int | None) -> defer.Deferred[x509.Certificate]:
        return self.approvals.issue(IssueRequest(
            subject=subject, public_key=public_key, san=san, profile=label.profile, label=label.name,
            client=client, replaces=replaces, pending_id=pending))


def _check_template(subject: x509.Name, san: x509.SubjectAlternativeName | None, profile: Profile) -> None:
    """The profile's name rules for a CRMF template (``profiles.load_checked``
    applies the same ones to a PKCS#10)."""
    if not len(subject) and san is None:
        raise Refusal("bad_request", "the request has neither a subject nor a subjectAltName")
    for rdn in profile.required_rdns:
        if not any(rdn in profiles.attribute_names(a) for a in subject):
            raise Refusal("bad_request", f"profile {profile.name!r} requires {rdn} in the subject")
    if "subjectAltName" in profile.required_extensions and san is None:
        raise Refusal("bad_request", f"profile {profile.name!r} requires the subjectAltName extension")
    profiles.check_names(subject, san, profile)


def _stored_request(kind: str, der: bytes
                    ) -> tuple[CertificatePublicKeyTypes, x509.SubjectAlternativeName | None]:
    """(public key, subjectAltName) of a request kept while it waited."""
    if kind == "pkcs10":
        csr = csrs.load_csr(der)
        return csr.public_key(), csrs.requested_san(csr)
    req = crmf.read(rfc4211.CertReqMsg.load(der), check_pop=False)
    return req.public_key, req.san
