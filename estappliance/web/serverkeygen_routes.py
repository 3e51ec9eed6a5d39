"""/serverkeygen (RFC 7030 4.4, RFC 8295 8.1 and 8.3) and
/serverkeygen/return (RFC 8295 8.2).

The key and its certificate answer as multipart/mixed (key part first, then
the certs-only certificate part, each base64 with its
Content-Transfer-Encoding), except PKCS#12, which holds both and answers alone.
"""
from __future__ import annotations

from typing import Any, Generator

from twisted.internet import defer
from twisted.web import server

from ..pki import multipart
from ..pki.cms import certs_only
from ..ra.keygen_requests import KeygenRegistrar
from . import media
from .http import Operation, Response, Routes, base64_response, credentials, lazy_der_body

PKCS12 = b"application/pkcs12"
CMS = "application/cms"


def routes(keygen: KeygenRegistrar) -> Routes:
    @defer.inlineCallbacks
    def post_serverkeygen(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
        accept = request.getHeader(b"accept")
        delivered = yield keygen.serverkeygen(label, credentials(request, label), lazy_der_body(request),
                                              accept=accept.decode("latin-1") if accept else None)
        if delivered.form == "pkcs12":
            return base64_response(delivered.key_der, PKCS12)
        content_type, body = multipart.build([
            multipart.Part(delivered.media_type, delivered.key_der),
            multipart.Part(media.CERTS_ONLY.decode("ascii"), certs_only([delivered.certificate])),
        ])
        return Response(body, content_type)

    @defer.inlineCallbacks
    def post_return(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
        yield keygen.key_return(label, credentials(request, label), lazy_der_body(request))
        return Response(status=204)

    return {
        ("serverkeygen",): Operation({b"POST": post_serverkeygen}, accepts=(media.PKCS10,)),
        ("serverkeygen", "return"): Operation({b"POST": post_return}, accepts=(CMS,)),
    }
