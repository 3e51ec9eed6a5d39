"""Publishing TAMP messages (RFC 8295 7.1, RFC 5934), signed by the
appliance's TAMP manager key (a token key with a certificate from the CA, see
``ca.roles``).

Every message gets a fresh sequence number, recorded before it is signed:
larger than any this manager used, and never below the current time in
seconds, so a re-installed appliance still counts upwards. Blocking, for
``estctl publish tamp``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from asn1crypto import core
from cryptography import x509

from ..ca import roles
from ..config import Config
from ..pki import tamp
from ..store import Store
from ..store.package_tables import Package
from ..token import Token
from .firmware_publishing import Target
from .returns import TAMP_TYPES
from .symmetric_publishing import PublishError


@dataclass(frozen=True)
class TampRequest:
    kind: str  # one of tamp.REQUESTS
    target: tamp.Target = field(default_factory=tamp.Target)
    add: tuple[x509.Certificate, ...] = ()  # tamp_update
    remove: tuple[x509.Certificate, ...] = ()  # tamp_update
    apex: x509.Certificate | None = None  # tamp_apex_update
    clear_trust_anchors: bool = False
    clear_communities: bool = False
    add_communities: tuple[str, ...] = ()  # tamp_community_update
    remove_communities: tuple[str, ...] = ()
    terse: bool = False


def build(request: TampRequest, seq_num: int) -> core.Asn1Value:
    ref = tamp.MsgRef(request.target, seq_num)
    if request.kind == "tamp_status_query":
        return tamp.status_query(ref, terse=request.terse)
    if request.kind == "tamp_update":
        changes = [tamp.Change("add", tamp.TrustAnchor.from_cert(c)) for c in request.add]
        changes += [tamp.Change("remove", tamp.TrustAnchor.from_cert(c)) for c in request.remove]
        if not changes:
            raise PublishError("a trust anchor update needs --add or --remove")
        return tamp.update(ref, changes, terse=request.terse)
    if request.kind == "tamp_apex_update":
        if request.apex is None:
            raise PublishError("an apex update needs the new apex trust anchor (--apex CERT)")
        return tamp.apex_update(ref, tamp.TrustAnchor.from_cert(request.apex),
                                clear_trust_anchors=request.clear_trust_anchors,
                                clear_communities=request.clear_communities, terse=request.terse)
    if request.kind == "tamp_community_update":
        if not request.add_communities and not request.remove_communities:
            raise PublishError("a community update needs --add-community or --remove-community")
        return tamp.community_update(ref, add=list(request.add_communities), remove=list(request.remove_communities),
                                     terse=request.terse)
    if request.kind == "tamp_sequence_adjust":
        return tamp.sequence_adjust(ref)
    raise PublishError(f"unknown TAMP message {request.kind!r}")


def publish(config: Config, token: Token, store: Store, request: TampRequest, target: Target) -> Package:
    target.check(config, store)
    build(request, 0)  # refuse a malformed request before a sequence number is spent
    roles.ensure(config, token, store, "tamp")
    signer = roles.signer(config, token, "tamp")
    key_id = tamp.key_id_of_cert(signer.certificate)
    seq_num = store.tamp.next_tamp_seq_num(key_id, floor=int(time.time()))
    der = signer.sign_blocking(request.kind, build(request, seq_num))
    return store.packages.queue_package(
        label=target.label, pal_type=TAMP_TYPES[request.kind], target_kind=target.kind, target=target.name,
        content=der, media_type=tamp.media_type(request.kind),
        name=f"{request.kind.replace('_', ' ')} #{seq_num} to {request.target.describe()}", receipt_requested=True,
        details={"tamp_kind": request.kind, "seq_num": seq_num, "target": request.target.describe()})


__all__ = ["TampRequest", "build", "publish"]
