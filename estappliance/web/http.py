"""The pieces every EST operation uses: answers, credentials, request bodies."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

from twisted.internet import defer
from twisted.web import server

from .. import errors
from ..pki.encoding import NotBase64OrDer, decode_body, encode_body
from ..ra import Credentials
from ..http_digest import parse_authorization
from .peer import channel_binding, peer_chain


@dataclass
class Response:
    body: bytes = b""
    content_type: bytes | None = None
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


Handler = Callable[[server.Request, Union[str, None]], Union[Response, "defer.Deferred[Response]"]]


@dataclass(frozen=True)
class Operation:
    """One EST operation: its handlers by HTTP method, and the media types its
    request bodies may have. A handler is ``fn(request, label) -> Response``
    (or a Deferred of one)."""

    handlers: dict[bytes, Handler]
    accepts: tuple[str, ...] = ()


Routes = dict[tuple[str, ...], Operation]
EST_PREFIX = "/.well-known/est/"


def base64_response(der: bytes, content_type: bytes, status: int = 200) -> Response:
    """RFC 8951: every EST payload is base64 of DER; CTE kept for older clients."""
    return Response(encode_body(der), content_type, status, headers=[(b"content-transfer-encoding", b"base64")])


def credentials(request: server.Request, label: str | None = None) -> Credentials:
    """Everything the RA may judge the client by, unchecked."""
    username = password = digest = None
    auth = request.getHeader(b"authorization")
    scheme = auth.split(b" ", 1)[0].lower() if auth else b""
    if scheme == b"basic":
        username = request.getUser().decode("utf-8", "replace")
        password = request.getPassword().decode("utf-8", "replace")
    elif scheme == b"digest" and auth is not None:
        digest = parse_authorization(auth.decode("utf-8", "replace")) or {}
    uri = request.uri.decode("utf-8", "replace")
    # libest signs its Digest answer for /.well-known/est/<operation> even
    # when it asked under a label: that form is accepted for the same request.
    labelled = f"{EST_PREFIX}{label}/"
    unlabelled = (EST_PREFIX + uri[len(labelled):],) if label and uri.startswith(labelled) else ()
    return Credentials(username=username, password=password, peer_chain=peer_chain(request), digest=digest,
                       method=request.method.decode("ascii", "replace"), uri=uri, digest_uri_aliases=unlabelled,
                       channel_binding=lambda: channel_binding(request))


def der_body(request: server.Request) -> bytes:
    """The request body as DER (base64 with any whitespace, or raw DER)."""
    try:
        return decode_body(request.content.read() if request.content is not None else b"")
    except NotBase64OrDer as e:
        raise errors.MalformedRequest(f"body is not base64 DER: {e}") from None


def lazy_der_body(request: server.Request) -> Callable[[], bytes]:
    """For the RA to read only after authentication (clients probe with empty bodies)."""
    return lambda: der_body(request)
