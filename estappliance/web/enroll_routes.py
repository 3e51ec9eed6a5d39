"""RFC 7030 operations: /cacerts, /simpleenroll, /simplereenroll, /csrattrs."""
from __future__ import annotations

from typing import Any, Generator

from twisted.internet import defer
from twisted.web import server

from ..pki.cms import certs_only
from ..ra import Registrar
from . import media
from .http import Operation, Response, Routes, base64_response, credentials, lazy_der_body


def routes(registrar: Registrar) -> Routes:
    def get_cacerts(request: server.Request, label: str | None) -> Response:
        return base64_response(certs_only(registrar.cacerts(label)), media.PKCS7_MIME)

    @defer.inlineCallbacks
    def post_simpleenroll(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
        cert = yield registrar.simpleenroll(label, credentials(request, label), lazy_der_body(request))
        return base64_response(certs_only([cert]), media.CERTS_ONLY)

    @defer.inlineCallbacks
    def post_simplereenroll(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
        cert = yield registrar.simplereenroll(label, credentials(request, label), lazy_der_body(request))
        return base64_response(certs_only([cert]), media.CERTS_ONLY)

    def get_csrattrs(request: server.Request, label: str | None) -> Response:
        der = registrar.csrattrs(label)
        if der is None:
            return Response(status=204)
        return base64_response(der, media.CSRATTRS)

    return {
        # HEAD only where a GET records nothing (the resource maps no HEAD to GET).
        ("cacerts",): Operation({b"GET": get_cacerts, b"HEAD": get_cacerts}),
        ("simpleenroll",): Operation({b"POST": post_simpleenroll}, accepts=(media.PKCS10,)),
        ("simplereenroll",): Operation({b"POST": post_simplereenroll}, accepts=(media.PKCS10,)),
        ("csrattrs",): Operation({b"GET": get_csrattrs, b"HEAD": get_csrattrs}),
    }
