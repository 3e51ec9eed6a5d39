"""Domain errors shared by every layer.

Each carries a short, client-safe reason. The web layer alone maps them to
HTTP statuses; nothing below it knows about HTTP.
"""
from __future__ import annotations


class EstError(Exception):
    """A refusal whose reason may be shown to the client."""

    # Who was refused, when known before authentication completed (for the audit log).
    client: str | None = None

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedRequest(EstError):
    """The request body or parameters cannot be understood."""


class PolicyRefused(EstError):
    """The request is well formed but the label's profile refuses it."""


class AuthenticationRequired(EstError):
    """No credentials, or credentials that do not identify a known client.

    ``challenges`` are the schemes to offer (filled in by the RA, which knows
    the label); ``stale`` marks an expired Digest nonce.
    """

    # The reason when the request carried no credentials at all: the first
    # step of every password client, not a failure worth logging.
    NO_CREDENTIALS = "authentication required"

    def __init__(self, reason: str, *, stale: bool = False) -> None:
        super().__init__(reason)
        self.stale = stale
        self.challenges: list[str] = []


class TokenCannot(PolicyRefused):
    """The token lacks what this request needs (a mechanism, a key type):
    refused (400) with the reason; asking again will not help."""


class NotAuthorized(EstError):
    """The client is known but may not do this under this label."""


class NotFound(EstError):
    """No such label or resource."""


class UnsupportedMediaType(EstError):
    """The request's Content-Type is not one this operation takes."""


class TooLarge(EstError):
    """The request body is over the configured limit."""


class Pending(EstError):
    """Accepted, not decided yet (manual approval): ask again after ``retry_after`` s."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Unavailable(EstError):
    """A back end (the token, the store) cannot serve right now; retry later."""


class TokenUnavailable(Unavailable):
    """The PKCS#11 token cannot be reached or refused an operation."""


class StoreUnavailable(Unavailable):
    """The store's database cannot be reached (PostgreSQL down, connection lost)."""
