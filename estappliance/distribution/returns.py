"""Receipts, errors and confirms coming back (RFC 8295 5.2, 6.2, 7.2):
parse, check who signed, find the package they name among those this client
was offered, record, and for TAMP move the client's trust anchor record.

``parse_*`` run anywhere (pure, quick); ``record_*`` are blocking store work
for the store thread. A return that does not parse, is signed by anyone but
the client, or names nothing this client was offered and downloaded is
refused with a client-safe reason (400) and records nothing.
"""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import MalformedRequest, PolicyRefused
from ..pki import firmware
from ..pki.certs import load_subject_public_key
from ..pki import symkeys, tamp
from ..pki.asn1 import rfc5914, rfc7191
from ..store import Store
from ..store.package_tables import NotOffered, Offer
from ..pki import pal_types
from ..store.tamp import AnchorRow

SYMMETRIC = (pal_types.SYMMETRIC_KEY,)
FIRMWARE = (pal_types.FIRMWARE,)
# TAMP request kind -> PAL type of the package that carried it.
TAMP_TYPES = {
    "tamp_status_query": "0028", "tamp_update": "0030", "tamp_apex_update": "0032",
    "tamp_community_update": "0034", "tamp_sequence_adjust": "0036",
}
SUCCESS = 0


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def check_signer(store: Store, client: str, signer: x509.Certificate | None,
                 presented: x509.Certificate | None) -> None:
    """A signed return must be signed by the client: the certificate it
    authenticated with, or one this CA issued to it and has not revoked."""
    if signer is None:
        return
    if presented is not None and _der(presented) == _der(signer):
        return
    record = store.certificates.certificate(signer.serial_number)
    if record is not None and record.client == client and not record.revoked and record.der == _der(signer):
        return
    raise PolicyRefused(f"the return is signed by {signer.subject.rfc4514_string() or 'an unknown signer'},"
                        " not by a certificate of this client")


def _downloaded(offer: Offer) -> Offer:
    """A return may only name a package the client has downloaded: the server
    knows which ones it never sent."""
    if offer.delivery.downloaded_at is None:
        raise NotOffered(f"package {offer.package.id} was offered to this client but never downloaded by it")
    return offer


def _latest_awaiting(offers: list[Offer]) -> Offer:
    """For an error that names no package: the newest one downloaded and still owed a return."""
    for offer in offers:
        if offer.delivery.downloaded_at is not None and offer.awaiting_return:
            return offer
    raise NotOffered("the error names no package, and none is waiting for a return from this client")


# -- /symmetrickeys/return ---------------------------------------------------------------


def parse_key_package_return(der: bytes) -> symkeys.SymmetricKeyReturn:
    try:
        return symkeys.read_return(der)
    except symkeys.BadSymmetricKeyReturn as e:
        raise MalformedRequest(str(e)) from None


def record_key_package_return(store: Store, client: str, label: str, ret: symkeys.SymmetricKeyReturn,
                              presented: x509.Certificate | None) -> Offer:
    check_signer(store, client, ret.signer, presented)
    offers = store.packages.offered_packages(client, label, SYMMETRIC)
    offer: Offer | None
    if ret.pkg_id is None:
        offer = _latest_awaiting(offers)
    else:
        offer = next((o for o in offers if o.key_package_id == ret.pkg_id), None)
        if offer is None:
            raise NotOffered("the return names a key package this client was never offered")
        _downloaded(offer)
    if ret.kind == rfc7191.RECEIPT:
        store.packages.record_receipt(offer.package.id, client, return_der=ret.der)
    else:
        assert ret.error_code is not None  # an error report carries its code
        store.packages.record_error(offer.package.id, client, ret.error_code, return_der=ret.der)
    return offer


# -- /firmware/return ----------------------------------------------------------------------


def parse_firmware_report(der: bytes) -> firmware.FirmwareReport:
    try:
        return firmware.read_report(der)
    except firmware.BadFirmwareReport as e:
        raise MalformedRequest(str(e)) from None


def record_firmware_report(store: Store, client: str, label: str, report: firmware.FirmwareReport,
                           presented: x509.Certificate | None) -> Offer:
    check_signer(store, client, report.signer, presented)
    offers = store.packages.offered_packages(client, label, FIRMWARE)
    offer: Offer | None
    if report.name is None:
        offer = _latest_awaiting(offers)
    else:
        offer = next((o for o in offers if o.package.details.get("fw_name") == report.name.key()), None)
        if offer is None:
            raise NotOffered(f"the report names firmware {report.name} that this client was never offered")
        _downloaded(offer)
    if report.kind == firmware.RECEIPT:
        store.packages.record_receipt(offer.package.id, client, return_der=report.der)
    else:
        assert report.error_code is not None  # a load error carries its code
        store.packages.record_error(offer.package.id, client, report.error_code, return_der=report.der)
    return offer


# -- /tamp/return ----------------------------------------------------------------------------


def parse_tamp_answer(der: bytes, media_type: str | None) -> tamp.TampMessage:
    try:
        message = tamp.read(der)
    except tamp.BadTamp as e:
        raise MalformedRequest(str(e)) from None
    if message.kind not in tamp.ANSWERS:
        raise MalformedRequest(f"{message.kind} is not an answer a client returns (RFC 5934 / RFC 8295 7.2)")
    declared = tamp.kind_of_media_type(media_type) if media_type else None
    if declared is not None and declared != message.kind:
        raise MalformedRequest(f"Content-Type says {media_type} but the body is a {message.kind}")
    return message


def _request_kind(message: tamp.TampMessage) -> str:
    if message.kind == "tamp_error":
        if message.failed_type not in TAMP_TYPES:
            raise MalformedRequest(f"the error is about {message.failed_type}, not a TAMP request")
        return message.failed_type
    return next(k for k, answer in tamp.ANSWER_TO.items() if answer == message.kind)


def record_tamp_answer(store: Store, client: str, label: str, message: tamp.TampMessage,
                       presented: x509.Certificate | None) -> Offer:
    check_signer(store, client, message.signer, presented)
    request_kind = _request_kind(message)
    offers = store.packages.offered_packages(client, label, (TAMP_TYPES[request_kind],))
    offer: Offer | None
    if message.ref is None:
        offer = _latest_awaiting(offers)
    else:
        offer = next((o for o in offers if o.package.details.get("seq_num") == message.ref.seq_num
                      and o.package.details.get("tamp_kind") == request_kind), None)
        if offer is None:
            raise NotOffered(f"the answer names TAMP message {message.ref.seq_num}, which this client was never"
                             " offered")
        _downloaded(offer)
    failed = next((s for s in message.statuses if s != SUCCESS), None)
    if message.kind == "tamp_error" and failed is None:
        raise MalformedRequest("a TAMPError must report a failure status, not success")
    if message.kind != "tamp_error":
        _move_anchors(store, client, offer, message)
    if failed is None and message.kind != "tamp_error":
        store.packages.record_receipt(offer.package.id, client, return_der=message.der)
    else:
        assert failed is not None  # a confirm with a failure, or an error (checked above)
        store.packages.record_error(offer.package.id, client, failed, return_der=message.der)
    return offer


def _anchor_row(anchor: tamp.TrustAnchor) -> AnchorRow:
    return anchor.key_id, anchor.der, anchor.title


def _removed_key_ids(store: Store, client: str, spki: bytes) -> list[bytes]:
    """Key identifiers of the client's anchors with this public key."""
    out = []
    for known in store.tamp.client_anchors(client):
        if known.der is None:
            continue
        if tamp.TrustAnchor.from_choice(rfc5914.TrustAnchorChoice.load(known.der)).spki == spki:
            out.append(known.key_id)
    key = load_subject_public_key(spki)
    out.append(x509.SubjectKeyIdentifier.from_public_key(key).digest)
    return out


def _move_anchors(store: Store, client: str, offer: Offer, message: tamp.TampMessage) -> None:
    """What a confirmed message did to the client's trust anchor store."""
    source = f"{message.kind} for package {offer.package.id} (seq {message.ref.seq_num if message.ref else '-'})"
    kind = message.kind
    ok = all(s == SUCCESS for s in message.statuses)
    if kind == "tamp_status_response":
        rows: list[AnchorRow]
        if message.anchors is not None:
            rows = [_anchor_row(a) for a in message.anchors]
        else:
            rows = [(k, None, None) for k in message.key_ids or ()]
        store.tamp.move_client_anchors(client, source, replace=rows, communities=list(message.communities)
                                  if message.communities is not None else None)
        return
    assert offer.package.content is not None  # a TAMP package is its message
    request = tamp.read(offer.package.content)
    if kind == "tamp_update_confirm":
        if message.anchors is not None:
            store.tamp.move_client_anchors(client, source, replace=[_anchor_row(a) for a in message.anchors])
            return
        changes = tamp.changes_of(request.value)
        statuses = list(message.statuses)
        if len(statuses) == 1 and len(changes) > 1:
            statuses *= len(changes)
        add: list[AnchorRow] = []
        remove: list[bytes] = []
        for (action, spki, anchor), status in zip(changes, statuses):
            if status != SUCCESS:
                continue
            if action == "add":
                assert anchor is not None  # an addition names its anchor
                add.append(_anchor_row(anchor))
            elif action == "remove":
                remove += _removed_key_ids(store, client, spki)
        store.tamp.move_client_anchors(client, source, add=add, remove=remove)
    elif kind == "tamp_apex_update_confirm" and ok:
        apex = tamp.TrustAnchor.from_choice(request.value["apex_ta"])
        clear = bool(request.value["clear_trust_anchors"].native)
        replace = [_anchor_row(a) for a in message.anchors] if message.anchors is not None else None
        communities: list[str] | None = [] if request.value["clear_communities"].native else None
        store.tamp.move_client_anchors(client, source, replace=replace, clear=clear and replace is None,
                                  apex=_anchor_row(apex), communities=communities)
    elif kind == "tamp_community_update_confirm" and ok:
        if message.communities is not None:
            store.tamp.move_client_anchors(client, source, communities=list(message.communities))
        else:
            updates = request.value["updates"]
            store.tamp.move_client_anchors(client, source,
                                      add_communities=[o.dotted for o in updates["add"]] if updates["add"].native
                                      else [],
                                      remove_communities=[o.dotted for o in updates["remove"]]
                                      if updates["remove"].native else [])


__all__ = ["check_signer", "parse_firmware_report", "parse_key_package_return", "parse_tamp_answer",
           "record_firmware_report", "record_key_package_return", "record_tamp_answer"]
