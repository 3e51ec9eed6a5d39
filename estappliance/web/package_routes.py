"""RFC 8295 5-7 over HTTP: GET /symmetrickeys, /firmware, /tamp and POST
their /return.

Bodies are base64 of DER like every EST payload (RFC 8951); a package goes
out with the Content-Type it was queued with (``application/cms`` with its
RFC 7193 parameters, or an ``application/tamp-*`` type). A return is taken
as base64 or raw DER; success is 204 No Content (RFC 8295 5.2, 6.2, 7.2).
"""
from __future__ import annotations

from typing import Any, Generator

from twisted.internet import defer
from twisted.web import server

from ..pki.asn1.rfc5934 import MESSAGES
from ..ra.delivery import OPERATIONS, PackageDelivery
from . import media
from .http import Handler, Operation, Response, Routes, base64_response, credentials, lazy_der_body

CMS = "application/cms"
# What a client may POST to /tamp/return (RFC 8295 7.2), and application/cms.
TAMP_ANSWERS = tuple(mt for name, (_oid, mt) in MESSAGES.items()
                     if name.endswith(("_response", "_confirm", "_error")))


def routes(delivery: PackageDelivery) -> Routes:
    def getter(operation: str) -> Handler:
        @defer.inlineCallbacks
        def get(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
            served = yield delivery.fetch(operation, label, credentials(request, label))
            return base64_response(served.body, served.media_type.encode("latin-1"))
        return get

    def poster(operation: str) -> Handler:
        @defer.inlineCallbacks
        def post(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
            content_type = media.essence(request.getHeader(b"content-type"))
            yield delivery.take_return(operation, label, credentials(request, label), lazy_der_body(request),
                                       content_type)
            return Response(status=204)
        return post

    out: Routes = {}
    for operation in OPERATIONS:
        accepts = (CMS, *TAMP_ANSWERS) if operation == "tamp" else (CMS,)
        out[(operation,)] = Operation({b"GET": getter(operation)})
        out[(operation, "return")] = Operation({b"POST": poster(operation)}, accepts=accepts)
    return out


__all__ = ["routes"]
