"""One log event per HTTP request, for the operator's log (text or JSON).

The event carries the request id, the peer address, the client as it
presented itself (HTTP user name, or the TLS client certificate's subject:
claimed, not yet judged by the RA, whose verdict is in the audit), the label,
the operation, the status and the duration. In JSON (``[log] format``) each
is a field of its own.
"""
from __future__ import annotations

import time
import uuid

from twisted.logger import Logger
from twisted.web import server

from .peer import peer_chain

log = Logger(namespace="estappliance.request")


def started(request: server.Request) -> None:
    # est_request_id, est_started, est_label, est_operation: noted on the request as it goes.
    request.est_request_id = uuid.uuid4().hex[:16]  # type: ignore[attr-defined]


def claimed_client(request: server.Request) -> str | None:
    auth = request.getHeader(b"authorization") or b""
    scheme = auth.split(b" ", 1)[0].lower()
    if scheme == b"basic":
        return request.getUser().decode("utf-8", "replace") or None
    if scheme == b"digest":
        for part in auth[7:].decode("utf-8", "replace").split(","):
            name, _, value = part.strip().partition("=")
            if name.lower() == "username":
                return value.strip('"') or None
        return None
    chain = peer_chain(request)
    return chain[0].subject.rfc4514_string() if chain else None


def finished(request: server.Request, status: int, client: str | None) -> None:
    started_at = request.est_started  # type: ignore[attr-defined]  # set by the resource
    peer = request.getClientAddress()
    request_id = request.est_request_id  # type: ignore[attr-defined]
    log.info("{request_id} {peer} {method} {path} {status} {duration_ms:.1f} ms client={client} label={label}",
             request_id=request_id, peer=f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}",
             method=request.method.decode("ascii", "replace"), path=request.path.decode("utf-8", "replace"),
             status=status, duration_ms=(time.monotonic() - started_at) * 1000, client=client,
             label=getattr(request, "est_label", None) or "default", operation=getattr(request, "est_operation", None))
