"""/fullcmc (RFC 7030 4.3): Full PKI Request in, Full PKI Response out.

Every answer the RA gives, success or CMC failure, is the signed Full PKI
Response, base64 with its Content-Transfer-Encoding (RFC 8951), with the
HTTP status that goes with it (RFC 7030 4.3.2: errors are 4xx and still carry
the CMC response; 202 with Retry-After while every request waits for an
operator). Errors outside CMC (unknown label, wrong media type, token down)
are the plain-text answers of every other operation.
"""
from __future__ import annotations

from typing import Any, Generator

from twisted.internet import defer
from twisted.web import server

from ..ra.cmc import FullCmc, Verdict
from .http import Operation, Response, Routes, base64_response, credentials, lazy_der_body

# RFC 7030 4.3.1; the smime-type parameter is not required on input (any
# pkcs7-mime body is read as CMS, and judged by its content).
CMC_REQUEST = "application/pkcs7-mime"
CMC_RESPONSE = b"application/pkcs7-mime; smime-type=CMC-response"
# RFC 7030 4.3.2: the Full PKI Response goes with every one of these.
HTTP_STATUS = {Verdict.SUCCESS: 200, Verdict.PENDING: 202, Verdict.BAD_REQUEST: 400, Verdict.UNAUTHENTICATED: 401,
               Verdict.FORBIDDEN: 403}


def routes(fullcmc: FullCmc) -> Routes:
    @defer.inlineCallbacks
    def post_fullcmc(request: server.Request, label: str | None) -> Generator[defer.Deferred[Any], Any, Response]:
        answer = yield fullcmc.handle(label, credentials(request, label), lazy_der_body(request))
        response: Response = base64_response(answer.der, CMC_RESPONSE, HTTP_STATUS[answer.verdict])
        if answer.verdict is Verdict.UNAUTHENTICATED:
            response.headers += [(b"www-authenticate", c.encode()) for c in answer.challenges]
        if answer.retry_after is not None:
            response.headers.append((b"retry-after", str(answer.retry_after).encode()))
        return response

    return {("fullcmc",): Operation({b"POST": post_fullcmc}, accepts=(CMC_REQUEST,))}
