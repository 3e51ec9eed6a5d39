"""What the /fullcmc policy modules share: who asks, how a refusal is said,
how a body part is referred to."""
from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509

from ...pki import cmc
from ..auth import Identity

class Verdict(enum.Enum):
    """How a whole Full PKI Request fared; the web layer answers each with
    its HTTP status (RFC 7030 4.3.2)."""

    SUCCESS = "success"  # something in it succeeded
    PENDING = "pending"  # everything in it waits for an operator
    BAD_REQUEST = "bad_request"  # malformed or refused
    UNAUTHENTICATED = "unauthenticated"  # who asks is not proven
    FORBIDDEN = "forbidden"  # proven, but may not


class Refusal(Exception):
    """A CMC failure: a CMCFailInfo name, a client-safe reason, and the
    verdict on the whole request if it fails all of it."""

    def __init__(self, fail_info: str, reason: str, *, verdict: Verdict = Verdict.BAD_REQUEST,
                 status: str = "failed") -> None:
        super().__init__(reason)
        self.fail_info = fail_info
        self.reason = reason
        self.verdict = verdict
        self.status = status
        self.challenges: list[str] = []

    def status_for(self, refs: Iterable[cmc.BodyPartRef]) -> cmc.Status:
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


def ref(prefix: tuple[int, ...], body_part_id: int) -> cmc.BodyPartRef:
    """A bodyPartID, or a bodyPartPath inside a nested PKIData."""
    return (*prefix, body_part_id) if prefix else body_part_id


def pend_token(pending_id: int) -> bytes:
    """The pendToken for a request waiting for approval: its id (8 octets)."""
    return pending_id.to_bytes(8, "big")


def pending_id(token: object) -> int | None:
    return int.from_bytes(token, "big") if isinstance(token, bytes) and len(token) == 8 else None


def pending_status(refs: Iterable[cmc.BodyPartRef], pending_id_: int, retry_after: int) -> cmc.Status:
    when = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + \
        datetime.timedelta(seconds=retry_after)
    return cmc.Status("pending", tuple(refs), f"request {pending_id_} is waiting for an operator's approval",
                      pend_token=pend_token(pending_id_), pend_time=when)
