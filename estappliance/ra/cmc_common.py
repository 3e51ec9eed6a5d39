"""What the /fullcmc policy modules share: who asks, how a refusal is said,
how a body part is referred to."""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from cryptography import x509

from ..pki import cmc
from .auth import Identity

# Whole-message refusals: the HTTP status that goes with them.
HTTP_BAD_REQUEST, HTTP_UNAUTHENTICATED, HTTP_FORBIDDEN = 400, 401, 403


class Refusal(Exception):
    """A CMC failure: a CMCFailInfo name and a client-safe reason."""

    def __init__(self, fail_info: str, reason: str, *, http: int = HTTP_BAD_REQUEST, status: str = "failed"):
        super().__init__(reason)
        self.fail_info = fail_info
        self.reason = reason
        self.http = http
        self.status = status
        self.challenges: list[str] = []

    def status_for(self, refs) -> cmc.Status:
        return cmc.Status(self.status, tuple(refs), self.reason, self.fail_info)


@dataclass(frozen=True)
class Requester:
    """Who a PKIData speaks for.

    ``signer``: a certificate of this CA (not an RA's) whose key signed the
    PKIData: it may be renewed or re-keyed, and may revoke itself.
    ``vouched``: the PKIData came inside an RA's own (RFC 5272 nested
    message); the RA's policy applies.
    """

    identity: Identity
    is_ra: bool = False
    signer: x509.Certificate | None = None
    vouched: bool = False


@dataclass
class Outcome:
    """What a Full PKI Response will carry."""

    statuses: list[cmc.Status] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)
    crls: list[bytes] = field(default_factory=list)
    revocations: int = 0


def ref(prefix: tuple[int, ...], body_part_id: int):
    """A bodyPartID, or a bodyPartPath inside a nested PKIData."""
    return (*prefix, body_part_id) if prefix else body_part_id


def pend_token(pending_id: int) -> bytes:
    """The pendToken for a request waiting for approval: its id (8 octets)."""
    return pending_id.to_bytes(8, "big")


def pending_id(token: bytes) -> int | None:
    return int.from_bytes(token, "big") if isinstance(token, bytes) and len(token) == 8 else None


def pending_status(refs, pending_id_: int, retry_after: int) -> cmc.Status:
    when = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + \
        datetime.timedelta(seconds=retry_after)
    return cmc.Status("pending", tuple(refs), f"request {pending_id_} is waiting for an operator's approval",
                      pend_token=pend_token(pending_id_), pend_time=when)
