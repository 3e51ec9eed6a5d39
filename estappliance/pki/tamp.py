"""RFC 5934 TAMP: build the five manager-to-device messages, the device's
answers, and read both. Pure: signing keys are passed in.

A TAMP message names its target (all modules, hardware modules, communities
or a URI) and a sequence number the device checks for replay; answers
refer back to the message by the same TAMPMsgRef.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import cms, core, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .errors import PkiError
from . import signeddata
from .asn1 import rfc5914, rfc5934
from .keyids import key_identifier, spki_der
from .maybe_signed import open_content_info, reading
from .trust import carried_certificates
from .encoding import der
from .certs import load_subject_public_key

# Server -> device messages and the media type each travels under.
REQUESTS = ("tamp_status_query", "tamp_update", "tamp_apex_update", "tamp_community_update",
            "tamp_sequence_adjust")
# Device -> server answers.
ANSWERS = ("tamp_status_response", "tamp_update_confirm", "tamp_apex_update_confirm",
           "tamp_community_update_confirm", "tamp_sequence_adjust_confirm", "tamp_error")
# The answer each request expects.
ANSWER_TO = {
    "tamp_status_query": "tamp_status_response",
    "tamp_update": "tamp_update_confirm",
    "tamp_apex_update": "tamp_apex_update_confirm",
    "tamp_community_update": "tamp_community_update_confirm",
    "tamp_sequence_adjust": "tamp_sequence_adjust_confirm",
}
MAX_SEQ_NUM = 9223372036854775807


class BadTamp(PkiError):
    """Not a TAMP message we can read, or one whose signature fails."""


def media_type(kind: str) -> str:
    return rfc5934.MESSAGES[kind][1]


def kind_of_media_type(media: str) -> str | None:
    for kind, (_oid, mt) in rfc5934.MESSAGES.items():
        if mt == media:
            return kind
    return None


def oid_of(kind: str) -> str:
    return rfc5934.MESSAGES[kind][0]


def kind_of_oid(oid: str) -> str | None:
    for kind, (o, _mt) in rfc5934.MESSAGES.items():
        if o == oid:
            return kind
    return None


# -- targets and references ------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """TargetIdentifier: all modules, some hardware modules, communities, or a URI."""

    kind: str = "all_modules"  # all_modules | hw_modules | communities | uri
    hw_type: str | None = None
    hw_serials: tuple[bytes, ...] = ()  # empty with hw_type: every serial of that type
    communities: tuple[str, ...] = ()
    uri: str | None = None

    def asn1(self) -> rfc5934.TargetIdentifier:
        if self.kind == "all_modules":
            return rfc5934.TargetIdentifier(name="all_modules", value=core.Null())
        if self.kind == "hw_modules":
            choices: list[dict[str, Any]] = ([{"single": s} for s in self.hw_serials] if self.hw_serials
                                             else [{"all": core.Null()}])
            entries = [rfc5934.HardwareSerialEntry(name=next(iter(e)), value=next(iter(e.values())))
                       for e in choices]
            return rfc5934.TargetIdentifier(name="hw_modules", value=[
                {"hw_type": self.hw_type, "hw_serial_entries": entries}])
        if self.kind == "communities":
            return rfc5934.TargetIdentifier(name="communities", value=list(self.communities))
        if self.kind == "uri":
            return rfc5934.TargetIdentifier(name="uri", value=self.uri)
        raise ValueError(f"unknown TAMP target kind {self.kind!r}")

    @classmethod
    def from_asn1(cls, value: rfc5934.TargetIdentifier) -> "Target":
        if value.name == "all_modules":
            return cls()
        if value.name == "hw_modules":
            first = value.chosen[0]
            serials = tuple(e.chosen.native for e in first["hw_serial_entries"] if e.name == "single")
            return cls("hw_modules", hw_type=first["hw_type"].dotted, hw_serials=serials)
        if value.name == "communities":
            return cls("communities", communities=tuple(o.dotted for o in value.chosen))
        if value.name == "uri":
            return cls("uri", uri=value.chosen.native)
        return cls("other_name")

    def matches(self, hw_type: str | None, hw_serial: bytes | None, communities: tuple[str, ...] = ()) -> bool:
        """Is a device with this identity among the targets? (RFC 5934 incorrectTarget)"""
        if self.kind == "all_modules":
            return True
        if self.kind == "hw_modules":
            return hw_type == self.hw_type and (not self.hw_serials or hw_serial in self.hw_serials)
        if self.kind == "communities":
            return bool(set(self.communities) & set(communities))
        return False

    def describe(self) -> str:
        if self.kind == "hw_modules":
            serials = ",".join(s.decode("utf-8", "replace") for s in self.hw_serials) or "all serials"
            return f"hardware {self.hw_type} ({serials})"
        if self.kind == "communities":
            return "communities " + ",".join(self.communities)
        if self.kind == "uri":
            return f"uri {self.uri}"
        return self.kind.replace("_", " ")


@dataclass(frozen=True)
class MsgRef:
    target: Target
    seq_num: int

    def asn1(self) -> rfc5934.TAMPMsgRef:
        if not 0 <= self.seq_num <= MAX_SEQ_NUM:
            raise ValueError("TAMP sequence numbers are 0..2^63-1")
        return rfc5934.TAMPMsgRef({"target": self.target.asn1(), "seq_num": self.seq_num})

    @classmethod
    def from_asn1(cls, value: rfc5934.TAMPMsgRef) -> "MsgRef":
        return cls(Target.from_asn1(value["target"]), value["seq_num"].native)


# -- trust anchors ----------------------------------------------------------------------


def spki_of(cert: x509.Certificate) -> bytes:
    return spki_der(cert.public_key())


key_id_of_cert = key_identifier


def anchor_of_cert(cert: x509.Certificate) -> rfc5914.TrustAnchorChoice:
    return rfc5914.TrustAnchorChoice(name="certificate", value=asn1_x509.Certificate.load(
        cert.public_bytes(serialization.Encoding.DER)))


@dataclass(frozen=True)
class TrustAnchor:
    """One trust anchor as TAMP carries it, reduced to what a store keys on."""

    key_id: bytes
    spki: bytes
    title: str | None
    der: bytes  # the TrustAnchorChoice

    @classmethod
    def from_choice(cls, choice: rfc5914.TrustAnchorChoice) -> "TrustAnchor":
        if choice.explicit:  # as carried in TrustAnchorUpdate add [1]: keep the bare CHOICE
            choice = choice.untag()
        if choice.name == "certificate":
            cert = x509.load_der_x509_certificate(choice.chosen.dump())
            title = cert.subject.rfc4514_string()
            return cls(key_id_of_cert(cert), spki_of(cert), title, choice.dump())
        if choice.name == "ta_info":
            info = choice.chosen
            return cls(info["key_id"].native, info["pub_key"].dump(), info["ta_title"].native, choice.dump())
        tbs = choice.chosen
        spki = tbs["subject_public_key_info"].dump()
        ski = tbs.key_identifier_value
        key_id = ski.native if ski is not None else x509.SubjectKeyIdentifier.from_public_key(
            load_subject_public_key(spki)).digest
        return cls(key_id, spki, tbs["subject"].human_friendly, choice.dump())

    @classmethod
    def from_cert(cls, cert: x509.Certificate) -> "TrustAnchor":
        return cls.from_choice(anchor_of_cert(cert))

    def choice(self) -> rfc5914.TrustAnchorChoice:
        choice: rfc5914.TrustAnchorChoice = rfc5914.TrustAnchorChoice.load(self.der)
        return choice

    def certificate(self) -> x509.Certificate | None:
        choice = self.choice()
        if choice.name == "certificate":
            return x509.load_der_x509_certificate(choice.chosen.dump())
        return None


# -- manager -> device ------------------------------------------------------------------


def status_query(ref: MsgRef, *, terse: bool = False) -> rfc5934.TAMPStatusQuery:
    value: dict[str, Any] = {"query": ref.asn1()}
    if terse:
        value["terse"] = "terse"
    return rfc5934.TAMPStatusQuery(value)


@dataclass(frozen=True)
class Change:
    """One TrustAnchorUpdate: add a certificate, or remove a key."""

    action: str  # "add" | "remove"
    anchor: TrustAnchor

    def asn1(self) -> rfc5934.TrustAnchorUpdate:
        if self.action == "add":
            return rfc5934.TrustAnchorUpdate(name="add", value=self.anchor.choice())
        if self.action == "remove":
            return rfc5934.TrustAnchorUpdate(name="remove", value=keys.PublicKeyInfo.load(self.anchor.spki))
        raise ValueError(f"unknown trust anchor update {self.action!r}")


def update(ref: MsgRef, changes: list[Change], *, terse: bool = False) -> rfc5934.TAMPUpdate:
    if not changes:
        raise ValueError("a trust anchor update needs at least one change")
    value = {"msg_ref": ref.asn1(), "updates": [c.asn1() for c in changes]}
    if terse:
        value["terse"] = "terse"
    return rfc5934.TAMPUpdate(value)


def apex_update(ref: MsgRef, apex: TrustAnchor, *, clear_trust_anchors: bool = False,
                clear_communities: bool = False, seq_number: int | None = None,
                terse: bool = False) -> rfc5934.TAMPApexUpdate:
    value = {"msg_ref": ref.asn1(), "clear_trust_anchors": clear_trust_anchors,
             "clear_communities": clear_communities, "apex_ta": apex.choice()}
    if seq_number is not None:
        value["seq_number"] = seq_number
    if terse:
        value["terse"] = "terse"
    return rfc5934.TAMPApexUpdate(value)


def community_update(ref: MsgRef, *, add: Sequence[str] = (), remove: Sequence[str] = (),
                     terse: bool = False) -> rfc5934.TAMPCommunityUpdate:
    if not add and not remove:
        raise ValueError("a community update adds or removes at least one community")
    updates: dict[str, list[str]] = {}
    if remove:
        updates["remove"] = list(remove)
    if add:
        updates["add"] = list(add)
    value: dict[str, Any] = {"msg_ref": ref.asn1(), "updates": updates}
    if terse:
        value["terse"] = "terse"
    return rfc5934.TAMPCommunityUpdate(value)


def sequence_adjust(ref: MsgRef) -> rfc5934.SequenceNumberAdjust:
    return rfc5934.SequenceNumberAdjust({"msg_ref": ref.asn1()})


def sign(kind: str, value: core.Asn1Value, key: signeddata.SigningKey, cert: x509.Certificate, *,
         certificates: list[x509.Certificate] | None = None) -> bytes:
    """ContentInfo(SignedData(TAMP message)) DER (RFC 5934 4: requests MUST be signed)."""
    return signeddata.sign(kind, value, key, cert, certificates=certificates, use_ski=True)


# -- device -> manager ------------------------------------------------------------------


def status_response(query: MsgRef, anchors: list[TrustAnchor], *, terse: bool = False,
                    communities: list[str] | None = None, seq_numbers: dict[bytes, int] | None = None,
                    uses_apex: bool = True) -> rfc5934.TAMPStatusResponse:
    body: dict[str, Any]
    if terse:
        body = {"ta_key_ids": [a.key_id for a in anchors]}
        if communities is not None:
            body["communities"] = communities
        response = rfc5934.StatusResponse(name="terse_response", value=body)
    else:
        body = {"ta_info": [a.choice() for a in anchors]}
        if communities is not None:
            body["communities"] = communities
        if seq_numbers:
            body["tamp_seq_numbers"] = [{"key_id": k, "seq_number": v} for k, v in sorted(seq_numbers.items())]
        response = rfc5934.StatusResponse(name="verbose_response", value=body)
    value: dict[str, Any] = {"query": query.asn1(), "response": response}
    if not uses_apex:
        value["uses_apex"] = False
    return rfc5934.TAMPStatusResponse(value)


def update_confirm(ref: MsgRef, statuses: list[int], *, anchors: list[TrustAnchor] | None = None
                   ) -> rfc5934.TAMPUpdateConfirm:
    """Terse (status codes only) unless ``anchors`` gives the resulting store."""
    if anchors is None:
        confirm = rfc5934.UpdateConfirm(name="terse_confirm", value=statuses)
    else:
        confirm = rfc5934.UpdateConfirm(name="verbose_confirm", value={
            "status": statuses, "ta_info": [a.choice() for a in anchors]})
    return rfc5934.TAMPUpdateConfirm({"update": ref.asn1(), "confirm": confirm})


def apex_update_confirm(ref: MsgRef, status: int, *, anchors: list[TrustAnchor] | None = None
                        ) -> rfc5934.TAMPApexUpdateConfirm:
    if anchors is None:
        confirm = rfc5934.ApexUpdateConfirm(name="terse_apex_confirm", value=status)
    else:
        confirm = rfc5934.ApexUpdateConfirm(name="verbose_apex_confirm", value={
            "status": status, "ta_info": [a.choice() for a in anchors]})
    return rfc5934.TAMPApexUpdateConfirm({"apex_replace": ref.asn1(), "apex_confirm": confirm})


def community_update_confirm(ref: MsgRef, status: int, *, communities: list[str] | None = None
                             ) -> rfc5934.TAMPCommunityUpdateConfirm:
    if communities is None:
        confirm = rfc5934.CommunityConfirm(name="terse_comm_confirm", value=status)
    else:
        confirm = rfc5934.CommunityConfirm(name="verbose_comm_confirm",
                                           value={"status": status, "communities": communities})
    return rfc5934.TAMPCommunityUpdateConfirm({"update": ref.asn1(), "comm_confirm": confirm})


def sequence_adjust_confirm(ref: MsgRef, status: int) -> rfc5934.SequenceNumberAdjustConfirm:
    return rfc5934.SequenceNumberAdjustConfirm({"adjust": ref.asn1(), "status": status})


def error(msg_type: str, status: int, ref: MsgRef | None = None) -> rfc5934.TAMPError:
    """``msg_type`` is the kind (or OID) of the message that failed."""
    value = {"msg_type": oid_of(msg_type) if msg_type in rfc5934.MESSAGES else msg_type, "status": status}
    if ref is not None:
        value["msg_ref"] = ref.asn1()
    return rfc5934.TAMPError(value)


def unsigned(kind: str, value: core.Asn1Value) -> bytes:
    """ContentInfo DER of an unsigned answer (RFC 5934 4: answers SHOULD be signed)."""
    return der(cms.ContentInfo({"content_type": kind, "content": value}))


# -- reading ----------------------------------------------------------------------------


def enumerated(value: core.Enumerated) -> int:
    return int.from_bytes(value.contents, "big", signed=True)


@dataclass(frozen=True)
class TampMessage:
    """A TAMP message of any kind, read (and its signature checked, if signed)."""

    kind: str
    value: core.Asn1Value
    ref: MsgRef | None  # the message's own msgRef, or the one an answer refers to
    signer: x509.Certificate | None
    carried: tuple[x509.Certificate, ...] = ()
    der: bytes = b""

    # What an answer reports, flattened for the server's records.
    statuses: tuple[int, ...] = field(default_factory=tuple)
    anchors: tuple[TrustAnchor, ...] | None = None
    key_ids: tuple[bytes, ...] | None = None
    communities: tuple[str, ...] | None = None
    failed_type: str | None = None  # tamp_error: the kind of message that failed

    @property
    def request_ref(self) -> MsgRef:
        """The msgRef of a request (every request carries one)."""
        if self.ref is None:
            raise BadTamp(f"{self.kind} without a message reference")
        return self.ref

    @property
    def signer_certificate(self) -> x509.Certificate:
        """Who signed it, for a message read with require_signature."""
        if self.signer is None:
            raise BadTamp(f"{self.kind} is not signed")
        return self.signer


def _ref_field(kind: str) -> str | None:
    return {
        "tamp_status_query": "query", "tamp_status_response": "query", "tamp_update": "msg_ref",
        "tamp_update_confirm": "update", "tamp_apex_update": "msg_ref", "tamp_apex_update_confirm": "apex_replace",
        "tamp_community_update": "msg_ref", "tamp_community_update_confirm": "update",
        "tamp_sequence_adjust": "msg_ref", "tamp_sequence_adjust_confirm": "adjust", "tamp_error": "msg_ref",
    }.get(kind)


def read(der: bytes, candidates: list[x509.Certificate] | None = None, *, require_signature: bool = False
         ) -> TampMessage:
    """Parse a ContentInfo holding a TAMP message, signed or not."""
    with reading(BadTamp, "TAMP message"):
        opened = open_content_info(der, candidates, rfc5934.SPECS)
        kind, signer = opened.content_type, opened.signer
        if signer is None and require_signature:
            raise BadTamp("this TAMP message must be signed (RFC 5934 4)")
        if kind not in rfc5934.SPECS:
            raise BadTamp(f"{kind} is not a TAMP message")
        value = rfc5934.SPECS[kind].load(opened.content, strict=True)
        carried = () if signer is None else tuple(carried_certificates(der))
        return _flatten(kind, value, signer, carried, der)


def _anchors(choices: Iterable[rfc5914.TrustAnchorChoice]) -> tuple[TrustAnchor, ...]:
    return tuple(TrustAnchor.from_choice(c) for c in choices)


def _oids(values: Any) -> tuple[str, ...] | None:  # an asn1crypto SEQUENCE OF OID, or Void
    if isinstance(values, core.Void) or values.native is None:
        return None
    return tuple(o.dotted for o in values)


def _flatten(kind: str, value: Any, signer: x509.Certificate | None, carried: tuple[x509.Certificate, ...],
             der: bytes) -> TampMessage:
    ref_field = _ref_field(kind)
    raw_ref = value[ref_field]
    ref = None if isinstance(raw_ref, core.Void) else MsgRef.from_asn1(raw_ref)
    out: dict[str, Any] = dict(kind=kind, value=value, ref=ref, signer=signer, carried=carried, der=der)
    if kind == "tamp_status_response":
        response = value["response"]
        if response.name == "verbose_response":
            out["anchors"] = _anchors(response.chosen["ta_info"])
            out["communities"] = _oids(response.chosen["communities"])
        else:
            out["key_ids"] = tuple(k.native for k in response.chosen["ta_key_ids"])
            out["communities"] = _oids(response.chosen["communities"])
    elif kind == "tamp_update_confirm":
        confirm = value["confirm"]
        if confirm.name == "verbose_confirm":
            out["statuses"] = tuple(enumerated(s) for s in confirm.chosen["status"])
            out["anchors"] = _anchors(confirm.chosen["ta_info"])
        else:
            out["statuses"] = tuple(enumerated(s) for s in confirm.chosen)
    elif kind == "tamp_apex_update_confirm":
        confirm = value["apex_confirm"]
        if confirm.name == "verbose_apex_confirm":
            out["statuses"] = (enumerated(confirm.chosen["status"]),)
            out["anchors"] = _anchors(confirm.chosen["ta_info"])
            out["communities"] = _oids(confirm.chosen["communities"])
        else:
            out["statuses"] = (enumerated(confirm.chosen),)
    elif kind == "tamp_community_update_confirm":
        confirm = value["comm_confirm"]
        if confirm.name == "verbose_comm_confirm":
            out["statuses"] = (enumerated(confirm.chosen["status"]),)
            out["communities"] = _oids(confirm.chosen["communities"])
        else:
            out["statuses"] = (enumerated(confirm.chosen),)
    elif kind == "tamp_sequence_adjust_confirm":
        out["statuses"] = (enumerated(value["status"]),)
    elif kind == "tamp_error":
        out["statuses"] = (enumerated(value["status"]),)
        out["failed_type"] = kind_of_oid(value["msg_type"].dotted) or value["msg_type"].dotted
    elif kind in ("tamp_update",):
        for u in value["updates"]:
            u.native  # parse every change now
    elif kind == "tamp_apex_update":
        value["apex_ta"].native
    elif kind == "tamp_community_update":
        value["updates"].native
    return TampMessage(**out)


def changes_of(update_value: rfc5934.TAMPUpdate) -> list[tuple[str, bytes, TrustAnchor | None]]:
    """(action, SPKI DER, anchor for adds) for each TrustAnchorUpdate."""
    out: list[tuple[str, bytes, TrustAnchor | None]] = []
    for u in update_value["updates"]:
        if u.name == "add":
            anchor = TrustAnchor.from_choice(u.chosen)
            out.append(("add", anchor.spki, anchor))
        elif u.name == "remove":
            out.append(("remove", u.chosen.untag().dump(), None))
        else:
            change = u.chosen
            spki = (change.chosen["subject_public_key_info"] if change.name == "tbs_cert_change"
                    else change.chosen["pub_key"])
            out.append(("change", spki.untag().dump(), None))
    return out


__all__ = ["ANSWERS", "ANSWER_TO", "BadTamp", "Change", "MsgRef", "REQUESTS", "TampMessage", "Target",
           "TrustAnchor", "apex_update", "apex_update_confirm", "changes_of", "community_update",
           "community_update_confirm", "error", "media_type", "read", "sequence_adjust", "sequence_adjust_confirm",
           "sign", "status_query", "status_response", "unsigned", "update", "update_confirm"]
