"""RFC 8295 from the client's side: the PAL (every page), /crls and
/eecerts checked against the client's trust anchors, and enrollment results
picked up with GET (RFC 8295 9). ``est pal``, ``est crls`` and ``est eecerts``.

The functions take an ``EstClient`` and are what a device loop (``est sync``)
builds on: ``get_pal`` returns ``packages.pal.PalEntry`` objects.
"""
from __future__ import annotations

import argparse

import datetime
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import ClientVerifier, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from ..pki import pal_format
from ..pki.certs import issuer_public_key
from ..pki.pal_types import NEXT_PAL, PAL_TYPES
from ..pki.cms import NotCertsOnly, read_certs_only
from ..pki.crlsonly import NotCrlsOnly, read_crls_only
from ..pki.encoding import NotBase64OrDer, decode_body
from . import pemfiles
from .est import EstClient, EstClientError, _first_line
from .cli_support import client_from_args, pem_certs, write_output

MAX_PAGES = 64


def get_pal(client: EstClient, *, json: bool = False, follow: bool = True) -> list[pal_format.PalEntry]:
    """The client's PAL, following 0001 pointers (same server only) unless
    ``follow`` is False; the pointers themselves are not returned then."""
    accept = pal_format.JSON_MEDIA_TYPE if json else pal_format.XML_MEDIA_TYPE
    entries: list[pal_format.PalEntry] = []
    path = None
    for _ in range(MAX_PAGES):
        resp = client.request("GET", "pal", accept=accept, authenticate=True, path=path)
        if resp.status != 200:
            raise EstClientError(f"pal: HTTP {resp.status} {_first_line(resp)}", resp.status)
        try:
            page = pal_format.parse(resp.body, resp.header("content-type"))
        except pal_format.BadPal as e:
            raise EstClientError(f"pal: unreadable PAL: {e}") from None
        # RFC 8295 2.1.1: a 0001 entry is the last one; anything after it is ignored.
        pointer = next((i for i, e in enumerate(page) if e.type == NEXT_PAL), None)
        if pointer is None:
            return entries + page
        entries += page[:pointer]
        if not follow:
            return entries + [page[pointer]]
        path = _same_server_path(client, page[pointer].uri)
    raise EstClientError(f"pal: more than {MAX_PAGES} pages")


def _same_server_path(client: EstClient, uri: str | None) -> str:
    parts = urlsplit(uri or "")
    if parts.scheme != "https" or parts.hostname != client.host or (parts.port or 443) != client.port:
        raise EstClientError(f"pal: the next PAL is on another server ({uri!r}); not followed")
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _verifier(anchors: list[x509.Certificate]) -> ClientVerifier:
    return (PolicyBuilder().store(Store(anchors)).time(datetime.datetime.now(datetime.timezone.utc))
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
            .build_client_verifier())


def get_crls(client: EstClient, anchors: list[x509.Certificate]) -> list[x509.CertificateRevocationList]:
    """The CRLs and ARLs of /crls, each signed by one of ``anchors`` (RFC 8295
    4: a CRL that does not validate to an authorized anchor is rejected)."""
    resp = client.request("GET", "crls", authenticate=True)
    if resp.status != 200:
        raise EstClientError(f"crls: HTTP {resp.status} {_first_line(resp)}", resp.status)
    try:
        crls = [x509.load_der_x509_crl(der) for der in read_crls_only(decode_body(resp.body))]
    except (NotBase64OrDer, NotCrlsOnly, ValueError) as e:
        raise EstClientError(f"crls: unreadable response: {e}") from None
    for crl in crls:
        issuers = [a for a in anchors if a.subject == crl.issuer]
        if not any(crl.is_signature_valid(issuer_public_key(a)) for a in issuers):
            raise EstClientError(f"crls: a CRL from {crl.issuer.rfc4514_string()} does not verify to a trust anchor")
    return crls


def get_eecerts(client: EstClient, anchors: list[x509.Certificate],
                intermediates: Sequence[x509.Certificate] = ()) -> list[x509.Certificate]:
    """The peer EE certificates of /eecerts, each validated to ``anchors``
    (RFC 8295 3); a certificate that does not validate is an error."""
    resp = client.request("GET", "eecerts", authenticate=True)
    if resp.status != 200:
        raise EstClientError(f"eecerts: HTTP {resp.status} {_first_line(resp)}", resp.status)
    try:
        certs = read_certs_only(decode_body(resp.body))
    except (NotBase64OrDer, NotCertsOnly) as e:
        raise EstClientError(f"eecerts: unreadable response: {e}") from None
    verifier = _verifier(list(anchors))
    for cert in certs:
        try:
            verifier.verify(cert, list(intermediates))
        except VerificationError as e:
            raise EstClientError(f"eecerts: {cert.subject.rfc4514_string()} does not validate to a trust"
                                 f" anchor: {e}") from None
    return certs


def get_enrollment_result(client: EstClient, operation: str = "simpleenroll") -> x509.Certificate:
    """GET /simpleenroll or /simplereenroll: the result a PAL entry
    (0008/0011/0015/0018, or a failure type) announced."""
    resp = client.request("GET", operation, authenticate=True)
    if resp.status == 200:
        certs = client.certs(resp, operation)
        if len(certs) != 1:
            raise EstClientError(f"{operation}: expected one certificate, got {len(certs)}")
        return certs[0]
    raise EstClientError(f"{operation}: HTTP {resp.status} {_first_line(resp)}", resp.status)


# -- est pal / crls / eecerts -----------------------------------------------------------------

def describe(entry: pal_format.PalEntry) -> str:
    """One line for people: type, name, date, size, info."""
    t = PAL_TYPES.get(entry.type)
    name = t.name if t else "unregistered type"
    date = pal_format.format_date(entry.date) if entry.date else "-"
    if entry.uri is not None:
        info = entry.uri
    elif entry.dn is not None:
        info = f"dn {entry.dn}"
    elif entry.ski is not None:
        info = f"ski {entry.ski.hex()}"
    elif entry.iasn is not None:
        info = f"certificate {entry.iasn.serial:x} from {entry.iasn.issuer}"
    else:  # PalEntry holds exactly one of the four
        info = ""
    return f"{entry.type}  {name:<42} {date:<20} {entry.size:>7}  {info}"


def _anchors(args: argparse.Namespace) -> list[x509.Certificate]:
    return pemfiles.certificates(args.anchor)


def cmd_pal(args: argparse.Namespace) -> None:
    with client_from_args(args) as c:
        if args.raw:
            resp = c.request("GET", "pal", accept=pal_format.JSON_MEDIA_TYPE if args.json else
                              pal_format.XML_MEDIA_TYPE, authenticate=True)
            if resp.status != 200:
                raise EstClientError(f"pal: HTTP {resp.status} {_first_line(resp)}", resp.status)
            sys.stdout.write(resp.body.decode("utf-8", "replace"))
            return
        entries = get_pal(c, json=args.json, follow=not args.first_page)
    if not entries:
        print("the PAL is empty: nothing to fetch, nothing asked")
        return
    for entry in entries:
        print(describe(entry))


def cmd_crls(args: argparse.Namespace) -> None:
    with client_from_args(args) as c:
        crls = get_crls(c, _anchors(args))
    write_output(args.out, b"".join(crl.public_bytes(serialization.Encoding.PEM) for crl in crls))
    for crl in crls:
        print(f"{crl.issuer.rfc4514_string()}: {len(crl)} revoked, next update"
              f" {crl.next_update_utc:%Y-%m-%dT%H:%M:%SZ}", file=sys.stderr)


def cmd_eecerts(args: argparse.Namespace) -> None:
    with client_from_args(args) as c:
        certs = get_eecerts(c, _anchors(args))
    write_output(args.out, pem_certs(certs))
    for cert in certs:
        print(f"peer: {cert.subject.rfc4514_string()} serial {cert.serial_number:x}", file=sys.stderr)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("pal", parents=[common], help="list the Package Availability List (RFC 8295)")
    p.add_argument("--json", action="store_true", help="ask for the JSON form instead of XML")
    p.add_argument("--raw", action="store_true", help="print the first page as the server sent it")
    p.add_argument("--first-page", action="store_true", help="do not follow pointers to further pages")
    p.set_defaults(func=cmd_pal)
    c = subparsers.add_parser("crls", parents=[common], help="fetch the CRL and ARL (RFC 8295 4), checked")
    c.add_argument("-o", "--out", help="write the CRLs (PEM) here (default stdout)")
    c.set_defaults(func=cmd_crls)
    e = subparsers.add_parser("eecerts", parents=[common], help="fetch peer EE certificates (RFC 8295 3), checked")
    e.add_argument("-o", "--out", help="write the certificates (PEM) here (default stdout)")
    e.set_defaults(func=cmd_eecerts)
