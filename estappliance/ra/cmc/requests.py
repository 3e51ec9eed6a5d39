"""/fullcmc (RFC 7030 4.3): a Full PKI Request in, a Full PKI Response out.

Who speaks (RFC 5272 3.2, 6.2; RFC 7030 3.3, 3.7):

* a PKIData signed with a certificate a label anchor vouches for speaks for
  that certificate's client; a certificate of this CA may then be renewed or
  re-keyed by a request for its own subject. An id-kp-cmcRA certificate of
  this CA, or one whose subject the label lists in ``cmc_ra_subjects``, is a
  registration authority: it may relay devices' requests (nested PKIData in
  cmsSequence) and its label policy applies;
* a PKIData signed with the key it asks a certificate for, or unsigned (when
  the label allows it), speaks for the TLS/HTTP-authenticated client, or for
  the client an identityProofV2 (with identification) proves. A client with a
  shared secret must always give that proof.

Every body part gets a CMCStatusInfoV2; issued certificates travel in the
response's SignedData. Nothing in a PKIData is done if one of its controls is
not understood. Refusals are audited.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Generator

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from twisted.internet import defer

from ...ca import ContentSigner
from ...ca.crl import CrlIssuer
from ...config import Label
from ...errors import AuthenticationRequired, MalformedRequest, NotAuthorized, TokenCannot
from ...pki import cmc
from ...pki.asn1 import rfc5272
from ...pki.keyids import spki_der
from ...store import on_store_thread
from ..auth import OWN_CA, Credentials, Identity
from .common import (Outcome, Refusal, Requester, Verdict,
                         ref)
from .controls import CmcControls
from .enroll import CmcEnrollment
from ...ca.identity_proofs import IdentityProofs
from ..registrar import Body, Registrar, claimed_name

OPERATION = "fullcmc"
# Controls acted upon; any other makes the whole PKIData fail (RFC 5272 3.2.1.2).
HANDLED = frozenset({"transaction_id", "sender_nonce", "recipient_nonce", "identification", "identity_proof",
                     "identity_proof_v2", "reg_info", "data_return", "revoke_request", "get_cert", "get_crl",
                     "query_pending"})
# Controls whose body part gets its own status.
ASKING = ("revoke_request", "get_cert", "get_crl", "query_pending")


@dataclass
class CmcAnswer:
    """The signed Full PKI Response and the verdict it goes with."""

    der: bytes
    verdict: Verdict = Verdict.SUCCESS
    challenges: list[str] = field(default_factory=list)  # WWW-Authenticate values, when UNAUTHENTICATED
    retry_after: int | None = None  # when PENDING


class FullCmc:
    def __init__(self, registrar: Registrar, signer: ContentSigner, crls: CrlIssuer, proofs: IdentityProofs) -> None:
        self.registrar = registrar
        self.authenticator = registrar.authenticator
        self.store = registrar.store
        self.signer = signer
        self.retry_after = registrar.approvals.retry_after
        self.enrollment = CmcEnrollment(registrar)
        self.controls = CmcControls(registrar.ca, registrar.store, crls)
        self.proofs = proofs

    @defer.inlineCallbacks
    def handle(self, label_name: str | None, creds: Credentials, body: Body) -> Generator[defer.Deferred[Any], Any, CmcAnswer]:
        """Fires with a CmcAnswer (an unknown label raises NotFound; a token
        outage, Unavailable: those are no CMC errors)."""
        label = self.registrar.label(label_name)
        request, outcome, who = None, Outcome(), None
        try:
            try:
                der = body() if callable(body) else body
                waiting = yield self.enrollment.waiting_keys(cmc.peek_pki_data(der), label)
                request = cmc.read_request(der, waiting)
            except (MalformedRequest, cmc.BadCmcMessage) as e:
                raise Refusal(getattr(e, "fail_info", "bad_request"), e.reason) from None
            requester = yield self._requester(label, creds, request, waiting)
            who = requester.identity.name
            yield self._process(request.pki_data, label, requester, creds, (), outcome)
        except Refusal as e:
            refs = _all_refs(request.pki_data, ()) if request is not None else ()
            yield self.registrar.record_refusal(OPERATION, "refused", label, who or claimed_name(creds), e.reason)
            answer = yield self._answer(request, Outcome(statuses=[e.status_for(refs)]), e.verdict)
            if e.verdict is Verdict.UNAUTHENTICATED:  # RFC 9110 15.5.2: a 401 always says how to authenticate
                answer.challenges = e.challenges or self.authenticator.challenge(label) or \
                    [f'Basic realm="{self.authenticator.realm}"']
            return answer
        failed = [s for s in outcome.statuses if s.status not in ("success", "pending")]
        for s in failed:
            yield self.registrar.record_refusal(OPERATION, "refused", label, who,
                                                s.status_string or s.fail_info or s.status)
        if outcome.revocations:
            yield self.controls.current_crl()  # the next CRL shows them now (issued unless getCRL did)
        if not outcome.statuses:
            outcome.statuses.append(cmc.Status("failed", (), "the PKIData asks for nothing", "bad_request"))
        answer = yield self._answer(request, outcome, _verdict(outcome))
        return answer

    # -- who is asking --------------------------------------------------------------

    @defer.inlineCallbacks
    def _requester(self, label: Label, creds: Credentials, request: cmc.FullPkiRequest,
                   waiting: list[CertificatePublicKeyTypes]) -> Generator[defer.Deferred[Any], Any, Requester]:
        pki = request.pki_data
        keys = {spki_der(k) for k in [*(r.public_key for r in pki.requests if r.public_key is not None), *waiting]}
        signer = request.signer
        if signer is not None:
            try:
                identity = yield self._certificate_identity(signer, request.certificates, label)
            except Refusal:
                # A certificate for the very key being certified (some clients
                # self-sign one) vouches for nothing: judged as self-signed.
                if spki_der(signer.public_key()) not in keys:
                    raise
            else:
                is_ra = self._is_ra(identity, label)
                own = identity.anchor == OWN_CA and not is_ra
                return Requester(identity, is_ra=is_ra, signer=signer if own else None)
        # Signed with the key being certified (or asked about), or not signed at all.
        if not request.signed and not label.fullcmc_unsigned:
            raise Refusal("bad_message_check", "unsigned Full PKI Requests are not accepted under this label")
        tls, tls_refusal = yield self._tls_identity(label, creds)
        proof = pki.control("identity_proof_v2") or pki.control("identity_proof")
        if proof is not None:
            identity = yield self._proven_identity(label, pki, proof, tls)
        elif tls is None:
            raise tls_refusal
        else:
            identity = tls
            must_prove = yield self.proofs.has_secret(identity.name)
            if must_prove:
                raise Refusal("bad_identity", f"client {identity.name!r} must prove its identity with"
                                              " identityProofV2", verdict=Verdict.FORBIDDEN)
        if not request.signed and tls is None:
            raise Refusal("bad_message_check", "an unsigned Full PKI Request needs an authenticated TLS client",
                          verdict=Verdict.UNAUTHENTICATED)
        return Requester(identity)

    @defer.inlineCallbacks
    def _certificate_identity(self, signer: x509.Certificate, carried: tuple[x509.Certificate, ...], label: Label) -> Generator[defer.Deferred[Any], Any, Identity]:
        chain = (signer, *[c for c in carried if c != signer])
        if "cert" not in label.auth:
            raise Refusal("bad_identity", "certificate-signed requests are not accepted under this label",
                          verdict=Verdict.FORBIDDEN)
        try:
            identity = yield self.authenticator.authenticate(Credentials(peer_chain=chain), label)
        except AuthenticationRequired as e:
            raise Refusal("bad_identity", f"request signer: {e.reason}", verdict=Verdict.UNAUTHENTICATED) from None
        except NotAuthorized as e:
            raise Refusal("bad_identity", f"request signer: {e.reason}", verdict=Verdict.FORBIDDEN) from None
        return identity

    @defer.inlineCallbacks
    def _tls_identity(self, label: Label, creds: Credentials) -> Generator[defer.Deferred[Any], Any, tuple[Identity | None, Refusal | None]]:
        """(Identity, None) for the TLS/HTTP-authenticated client, else (None, the refusal to give)."""
        if not (creds.peer_chain or creds.username is not None or creds.digest is not None):
            refusal = Refusal("bad_identity", "authentication required", verdict=Verdict.UNAUTHENTICATED)
            refusal.challenges = self.authenticator.challenge(label)
            return None, refusal
        try:
            identity = yield self.authenticator.authenticate(creds, label)
        except AuthenticationRequired as e:
            refusal = Refusal("bad_identity", e.reason, verdict=Verdict.UNAUTHENTICATED)
            refusal.challenges = self.authenticator.challenge(label, e.stale)
            return None, refusal
        except NotAuthorized as e:
            return None, Refusal("bad_identity", e.reason, verdict=Verdict.FORBIDDEN)
        return identity, None

    @defer.inlineCallbacks
    def _proven_identity(self, label: Label, pki: cmc.PkiData, control: cmc.Control, tls: Identity | None) -> Generator[defer.Deferred[Any], Any, Identity]:
        """RFC 5272 6.2: the client named by identification (or the TLS one)
        proves its shared secret over reqSequence."""
        try:
            proof = cmc.identity_proof(control)
        except cmc.BadCmcMessage as e:
            raise Refusal(e.fail_info, e.reason) from None
        named = pki.control("identification")
        name = named.value.native if named is not None and named.value is not None else None
        if tls is not None and name is not None and name != tls.name:
            raise Refusal("bad_identity", "identification names another client than the authenticated one",
                          verdict=Verdict.FORBIDDEN)
        name = name or (tls.name if tls else None)
        if not name:
            raise Refusal("bad_identity", "an identity proof needs the identification control",
                          verdict=Verdict.UNAUTHENTICATED)
        record = yield on_store_thread(self.store.clients.client, name)
        has_secret = yield self.proofs.has_secret(name)
        try:
            ok = record is not None and has_secret and (yield self.proofs.check(name, proof, pki.req_sequence_der))
        except TokenCannot as e:
            raise Refusal("bad_alg", e.reason) from None
        if not ok:
            raise Refusal("bad_identity", "identity proof does not verify", verdict=Verdict.FORBIDDEN)
        if not record.may_use(label.name):
            raise Refusal("bad_identity", f"client {name!r} may not use label {label.name!r}", verdict=Verdict.FORBIDDEN)
        return tls or Identity(name=name, method="cmc-identity-proof")

    @staticmethod
    def _is_ra(identity: Identity, label: Label) -> bool:
        if identity.certificate is None:
            return False
        if label.cmc_ra_eku and identity.is_ra:
            return True
        return any(identity.certificate.subject == x509.Name.from_rfc4514_string(s) for s in label.cmc_ra_subjects)

    # -- what it asks -----------------------------------------------------------------

    @defer.inlineCallbacks
    def _process(self, pki: cmc.PkiData, label: Label, requester: Requester, creds: Credentials,
                 prefix: tuple[int, ...], outcome: Outcome) -> Generator[defer.Deferred[Any], Any, None]:
        unknown = [c for c in pki.controls if c.type not in HANDLED]
        if unknown or pki.other_messages:
            what = f"control {unknown[0].type}" if unknown else "otherMsgSequence"
            refs = [ref(prefix, c.body_part_id) for c in unknown] + _all_refs(pki, prefix)
            outcome.statuses.append(cmc.Status("failed", tuple(refs), f"{what} is not supported; nothing in"
                                               " this PKIData was done", "bad_request"))
            return
        for c in pki.controls_of("revoke_request"):
            status, revoked = yield self.controls.revoke(c, ref(prefix, c.body_part_id), label, requester)
            outcome.statuses.append(status)
            outcome.revocations += revoked
        for r in pki.requests:
            status, cert = yield self.enrollment.enroll(r, ref(prefix, r.body_part_id), label, requester, creds)
            self._add(outcome, status, cert)
        for c in pki.controls_of("query_pending"):
            status, cert = yield self.enrollment.query_pending(c, ref(prefix, c.body_part_id), label, requester)
            self._add(outcome, status, cert)
        for c in pki.controls_of("get_cert"):
            status, cert = yield self.controls.get_cert(c, ref(prefix, c.body_part_id), label, requester)
            self._add(outcome, status, cert)
        for c in pki.controls_of("get_crl"):
            status, crl = yield self.controls.get_crl(c, ref(prefix, c.body_part_id))
            outcome.statuses.append(status)
            if crl is not None and crl not in outcome.crls:
                outcome.crls.append(crl)
        for nested in pki.nested:
            yield self._nested(nested, label, requester, prefix, outcome)

    @staticmethod
    def _add(outcome: Outcome, status: cmc.Status, cert: x509.Certificate | None) -> None:
        outcome.statuses.append(status)
        if cert is not None and cert not in outcome.certificates:
            outcome.certificates.append(cert)

    @defer.inlineCallbacks
    def _nested(self, nested: cmc.NestedMessage, label: Label, requester: Requester, prefix: tuple[int, ...],
                outcome: Outcome) -> Generator[defer.Deferred[Any], Any, None]:
        """RFC 5272 4: an RA relays a device's Full PKI Request inside its own."""
        here = ref(prefix, nested.body_part_id)
        path = (*prefix, nested.body_part_id)
        try:
            if not requester.is_ra:
                raise Refusal("bad_request", "only a registration authority may relay requests in cmsSequence")
            if prefix:
                raise Refusal("bad_request", "requests nested more than one level deep are not supported")
            try:
                inner = cmc.read_request(nested.der)
            except cmc.BadCmcMessage as e:
                raise Refusal(e.fail_info, e.reason) from None
            signer = None
            keys = {spki_der(r.public_key) for r in inner.pki_data.requests if r.public_key is not None}
            if inner.signer is not None:
                try:
                    device = yield self._certificate_identity(inner.signer, inner.certificates, label)
                    signer = inner.signer if device.anchor == OWN_CA else None
                except Refusal:
                    if spki_der(inner.signer.public_key()) not in keys:
                        raise
        except Refusal as e:
            outcome.statuses.append(e.status_for((here,)))
            return
        vouched = Requester(requester.identity, is_ra=True, signer=signer, vouched=True)
        yield self._process(inner.pki_data, label, vouched, Credentials(), path, outcome)

    # -- the answer -------------------------------------------------------------------

    @defer.inlineCallbacks
    def _answer(self, request: cmc.FullPkiRequest | None, outcome: Outcome, verdict: Verdict) -> Generator[defer.Deferred[Any], Any, CmcAnswer]:
        pki = request.pki_data if request is not None else None
        txid = nonce = None
        echoed: list[Any] = []  # asn1crypto values, sent back as they came
        if pki is not None:
            txid = _value(pki.control("transaction_id"))
            nonce = _value(pki.control("sender_nonce"))
            echoed = [c.value for c in pki.controls_of("data_return") if c.value is not None]
        response = cmc.pki_response(_grouped(outcome.statuses), transaction_id=txid, recipient_nonce=nonce,
                                    sender_nonce=os.urandom(16))
        if echoed:  # RFC 5272 6.4: dataReturn comes back as it was sent
            controls = list(response["control_sequence"])
            for value in echoed:
                controls.append(cmc.control(len(controls) + 1, "data_return", value))
            response = rfc5272.PKIResponse({"control_sequence": controls, "cms_sequence": [],
                                            "other_msg_sequence": []})
        certs = [*outcome.certificates]
        for c in (self.signer.certificate, *self.signer.ca_chain):
            if c not in certs:
                certs.append(c)
        der = yield self.signer.sign(rfc5272.PKI_RESPONSE, response, certificates=certs, crls=outcome.crls)
        return CmcAnswer(der, verdict, retry_after=self.retry_after if verdict is Verdict.PENDING else None)


def _verdict(outcome: Outcome) -> Verdict:
    kinds = {s.status for s in outcome.statuses}
    if "success" in kinds:
        return Verdict.SUCCESS
    if "pending" in kinds:
        return Verdict.PENDING
    return Verdict.BAD_REQUEST


def _grouped(statuses: list[cmc.Status]) -> list[cmc.Status]:
    """Plain successes share one CMCStatusInfoV2; anything with more to say keeps its own."""
    plain = [s for s in statuses if s.status == "success" and not s.status_string]
    rest = [s for s in statuses if s not in plain]
    if not plain:
        return rest
    refs = tuple(r for s in plain for r in s.body_list)
    return [cmc.Status("success", refs), *rest]


def _all_refs(pki: cmc.PkiData, prefix: tuple[int, ...]) -> list[cmc.BodyPartRef]:
    """The body parts a whole-PKIData answer is about."""
    parts = [r.body_part_id for r in pki.requests]
    parts += [c.body_part_id for c in pki.controls if c.type in ASKING]
    parts += [n.body_part_id for n in pki.nested]
    return [ref(prefix, p) for p in parts]


def _value(control: cmc.Control | None) -> Any:  # the asn1crypto value's .native
    return None if control is None or control.value is None else control.value.native
