"""RFC 8295 distribution over HTTP: /pal, /eecerts, /crls, and GET on
/simpleenroll and /simplereenroll for results announced in the PAL (9).

/pal answers XML (application/xml), or JSON when the client prefers
application/json; XML and JSON are not DER, so they travel as they are. The
others are base64 of DER like every EST body (RFC 8951).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Generator

from twisted.internet import defer
from twisted.web import server

from .. import errors
from ..pki import pal_format
from ..pki.cms import certs_only
from ..ra.package_access import Distribution
from ..ra.results import EnrollmentResults
from . import media
from .http import Handler, Operation, Response, Routes, base64_response, credentials

XML = pal_format.XML_MEDIA_TYPE.encode()
JSON = pal_format.JSON_MEDIA_TYPE.encode()
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def wants_json(accept_values: Sequence[bytes]) -> bool:
    """True when the client ranks application/json above application/xml
    (q-values honoured; XML, the RFC's first form, wins ties and */*)."""
    ranks: dict[str, float] = {}
    for value in b",".join(accept_values).decode("latin-1").split(","):
        kind, *params = [p.strip() for p in value.split(";")]
        q = 1.0
        for p in params:
            name, _, number = p.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        kind = kind.lower()
        ranks[kind] = max(ranks.get(kind, 0.0), q)
    json_q = ranks.get("application/json", 0.0)
    xml_q = max(ranks.get("application/xml", 0.0), ranks.get("text/xml", 0.0))
    return json_q > 0 and json_q > xml_q


def base_uri(request: server.Request, label: str | None) -> str:
    """https://host[:port]/.well-known/est[/label] as the client addressed us."""
    host = (request.getHeader(b"host") or b"").decode("latin-1").strip()
    if not _HOST.match(host):
        address = request.getHost()
        host = f"{address.host}:{address.port}"
    return f"https://{host}/.well-known/est" + (f"/{label}" if label else "")


def _page(request: server.Request) -> int:
    values = request.args.get(b"page")
    if not values:
        return 1
    try:
        page = int(values[0])
    except ValueError:
        page = 0
    if not 1 <= page <= 100000:
        raise errors.MalformedRequest("page must be a whole number from 1")
    return page


def routes(distribution: Distribution, results: EnrollmentResults) -> Routes:
    @defer.inlineCallbacks
    def get_pal(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
        page = _page(request)
        entries = yield distribution.pal(label, credentials(request, label), base_uri(request, label), page)
        if wants_json(request.requestHeaders.getRawHeaders(b"accept", [])):
            return Response(pal_format.to_json(entries), JSON)
        return Response(pal_format.to_xml(entries), XML)

    @defer.inlineCallbacks
    def get_eecerts(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
        certs = yield distribution.eecerts(label, credentials(request, label))
        return base64_response(certs_only(certs), media.PKCS7_MIME)

    @defer.inlineCallbacks
    def get_crls(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
        der = yield distribution.crls(label, credentials(request, label))
        return base64_response(der, media.PKCS7_MIME)

    def result_of(operation: str) -> Handler:
        @defer.inlineCallbacks
        def get_result(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
            cert = yield results.fetch(operation, label, credentials(request, label))
            return base64_response(certs_only([cert]), media.CERTS_ONLY)
        return get_result

    return {
        ("pal",): Operation({b"GET": get_pal}),
        ("eecerts",): Operation({b"GET": get_eecerts}),
        ("crls",): Operation({b"GET": get_crls}),
        ("simpleenroll",): Operation({b"GET": result_of("simpleenroll")}),
        ("simplereenroll",): Operation({b"GET": result_of("simplereenroll")}),
    }


def track_cacerts(routes: Routes, distribution: Distribution) -> Routes:
    """The same routes, with /cacerts downloads of identifiable clients
    recorded (so that their PAL can date the 0002 entry)."""
    op = routes.get(("cacerts",))
    if op is None or b"GET" not in op.handlers:
        return routes
    serve = op.handlers[b"GET"]

    @defer.inlineCallbacks
    def get_cacerts(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
        response = yield defer.maybeDeferred(serve, request, label)
        if response.status == 200:
            yield distribution.cacerts_served(label, credentials(request, label))
        return response

    return {**routes, ("cacerts",): Operation({**op.handlers, b"GET": get_cacerts}, accepts=op.accepts)}
