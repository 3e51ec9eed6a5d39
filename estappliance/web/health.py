"""``GET /healthz`` and ``GET /readyz``: tiny JSON answers for load balancers
and supervisors, unauthenticated, outside ``/.well-known/est/``; and the
admin site (plain HTTP, bound to localhost) that serves them with /metrics."""
from __future__ import annotations

import json
from typing import Any, Callable, Protocol, TypeVar, Union, cast

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from .. import errors
from . import media
from .http import Response

log = Logger()
JSON = b"application/json"
# A plain route: fn(request) -> Response (or a Deferred of one).
PlainHandler = Callable[[server.Request], Union[Response, "defer.Deferred[Response]"]]
PlainRoutes = dict[str, PlainHandler]


class Readiness(Protocol):
    """What a readiness check fires with (ops.health.Readiness)."""

    @property
    def ready(self) -> bool: ...

    def as_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Readiness)


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    headers = [(b"cache-control", b"no-store")]
    return Response(json.dumps(body, separators=(",", ":")).encode() + b"\n", JSON, status, headers)


def routes(readiness: Callable[[], "defer.Deferred[R]"]) -> PlainRoutes:
    """``readiness()`` fires with an object that has ``ready`` and ``as_json()``."""
    def healthz(request: server.Request) -> Response:
        return json_response({"status": "ok"})

    def readyz(request: server.Request) -> defer.Deferred[Response]:
        def answer(r: R) -> Response:
            return json_response(r.as_json(), 200 if r.ready else 503)
        return readiness().addCallback(answer)
    return {"healthz": healthz, "readyz": readyz}


class AdminResource(resource.Resource):
    """The admin listener's whole site: its plain routes, GET only."""

    isLeaf = True

    def __init__(self, plain: PlainRoutes) -> None:
        super().__init__()
        self.plain = plain

    def render(self, request: server.Request) -> int:
        from .resource import EstResource  # its answer writer, shared
        # maybeDeferred waits for a Deferred the handler returns: it fires with a Response.
        d = cast("defer.Deferred[Response]", defer.maybeDeferred(self._dispatch, request))
        d.addErrback(self._error)
        d.addCallback(EstResource.write_response, request)
        return server.NOT_DONE_YET

    def _dispatch(self, request: server.Request) -> Response | defer.Deferred[Response]:
        name = b"/".join(request.postpath or []).decode("ascii", "replace").strip("/")
        handler = self.plain.get(name)
        if handler is None:
            raise errors.NotFound("no such path")
        if request.method not in (b"GET", b"HEAD"):
            return Response(b"method not allowed\n", media.TEXT, 405, [(b"allow", b"GET, HEAD")])
        return handler(request)

    @staticmethod
    def _error(failure: Failure) -> Response:
        if failure.check(errors.NotFound):
            return Response(b"not found\n", media.TEXT, 404)
        log.failure("admin request failed", failure)
        return Response(b"internal error\n", media.TEXT, 500)


def admin_site(plain: PlainRoutes) -> server.Site:
    site = server.Site(AdminResource(plain))
    site.displayTracebacks = False
    return site
