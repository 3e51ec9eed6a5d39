"""HTTP over TLS: the only package that imports twisted.web."""
from __future__ import annotations

from twisted.web import server

from ..ra import Registrar
from .request import EstRequest
from .resource import EstResource
from .tls import ServerContextFactory


def make_site(registrar: Registrar, *, realm: str, retry_after: int, max_body: int) -> server.Site:
    site = server.Site(EstResource(registrar, realm, retry_after))
    site.requestFactory = type("SiteRequest", (EstRequest,), {"max_body": max_body})
    site.displayTracebacks = False
    return site


__all__ = ["EstResource", "ServerContextFactory", "make_site"]
