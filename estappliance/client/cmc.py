"""Full PKI Requests over EST /fullcmc (RFC 7030 4.3), for the ``est``
command, scripts and tests.

Each request carries a transactionId and a senderNonce; the answer must echo
both (RFC 5272 6.6, 6.7) and be signed by a certificate that chains to the
client's trust anchors, or it is not believed.
"""
from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from asn1crypto import x509 as asn1_x509

from ..pki import cmc
from ..pki.asn1 import rfc5272
from ..pki.signeddata import SigningKey
from ..pki.encoding import NotBase64OrDer, decode_body
from ..pki.keyids import spki_der
from .est import EstClient, EstClientError, _first_line, make_csr

CMC_REQUEST = "application/pkcs7-mime; smime-type=CMC-request"


class CmcFailed(EstClientError):
    """The server answered with a CMC failure for what we asked."""

    def __init__(self, message: str, status: int | None, answer: "CmcAnswer | None" = None) -> None:
        super().__init__(message, status)
        self.answer = answer


@dataclass(frozen=True)
class CertRequestSpec:
    """One certificate to ask for: its key, subject and DNS names; CRMF or PKCS#10."""

    key: SigningKey
    subject: str
    dns_names: tuple[str, ...] = ()
    crmf: bool = False


@dataclass
class CmcAnswer:
    http_status: int
    response: cmc.FullPkiResponse
    retry_after: int | None = None
    der: bytes = field(default=b"", repr=False)  # the Full PKI Response as received


@dataclass
class EnrollResult:
    certificates: dict[int, x509.Certificate] = field(default_factory=dict)  # by bodyPartID
    failures: dict[int, cmc.Status] = field(default_factory=dict)


class FullCmcClient:
    """CMC through an EstClient (its connection, label and credentials).

    ``anchors``: the certificates the response signer must chain to.
    ``sign_key``/``sign_cert``: a current certificate to sign with (renewal,
    re-key, revocation); without them the key being certified signs.
    ``secret``/``identification``: an identity proof (RFC 5272 6.2).
    """

    def __init__(self, est: EstClient, anchors: list[x509.Certificate], *, sign_key: SigningKey | None = None,
                 sign_cert: x509.Certificate | None = None, secret: bytes | None = None,
                 identification: str | None = None, unsigned: bool = False,
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.est = est
        self.anchors = anchors
        self.sign_key = sign_key
        self.sign_cert = sign_cert
        self.secret = secret
        self.identification = identification
        self.unsigned = unsigned
        self.sleep = sleep

    # -- the exchange ---------------------------------------------------------------

    def post(self, der: bytes) -> CmcAnswer:
        """POST one Full PKI Request; the answer's signature and signer checked."""
        resp = self.est.request("POST", "fullcmc", base64.encodebytes(der), CMC_REQUEST)
        ctype = (resp.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/pkcs7-mime":
            raise EstClientError(f"fullcmc: HTTP {resp.status} {_first_line(resp)}", resp.status)
        try:
            der = decode_body(resp.body)
            response = cmc.read_response(der)
        except (NotBase64OrDer, cmc.BadCmcMessage) as e:
            raise EstClientError(f"fullcmc: unreadable Full PKI Response: {e}", resp.status) from None
        if not _chains_to(response.signer, response.certificates, self.anchors):
            raise EstClientError("fullcmc: the response signer does not chain to the trust anchors", resp.status)
        try:
            given = resp.header("retry-after")
            retry_after = int(given) if given else None
        except ValueError:
            retry_after = None
        return CmcAnswer(resp.status, response, retry_after, der)

    def exchange(self, controls: Iterable[rfc5272.TaggedAttribute], requests: Iterable[rfc5272.TaggedRequest] = (), *,
                 signer_key: SigningKey | None = None, transaction_id: int | None = None) -> CmcAnswer:
        """Send a PKIData (transactionId, senderNonce and identity proof added)
        and check that the answer echoes them."""
        if transaction_id is None:
            transaction_id = int.from_bytes(os.urandom(4), "big") >> 1
        nonce = os.urandom(16)
        base = [cmc.control(1001, "transaction_id", transaction_id), cmc.control(1002, "sender_nonce", nonce)]
        if self.identification:
            base.append(cmc.control(1003, "identification", self.identification))
        pki = cmc.pki_data([*base, *controls], requests)
        if self.secret is not None:
            pki = cmc.with_identity_proof(pki, 1004, self.secret)
        if self.unsigned:
            der = cmc.unsigned_request(pki)
        elif self.sign_cert is not None:
            if self.sign_key is None:
                raise ValueError("a signing certificate needs its key")
            der = cmc.sign_request(pki, self.sign_key, self.sign_cert)
        elif signer_key is not None:
            der = cmc.sign_request(pki, signer_key)
        else:
            raise ValueError("nothing to sign the request with: give a certificate and key, or use unsigned")
        answer = self.post(der)
        r = answer.response
        if r.transaction_id != transaction_id or r.recipient_nonce != nonce:
            raise EstClientError("fullcmc: the response does not echo our transactionId and senderNonce",
                                 answer.http_status)
        return answer

    # -- operations -----------------------------------------------------------------

    def enroll(self, specs: list[CertRequestSpec], *, challenge_password: str | None = None, max_polls: int = 10,
               max_wait: float = 300.0) -> EnrollResult:
        """Ask for one certificate per spec in one PKIData (bodyPartIDs 1..n),
        then follow pending ones with queryPending (signed with the pending
        request's key) at most ``max_polls`` times."""
        requests: list[rfc5272.TaggedRequest] = []
        for n, spec in enumerate(specs, start=1):
            san = x509.SubjectAlternativeName([x509.DNSName(d) for d in spec.dns_names]) if spec.dns_names else None
            if spec.crmf:
                requests.append(cmc.crmf_request(n, spec.key, x509.Name.from_rfc4514_string(spec.subject), san=san))
            else:
                csr = make_csr(spec.key, spec.subject, dns_names=spec.dns_names,
                               challenge_password=challenge_password)
                requests.append(cmc.pkcs10_request(n, csr))
        transaction_id = int.from_bytes(os.urandom(4), "big") >> 1  # the same for the follow-ups
        answer = self.exchange([], requests, signer_key=specs[0].key if specs else None,
                               transaction_id=transaction_id)
        result = EnrollResult()
        waiting: dict[int, tuple[bytes, CertRequestSpec]] = {}
        for n, spec in enumerate(specs, start=1):
            self._settle(answer, n, n, spec, result, waiting)
        for _ in range(max_polls):
            if not waiting:
                break
            self.sleep(min(max(answer.retry_after or 1, 1), max_wait))
            still: dict[int, tuple[bytes, CertRequestSpec]] = {}
            for n, (token, spec) in waiting.items():
                answer = self.exchange([cmc.control(1, "query_pending", token)], signer_key=spec.key,
                                       transaction_id=transaction_id)
                self._settle(answer, 1, n, spec, result, still)
            waiting = still
        for n, (_token, _spec) in waiting.items():
            result.failures[n] = cmc.Status("pending", (n,), "still waiting for approval")
        return result

    @staticmethod
    def _settle(answer: CmcAnswer, body_part: int, n: int, spec: CertRequestSpec, result: EnrollResult,
                waiting: dict[int, tuple[bytes, CertRequestSpec]]) -> None:
        status = answer.response.status_for(body_part)
        if status is None:
            result.failures[n] = cmc.Status("failed", (n,), "the response has no status for this request")
        elif status.status == "success":
            key = spki_der(spec.key.public_key())
            found = [c for c in answer.response.certificates if spki_der(c.public_key()) == key]
            if found:
                result.certificates[n] = found[0]
            else:
                result.failures[n] = cmc.Status("failed", (n,), "success, but no certificate for our key")
        elif status.status == "pending" and status.pend_token:
            waiting[n] = (status.pend_token, spec)
        else:
            result.failures[n] = status

    def revoke(self, issuer: x509.Name, serial: int, reason: str = "unspecified",
               comment: str | None = None) -> cmc.Status:
        """revokeRequest (RFC 5272 6.11); ``reason`` is a CRLReason name (``key_compromise``)."""
        value = {"issuer_name": asn1_x509.Name.load(issuer.public_bytes()), "serial_number": serial,
                 "reason": reason}
        if comment:
            value["comment"] = comment
        answer = self.exchange([cmc.control(1, "revoke_request", value)])
        return self._only(answer, "revoke")

    def get_cert(self, issuer: x509.Name, serial: int) -> x509.Certificate:
        value = {"issuer_name": asn1_x509.GeneralName(name="directory_name",
                                                      value=asn1_x509.Name.load(issuer.public_bytes())),
                 "serial_number": serial}
        answer = self.exchange([cmc.control(1, "get_cert", value)])
        self._only(answer, "getCert")
        for cert in answer.response.certificates:
            if cert.serial_number == serial and cert.issuer == issuer:
                return cert
        raise EstClientError("fullcmc getCert: success, but the certificate is not in the response")

    def get_crl(self, issuer: x509.Name) -> x509.CertificateRevocationList:
        answer = self.exchange([cmc.control(1, "get_crl", {"issuer_name": asn1_x509.Name.load(issuer.public_bytes())})])
        self._only(answer, "getCRL")
        if not answer.response.crls:
            raise EstClientError("fullcmc getCRL: success, but no CRL in the response")
        return answer.response.crls[0]

    @staticmethod
    def _only(answer: CmcAnswer, what: str) -> cmc.Status:
        status = answer.response.status_for(1)
        if status is None:
            status = answer.response.statuses[0] if answer.response.statuses else None
        if status is None or status.status != "success":
            text = (status.status_string or status.fail_info or status.status) if status else "no status"
            raise CmcFailed(f"fullcmc {what}: {text}", answer.http_status, answer)
        return status


def _chains_to(cert: x509.Certificate, carried: Sequence[x509.Certificate], anchors: list[x509.Certificate]) -> bool:
    """``cert`` is an anchor or is issued, link by link, by one (at most 5 links)."""
    pool = [*anchors, *carried]
    for _ in range(6):
        if cert in anchors:
            return True
        issuer = next((c for c in pool if c.subject == cert.issuer and c != cert and _issued(cert, c)), None)
        if issuer is None:
            return False
        cert = issuer
    return False


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


__all__ = ["CMC_REQUEST", "CertRequestSpec", "CmcAnswer", "CmcFailed", "EnrollResult", "FullCmcClient"]
