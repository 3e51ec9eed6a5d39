"""HTTP over TLS: the only package that imports twisted.web."""
from __future__ import annotations

from typing import Callable, Iterable, cast

from twisted.web import server

from .channel import SingleWriteChannel
from .http import Operation, Response, Routes
from .request import EstRequest
from .resource import EstResource
from .tls import ServerContextFactory


def make_site(route_sets: Iterable[Routes], check_label: Callable[[str], object], *, realm: str,
              retry_after: int, max_body: int, plain: dict | None = None, request_log: bool = False) -> server.Site:
    """``plain``: top-level paths outside /.well-known/est/ (/healthz, /readyz: health.routes)."""
    routes: Routes = {}
    for rs in route_sets:
        for path, op in rs.items():
            have = routes.get(path)
            if have is None:
                routes[path] = op
                continue
            # Two route sets may serve one path with different methods (RFC 8295 9 adds GET to /simpleenroll).
            clash = set(have.handlers) & set(op.handlers)
            if clash:
                raise ValueError(f"operation {'/'.join(path)} defined twice for {sorted(clash)}")
            routes[path] = Operation({**have.handlers, **op.handlers},
                                     accepts=tuple(dict.fromkeys(have.accepts + op.accepts)))
    # EST bodies are never HTML forms: no form parsing (its Content-Type parse,
    # through the email package, cost 0.1 ms per POST).
    site = server.Site(EstResource(routes, check_label, realm, retry_after, plain, request_log),
                       parsePOSTFormSubmission=False)
    site.requestFactory = cast("type[EstRequest]", type("SiteRequest", (EstRequest,), {"max_body": max_body}))
    # Twisted's documented way to choose the channel; its stub types `protocol` as a method.
    site.protocol = SingleWriteChannel  # type: ignore[method-assign, assignment]
    site.displayTracebacks = False
    return site


__all__ = ["EstResource", "Operation", "Response", "Routes", "ServerContextFactory", "make_site"]
