"""CMC Full PKI Requests and Responses (RFC 5272, RFC 6402): read and build.

Pure: bytes in, bytes out. Signing keys are cryptography objects passed in
(the client's own key, or a token-backed key in the appliance). Reading a
request checks its structure, its signature and each request's proof of
possession; what the requester may do is the RA's business.
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms, core
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PublicKeyTypes

from .errors import PkiError
from . import crmf, signeddata
from . import csr as csrs
from .asn1 import rfc4211, rfc5272
from .encoding import der

STATUSES = tuple(rfc5272.CMCStatus._map.values())
FAIL_INFOS = tuple(rfc5272.CMCFailInfo._map.values())
PROOF_HASHES = ("sha1", "sha256", "sha384", "sha512")
# A bodyPartID, or a bodyPartPath (a tuple) into a nested PKIData.
BodyPartRef = int | tuple[int, ...]
PROOF_MACS = ("sha1", "sha256", "sha384", "sha512")  # hmacWithSHA*


class BadCmcMessage(PkiError):
    """The message as a whole cannot be used; ``fail_info`` is the CMCFailInfo."""

    def __init__(self, reason: str, fail_info: str = "bad_request") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fail_info = fail_info


@dataclass(frozen=True)
class Problem:
    """Why one body part is refused: a CMCStatus, a CMCFailInfo, a reason."""

    fail_info: str
    reason: str
    status: str = "failed"


@dataclass(frozen=True)
class Control:
    body_part_id: int
    type: str  # asn1crypto name ("transaction_id") or dotted OID when unknown
    # The first attrValue, decoded when the type is known (an asn1crypto value,
    # untyped: Any); None if there is none.
    value: Any


@dataclass(frozen=True)
class CertificationRequest:
    """One entry of reqSequence. ``der`` is the CSR, or the CertReqMsg."""

    body_part_id: int
    kind: str  # "pkcs10", "crmf" or "other"
    der: bytes
    subject: x509.Name | None = None
    public_key: CertificatePublicKeyTypes | None = None
    san: x509.SubjectAlternativeName | None = None
    csr: x509.CertificateSigningRequest | None = None
    pop: str = "none"  # "signature" (verified), "ra_verified", "key_encipherment", "key_agreement", "none"
    problem: Problem | None = None


@dataclass(frozen=True)
class NestedMessage:
    """A TaggedContentInfo of cmsSequence (an RA relaying a device's request)."""

    body_part_id: int
    der: bytes  # the ContentInfo


@dataclass(frozen=True)
class PkiData:
    controls: tuple[Control, ...]
    requests: tuple[CertificationRequest, ...]
    nested: tuple[NestedMessage, ...]
    other_messages: tuple[int, ...]  # bodyPartIDs of otherMsgSequence
    req_sequence_der: bytes  # exactly as received: identity proofs are over it

    def controls_of(self, name: str) -> list[Control]:
        return [c for c in self.controls if c.type == name]

    def control(self, name: str) -> Control | None:
        found = self.controls_of(name)
        return found[0] if found else None


@dataclass(frozen=True)
class FullPkiRequest:
    pki_data: PkiData
    signed: bool
    signer: x509.Certificate | None = None  # the certificate whose key signed, if one did
    signer_key: PublicKeyTypes | None = None  # the public key that verified
    certificates: tuple[x509.Certificate, ...] = ()  # carried in the SignedData


@dataclass(frozen=True)
class IdentityProof:
    """identityProofV2 (or the version 1 identityProof: SHA-1 and HMAC-SHA1)."""

    hash: str
    mac: str
    witness: bytes


# -- reading requests ---------------------------------------------------------------

def read_request(der: bytes, extra_keys: Sequence[CertificatePublicKeyTypes] = ()) -> FullPkiRequest:
    """A Full PKI Request: SignedData over a PKIData, or a bare PKIData in a
    ContentInfo (unsigned). Raises BadCmcMessage.

    A signer without a certificate must hold the key of one of the requests,
    or one of ``extra_keys`` (e.g. the key of a request that waits for
    approval, asked about with queryPending)."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        content_type = info["content_type"].native
    except ValueError:
        raise BadCmcMessage("not a CMS ContentInfo") from None
    if content_type == rfc5272.PKI_DATA:
        return FullPkiRequest(read_pki_data(_explicit_content(info)), signed=False)
    if content_type == "authenticated_data":
        raise BadCmcMessage("AuthenticatedData (MAC-protected) requests are not supported")
    if content_type != "signed_data":
        raise BadCmcMessage(f"a Full PKI Request is a SignedData over a PKIData, not {content_type}")
    try:
        encap = info["content"]["encap_content_info"]
        encap_type = encap["content_type"].native
        raw = None if isinstance(encap["content"], core.Void) else encap["content"].__bytes__()
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise BadCmcMessage(f"unreadable SignedData: {_short(e)}") from None
    if encap_type != rfc5272.PKI_DATA:
        raise BadCmcMessage(f"the SignedData carries {encap_type}, not a PKIData")
    if raw is None:
        raise BadCmcMessage("the SignedData carries no PKIData (detached content)")
    pki = read_pki_data(raw)
    keys = [r.public_key for r in pki.requests if r.public_key is not None] + list(extra_keys)
    try:
        verified = signeddata.verify(der, public_keys=keys)
    except signeddata.BadSignedData as e:
        raise BadCmcMessage(f"request signature: {e}", "bad_message_check") from None
    carried = _carried_certificates(info)
    return FullPkiRequest(pki, signed=True, signer=verified.signer, signer_key=verified.public_key,
                          certificates=tuple(carried))


def peek_pki_data(der: bytes) -> PkiData | None:
    """The PKIData of a Full PKI Request before any check of its signature
    (to find which keys may have signed it), or None if there is none."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native == rfc5272.PKI_DATA:
            return read_pki_data(_explicit_content(info))
        encap = info["content"]["encap_content_info"]
        if info["content_type"].native != "signed_data" or encap["content_type"].native != rfc5272.PKI_DATA:
            return None
        return read_pki_data(encap["content"].__bytes__())
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _explicit_content(info: cms.ContentInfo) -> bytes:
    """The DER of a ContentInfo's content, without the [0] EXPLICIT wrapper."""
    try:
        return der(info["content"].untag())
    except (ValueError, TypeError, AttributeError) as e:
        raise BadCmcMessage(f"unreadable PKIData: {_short(e)}") from None


def _carried_certificates(info: cms.ContentInfo) -> list[x509.Certificate]:
    certs = info["content"]["certificates"]
    if isinstance(certs, core.Void):
        return []
    out = []
    for choice in certs:
        if choice.name == "certificate":
            try:
                out.append(x509.load_der_x509_certificate(choice.chosen.dump()))
            except ValueError:
                raise BadCmcMessage("the SignedData carries an unreadable certificate") from None
    return out


def read_pki_data(der: bytes) -> PkiData:
    """Parse and check a PKIData: unique bodyPartIDs, each request read and
    its proof of possession checked (a bad request is recorded in its
    ``problem``, the others still count). Values of controls we know are
    decoded here, so a malformed one fails the message, not its handling."""
    try:
        return _read_pki_data(der)
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError) as e:
        if isinstance(e, BadCmcMessage):
            raise
        raise BadCmcMessage(f"unreadable PKIData: {_short(e)}") from None


def _read_pki_data(der: bytes) -> PkiData:
    pki = rfc5272.PKIData.load(der, strict=True)
    seen: set[int] = set()

    def body_part(value: Any) -> int:  # an asn1crypto INTEGER
        n = int(value.native)
        if not 0 <= n <= rfc5272.BODY_PART_ID_MAX:
            raise BadCmcMessage(f"bodyPartID {n} out of range")
        if n in seen:
            raise BadCmcMessage(f"bodyPartID {n} used twice")
        seen.add(n)
        return n

    controls: list[Control] = []
    for attr in pki["control_sequence"]:
        kind = attr["attr_type"].native
        values = attr["attr_values"]
        if kind in rfc5272.CONTROL_SPECS:
            values.native  # noqa: B018 - a malformed value fails here
        controls.append(Control(body_part(attr["body_part_id"]), kind, values[0] if len(values) else None))
    requests: list[CertificationRequest] = []
    for tagged in pki["req_sequence"]:
        tagged.native  # noqa: B018
        if tagged.name == "tcr":
            requests.append(_pkcs10(body_part(tagged.chosen["body_part_id"]),
                                    tagged.chosen["certification_request"].dump()))
        elif tagged.name == "crm":
            msg = rfc4211.CertReqMsg.load(tagged.chosen.untag().dump())
            requests.append(_crmf(body_part(msg["cert_req"]["cert_req_id"]), msg))
        else:
            requests.append(CertificationRequest(
                body_part(tagged.chosen["body_part_id"]), "other", tagged.chosen.untag().dump(),
                problem=Problem("bad_request", "other request message types (orm) are not supported", "no_support")))
    nested: list[NestedMessage] = []
    for t in pki["cms_sequence"]:
        t["content_info"]["content_type"].native  # noqa: B018
        nested.append(NestedMessage(body_part(t["body_part_id"]), t["content_info"].dump()))
    others = tuple(body_part(m["body_part_id"]) for m in pki["other_msg_sequence"])
    return PkiData(tuple(controls), tuple(requests), tuple(nested), others, pki["req_sequence"].dump())


def _pkcs10(body_part_id: int, der: bytes) -> CertificationRequest:
    try:
        csr = csrs.load_csr(der)
    except csrs.BadCSR as e:
        return CertificationRequest(body_part_id, "pkcs10", der, problem=Problem("bad_request", str(e)))
    subject, public_key, san = csr.subject, csr.public_key(), csrs.requested_san(csr)
    if not csrs.signature_ok(csr):
        return CertificationRequest(body_part_id, "pkcs10", der, subject=subject, public_key=public_key, san=san,
                                    csr=csr, problem=Problem(
                                        "pop_failed", "PKCS#10 signature does not verify (proof of possession failed)"))
    return CertificationRequest(body_part_id, "pkcs10", der, subject=subject, public_key=public_key, san=san, csr=csr,
                                pop="signature")


def _crmf(body_part_id: int, msg: rfc4211.CertReqMsg) -> CertificationRequest:
    der = msg.dump()
    try:
        req = crmf.read(msg)
    except crmf.BadCrmfRequest as e:
        try:  # keep the key when only the POP failed: it may still have signed the message
            key = crmf.read(msg, check_pop=False).public_key
        except crmf.BadCrmfRequest:
            key = None
        return CertificationRequest(body_part_id, "crmf", der, public_key=key,
                                    problem=Problem(e.fail_info, e.reason))
    return CertificationRequest(body_part_id, "crmf", der, subject=req.subject, public_key=req.public_key,
                                san=req.san, pop=req.pop)


def identity_proof(control: Control) -> IdentityProof:
    """The proof an identityProofV2 (or identityProof) control carries."""
    try:
        if control.type == "identity_proof":
            return IdentityProof("sha1", "sha1", control.value.native)
        value = control.value
        proof = IdentityProof(value["proof_alg_id"]["algorithm"].native, value["mac_alg_id"]["algorithm"].native,
                              value["witness"].native)
    except (AttributeError, TypeError, KeyError, ValueError):
        raise BadCmcMessage("unreadable identity proof", "bad_identity") from None
    if proof.hash not in PROOF_HASHES or proof.mac not in PROOF_MACS:
        raise BadCmcMessage(f"identity proof algorithms {proof.hash}/hmac-{proof.mac} are not supported", "bad_alg")
    return proof


def identity_proof_key(secret: bytes, hash_name: str) -> bytes:
    """RFC 5272 6.2.1 step 1: the shared secret hashed with proofAlgID is the MAC key."""
    return hashlib.new(hash_name, secret).digest()


def identity_proof_witness(secret: bytes, req_sequence_der: bytes, hash_name: str = "sha256",
                           mac_name: str = "sha256") -> bytes:
    """The witness: HMAC (macAlgId) keyed with H(secret) over the DER of reqSequence."""
    return hmac.new(identity_proof_key(secret, hash_name), req_sequence_der, mac_name).digest()


# -- building requests (the client, and tests) ------------------------------------

def control(body_part_id: int, name: str, value: Any) -> rfc5272.TaggedAttribute:  # value: asn1crypto or native
    """A TaggedAttribute: ``name`` is a control name (``transaction_id``) or OID."""
    return rfc5272.TaggedAttribute({"body_part_id": body_part_id, "attr_type": name, "attr_values": [value]})


def pkcs10_request(body_part_id: int, csr: x509.CertificateSigningRequest | bytes) -> rfc5272.TaggedRequest:
    der = csr if isinstance(csr, bytes) else csr.public_bytes(serialization.Encoding.DER)
    return rfc5272.TaggedRequest(name="tcr", value={"body_part_id": body_part_id,
                                                    "certification_request": asn1_csr.CertificationRequest.load(der)})


def crmf_request(body_part_id: int, private_key: signeddata.SigningKey, subject: x509.Name, *,
                 san: x509.SubjectAlternativeName | None = None) -> rfc5272.TaggedRequest:
    """A CRMF request whose certReqId is the bodyPartID (RFC 5272 3.2.1.3.2)."""
    return rfc5272.TaggedRequest(name="crm", value=crmf.build(body_part_id, private_key, subject, san=san))


def pki_data(controls: Iterable[rfc5272.TaggedAttribute] = (), requests: Iterable[rfc5272.TaggedRequest] = (),
             nested: tuple[tuple[int, bytes], ...] = ()) -> rfc5272.PKIData:
    """``nested``: (bodyPartID, ContentInfo DER) pairs for cmsSequence."""
    return rfc5272.PKIData({
        "control_sequence": list(controls),
        "req_sequence": list(requests),
        "cms_sequence": [{"body_part_id": n, "content_info": cms.ContentInfo.load(der)} for n, der in nested],
        "other_msg_sequence": [],
    })


def with_identity_proof(pki: rfc5272.PKIData, body_part_id: int, secret: bytes, *, hash_name: str = "sha256",
                        mac_name: str = "sha256") -> rfc5272.PKIData:
    """The PKIData with an identityProofV2 control added (over its reqSequence)."""
    witness = identity_proof_witness(secret, pki["req_sequence"].dump(), hash_name, mac_name)
    proof = control(body_part_id, "identity_proof_v2", {
        "proof_alg_id": {"algorithm": hash_name}, "mac_alg_id": {"algorithm": mac_name}, "witness": witness})
    controls = [*pki["control_sequence"], proof]
    return rfc5272.PKIData({"control_sequence": controls, "req_sequence": pki["req_sequence"],
                            "cms_sequence": pki["cms_sequence"], "other_msg_sequence": pki["other_msg_sequence"]})


def sign_request(pki: rfc5272.PKIData, key: signeddata.SigningKey, cert: x509.Certificate | None = None, *,
                 certificates: list[x509.Certificate] | None = None) -> bytes:
    """SignedData over the PKIData. Without ``cert`` the key being certified
    signs, identified by its subject key identifier (RFC 5280 4.2.1.2 method
    1); with it, the current certificate signs (renewal, re-key, revocation)."""
    if cert is None:
        cert = _key_only_certificate(key)
        certificates = certificates or []
    return signeddata.sign(rfc5272.PKI_DATA, pki, key, cert,
                           certificates=certificates if certificates is not None else [cert])


def unsigned_request(pki: rfc5272.PKIData) -> bytes:
    return der(cms.ContentInfo({"content_type": rfc5272.PKI_DATA, "content": pki}))


def _key_only_certificate(key: signeddata.SigningKey) -> x509.Certificate:
    """Only its subject key identifier is used, as the SignedData signer id;
    it is not sent."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "cmc request key")])
    algorithm = None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(minutes=5))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, algorithm))


# -- responses ----------------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    """One CMCStatusInfoV2: ``body_list`` holds bodyPartIDs, or tuples for a
    bodyPartPath into a nested PKIData."""

    status: str
    body_list: tuple[BodyPartRef, ...] = ()
    status_string: str | None = None
    fail_info: str | None = None
    pend_token: bytes | None = None
    pend_time: datetime.datetime | None = None


def status_info_v2(s: Status) -> rfc5272.CMCStatusInfoV2:
    body_list = [rfc5272.BodyPartReference(name="body_part_path", value=list(ref)) if isinstance(ref, tuple)
                 else rfc5272.BodyPartReference(name="body_part_id", value=ref) for ref in s.body_list]
    value = {"cmc_status": s.status, "body_list": body_list}
    if s.status_string:
        value["status_string"] = s.status_string
    if s.fail_info is not None:
        value["other_info"] = rfc5272.OtherStatusInfo(name="fail_info", value=s.fail_info)
    elif s.pend_token is not None:
        value["other_info"] = rfc5272.OtherStatusInfo(name="pend_info", value={
            "pend_token": s.pend_token, "pend_time": s.pend_time})
    return rfc5272.CMCStatusInfoV2(value)


def pki_response(statuses: Iterable[Status], *, transaction_id: int | None = None, recipient_nonce: bytes | None = None,
                 sender_nonce: bytes | None = None) -> rfc5272.PKIResponse:
    """A PKIResponse: one statusInfoV2 control per Status, then the
    transactionId and nonces (RFC 5272 6.6, 6.7)."""
    controls = [control(i, "status_info_v2", status_info_v2(s)) for i, s in enumerate(statuses, start=1)]
    n = len(controls)
    for name, value in (("transaction_id", transaction_id), ("recipient_nonce", recipient_nonce),
                        ("sender_nonce", sender_nonce)):
        if value is not None:
            n += 1
            controls.append(control(n, name, value))
    return rfc5272.PKIResponse({"control_sequence": controls, "cms_sequence": [], "other_msg_sequence": []})


@dataclass(frozen=True)
class FullPkiResponse:
    statuses: tuple[Status, ...]
    transaction_id: int | None
    sender_nonce: bytes | None
    recipient_nonce: bytes | None
    certificates: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...]
    signer: x509.Certificate
    content: bytes = field(repr=False, default=b"")  # the PKIResponse DER

    def status_for(self, body_part: BodyPartRef) -> Status | None:
        for s in self.statuses:
            if body_part in s.body_list:
                return s
        return None


def read_response(der: bytes) -> FullPkiResponse:
    """A Full PKI Response: its signature checked against the signer
    certificate it carries (whether that signer is trusted is the caller's
    question). Raises BadCmcMessage."""
    try:
        verified = signeddata.verify(der)
    except signeddata.BadSignedData as e:
        raise BadCmcMessage(f"response signature: {e}", "bad_message_check") from None
    if verified.content_type != rfc5272.PKI_RESPONSE:
        raise BadCmcMessage(f"the SignedData carries {verified.content_type}, not a PKIResponse")
    try:
        response = rfc5272.PKIResponse.load(verified.content, strict=True)
        response.native  # noqa: B018
        info = cms.ContentInfo.load(der)
        sd = info["content"]
        crls = [] if isinstance(sd["crls"], core.Void) else [
            x509.load_der_x509_crl(c.chosen.dump()) for c in sd["crls"] if c.name == "crl"]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise BadCmcMessage(f"unreadable PKIResponse: {_short(e)}") from None
    statuses: list[Status] = []
    txid = sender = recipient = None
    for attr in response["control_sequence"]:
        name, values = attr["attr_type"].native, attr["attr_values"]
        if not len(values):
            continue
        value = values[0]
        if name == "status_info_v2":
            statuses.append(_status(value))
        elif name == "transaction_id":
            txid = value.native
        elif name == "sender_nonce":
            sender = value.native
        elif name == "recipient_nonce":
            recipient = value.native
    return FullPkiResponse(tuple(statuses), txid, sender, recipient, tuple(_carried_certificates(info)),
                           tuple(crls), verified.signer_certificate, verified.content)


def _status(value: rfc5272.CMCStatusInfoV2) -> Status:
    refs = tuple(tuple(r.native) if r.name == "body_part_path" else r.native for r in value["body_list"])
    other = value["other_info"]
    fail_info = pend_token = pend_time = None
    if not isinstance(other, core.Void) and other.name is not None:
        if other.name == "fail_info":
            fail_info = other.native
        elif other.name == "pend_info":
            pend_token, pend_time = other.chosen["pend_token"].native, other.chosen["pend_time"].native
    return Status(value["cmc_status"].native, refs, value["status_string"].native, fail_info, pend_token, pend_time)


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:80]


__all__ = ["FAIL_INFOS", "PROOF_HASHES", "PROOF_MACS", "STATUSES", "BadCmcMessage", "CertificationRequest",
           "Control", "FullPkiRequest", "FullPkiResponse", "IdentityProof", "NestedMessage", "PkiData", "Problem",
           "Status", "control", "crmf_request", "identity_proof", "identity_proof_key", "identity_proof_witness",
           "peek_pki_data", "pki_data", "pki_response", "pkcs10_request", "read_pki_data", "read_request",
           "read_response",
           "sign_request", "status_info_v2", "unsigned_request", "with_identity_proof"]
