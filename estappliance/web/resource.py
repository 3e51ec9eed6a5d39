"""``/.well-known/est/[label/]<operation>``: routing, bodies, status codes.

The resource only translates HTTP to calls on the RA and back. Every answer,
success or error, is written with its headers in one go, and every error is a
one-line text/plain reason with the status the design card assigns.
"""
from __future__ import annotations

import time
from typing import Callable, cast

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from .. import errors, metrics
from . import media, requestlog
from .http import Operation, Response, Routes

log = Logger()

STATUS = [
    (errors.Pending, 202),
    (errors.MalformedRequest, 400),
    (errors.PolicyRefused, 400),
    (errors.AuthenticationRequired, 401),
    (errors.NotAuthorized, 403),
    (errors.NotFound, 404),
    (errors.TooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.Unavailable, 503),
]


# A 401 (a challenge) and a 202 (come back later) are answered with an empty
# body: Bouncy Castle's EST client closes these responses unread, and its
# stream throws when more than one byte of the declared length is left
# (bc-java #781, #1185). Their reasons go to the log (and the RA's audit).
BODILESS = (401, 202)


class MethodNotAllowed(Exception):
    def __init__(self, allowed: list[bytes]) -> None:
        self.allowed = allowed


class EstResource(resource.Resource):
    """The whole site: one leaf resource, so every path gets a plain-text answer."""

    isLeaf = True

    def __init__(self, routes: Routes, check_label: Callable[[str], object], realm: str, retry_after: int,
                 plain: dict[str, Callable[[server.Request], Response | defer.Deferred[Response]]] | None = None,
                 request_log: bool = False) -> None:
        """``check_label`` raises NotFound for a label the appliance does not serve;
        ``plain``: handlers of top-level paths (``healthz``...), ``fn(request)``;
        ``request_log``: one log event per request (requestlog.py)."""
        super().__init__()
        self.plain = dict(plain or {})
        self.request_log = request_log
        self.operations = dict(routes)
        self.check_label = check_label
        self.realm = realm
        self.retry_after = retry_after
        self._first_segments = {path[0] for path in self.operations}

    # -- routing ---------------------------------------------------------------

    def _route(self, segments: list[str]) -> tuple[str | None, Operation, str]:
        while segments and segments[-1] == "":
            segments = segments[:-1]  # tolerate a trailing slash
        if not segments:
            raise errors.NotFound("no operation given")
        label = None
        if segments[0] not in self._first_segments:
            label, segments = segments[0], segments[1:]
            self.check_label(label)  # 404 for an unknown label
        op = self.operations.get(tuple(segments))
        if op is None:
            raise errors.NotFound("no such EST operation")
        return label, op, "/".join(segments)

    def render(self, request: server.Request) -> int:
        # est_started, est_label, est_operation: noted on the request for the log and the metrics.
        request.est_started = time.monotonic()  # type: ignore[attr-defined]
        if self.request_log:
            requestlog.started(request)
        # maybeDeferred waits for a Deferred the handler returns: it fires with a Response.
        d = cast("defer.Deferred[Response]", defer.maybeDeferred(self._dispatch, request))
        d.addErrback(self._error, request)
        d.addCallback(self._send, request)
        d.addErrback(lambda f: log.failure("sending the response failed", f))
        return server.NOT_DONE_YET

    def _dispatch(self, request: server.Request) -> Response | defer.Deferred[Response]:
        try:
            segments = [s.decode("utf-8") for s in request.postpath or []]
        except UnicodeDecodeError:
            raise errors.NotFound("no such EST operation") from None
        plain = self.plain.get(segments[0]) if len(segments) == 1 else None
        if plain is not None:
            request.est_label, request.est_operation = "-", segments[0]  # type: ignore[attr-defined]
            if request.method not in (b"GET", b"HEAD"):
                raise MethodNotAllowed([b"GET", b"HEAD"])
            return plain(request)
        if segments[:2] != [".well-known", "est"]:
            raise errors.NotFound("not an EST path (try /.well-known/est/cacerts)")
        label, op, request.est_operation = self._route(segments[2:])  # type: ignore[attr-defined]
        request.est_label = label  # type: ignore[attr-defined]
        # HEAD only where a route declares it: most GETs here record what they
        # hand out (a package marked downloaded, a CRL fetched), which a HEAD
        # never delivers.
        method = request.method
        handler = op.handlers.get(method)
        if handler is None:
            raise MethodNotAllowed(sorted(op.handlers))
        if op.accepts and method != b"GET":  # a GET has no body to judge
            self._check_body(request, op)
        return handler(request, label)

    def _check_body(self, request: server.Request, op: Operation) -> None:
        if getattr(request, "body_too_large", False):
            raise errors.TooLarge("request body too large")
        ctype = media.essence(request.getHeader(b"content-type"))
        # A missing Content-Type is tolerated; a wrong one is not.
        if ctype is not None and ctype not in op.accepts:
            raise errors.UnsupportedMediaType(f"Content-Type must be {' or '.join(op.accepts)}")

    # -- answers ----------------------------------------------------------------

    def _error(self, failure: Failure, request: server.Request) -> Response:
        exc = failure.value
        if isinstance(exc, MethodNotAllowed):
            return Response(b"method not allowed\n", media.TEXT, 405, [(b"allow", b", ".join(exc.allowed))])
        if isinstance(exc, errors.EstError):
            status = next(code for cls, code in STATUS if isinstance(exc, cls))
            headers = []
            if isinstance(exc, errors.AuthenticationRequired):  # 401
                challenges = exc.challenges or [f'Basic realm="{self.realm}"']
                headers += [(b"www-authenticate", c.encode()) for c in challenges]
            if isinstance(exc, errors.Pending):  # 202
                headers.append((b"retry-after", str(exc.retry_after).encode()))
            if status == 503:
                headers.append((b"retry-after", str(self.retry_after).encode()))
            if status in BODILESS:
                if exc.reason != errors.AuthenticationRequired.NO_CREDENTIALS:
                    log.info("{status} {uri}: {reason}", status=status, uri=request.uri.decode("ascii", "replace"),
                             reason=exc.reason)
                return Response(b"", None, status, headers)
            return Response(_one_line(exc.reason), media.TEXT, status, headers)
        log.failure("unexpected error answering {uri}", failure, uri=request.uri)
        return Response(b"internal error\n", media.TEXT, 500)

    def _send(self, response: Response, request: server.Request) -> None:
        # Read before the answer: a finished request no longer knows its connection.
        client = requestlog.claimed_client(request) if self.request_log else None
        self.write_response(response, request)
        operation = getattr(request, "est_operation", None) or "unknown"
        metrics.observe_request(operation, getattr(request, "est_label", None) or "default", response.status,
                                time.monotonic() - request.est_started)  # type: ignore[attr-defined]
        if self.request_log:
            requestlog.finished(request, response.status, client)

    @staticmethod
    def write_response(response: Response, request: server.Request) -> None:
        if request._disconnected:
            return
        request.setResponseCode(response.status)
        if response.content_type is not None:
            request.setHeader(b"content-type", response.content_type)
        else:
            request.defaultContentType = None  # an empty body has no type (Twisted would say text/html)
        for name, value in response.headers:
            request.responseHeaders.addRawHeader(name, value)
        if response.status != 204:  # RFC 9110 8.6: no Content-Length on 204
            request.setHeader(b"content-length", str(len(response.body)).encode())
        if request.method != b"HEAD" and response.body:
            request.write(response.body)
        request.finish()


def _one_line(reason: str) -> bytes:
    return (" ".join(reason.split())[:200] + "\n").encode("utf-8")
