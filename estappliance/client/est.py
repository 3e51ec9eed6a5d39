"""EST client operations (RFC 7030 as clarified by RFC 8951)."""
from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes

from ..pki import csrattrs
from ..pki.csrattrs import CsrHints
from ..pki.csrtemplate import CsrTemplate
from ..pki.cms import NotCertsOnly, read_certs_only
from ..pki.encoding import NotBase64OrDer, decode_body
from ..http_digest import ALGORITHMS, parse_authorization
from .http import HttpResponse, HttpsConnection


class EstClientError(Exception):
    """The server refused, or answered something we cannot use."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EnrollmentPending(EstClientError):
    """202: the request waits (manual approval); send it again after retry_after s."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, 202)
        self.retry_after = retry_after


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str

    def header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


class DigestAuth:
    """RFC 7616 Digest (qop=auth), SHA-256 preferred, MD5 if that is all the server offers."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password
        self._challenge: dict[str, str] | None = None
        self._nc = 0

    def use_challenge(self, headers: list[str]) -> bool:
        offers = [p for p in (parse_authorization(h) for h in headers) if p is not None]
        for wanted in ("SHA-256", "MD5"):
            for offer in offers:
                if offer.get("algorithm", "MD5").upper() == wanted and "auth" in offer.get("qop", ""):
                    self._challenge, self._nc = offer, 0
                    return True
        return False

    def header(self, method: str, uri: str) -> str | None:
        c = self._challenge
        if c is None:
            return None
        self._nc += 1
        algorithm = c.get("algorithm", "MD5").upper()
        h = ALGORITHMS[algorithm]
        nc, cnonce = f"{self._nc:08x}", os.urandom(8).hex()
        ha1 = h(f"{self.username}:{c['realm']}:{self.password}".encode()).hexdigest()
        ha2 = h(f"{method}:{uri}".encode()).hexdigest()
        response = h(f"{ha1}:{c['nonce']}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        return (f'Digest username="{self.username}", realm="{c["realm"]}", nonce="{c["nonce"]}", uri="{uri}", '
                f'algorithm={algorithm}, qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}"')


def new_key(key_type: str = "ec-p256") -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """A fresh private key of a profile key type (``ec-p256``, ``rsa2048``...)."""
    curves: dict[str, Callable[[], ec.EllipticCurve]] = {"ec-p256": ec.SECP256R1, "ec-p384": ec.SECP384R1,
                                                         "ec-p521": ec.SECP521R1}
    if key_type in curves:
        return ec.generate_private_key(curves[key_type]())
    if key_type.startswith("rsa") and key_type[3:].isdigit():
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    raise ValueError(f"unknown key type {key_type!r}")


def make_csr(key: CertificateIssuerPrivateKeyTypes, subject: str, *, dns_names: tuple[str, ...] = (),
             challenge_password: str | None = None,
             signature_hash: str | None = None) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name.from_rfc4514_string(subject))
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
    if challenge_password is not None:
        builder = builder.add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge_password.encode())
    return builder.sign(key, _HASHES[signature_hash or _default_hash(key)]())


def make_csr_from_template(key: CertificateIssuerPrivateKeyTypes, template: CsrTemplate, subject: str, *,
                           dns_names: tuple[str, ...] = (),
                           challenge_password: str | None = None,
                           signature_hash: str | None = None) -> x509.CertificateSigningRequest:
    """A CSR that follows the server's RFC 9908 template (pki.csrtemplate.fill):
    its RDNs and extensions, ``subject`` and ``dns_names`` filling what it
    leaves open. Raises ValueError naming what the template asks and lacks."""
    from ..pki.csrtemplate import fill, key_type_of
    if template.key_type is not None and key_type_of(key.public_key()) != template.key_type:
        raise ValueError(f"the server's CSR template asks for a {template.key_type} key")
    builder = fill(template, x509.Name.from_rfc4514_string(subject), dns_names=dns_names)
    if challenge_password is not None:
        builder = builder.add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge_password.encode())
    return builder.sign(key, _HASHES[signature_hash or _default_hash(key)]())


_HASHES: dict[str, Callable[[], hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
_SIGNATURE_HASH = {"ecdsa-with-SHA256": "sha256", "ecdsa-with-SHA384": "sha384", "ecdsa-with-SHA512": "sha512",
                   "sha256WithRSAEncryption": "sha256", "sha384WithRSAEncryption": "sha384",
                   "sha512WithRSAEncryption": "sha512"}


def _default_hash(key: CertificateIssuerPrivateKeyTypes) -> str:
    """The hash that matches the key's strength: SHA-384 for P-384, SHA-512 for P-521."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {384: "sha384", 521: "sha512"}.get(key.key_size, "sha256")
    return "sha256"


class EstClient:
    """Talks to one EST server (one base URI, optionally with a CA label).

    ``anchors`` are the explicit trust anchors for the server; ``None`` is
    only for bootstrapping /cacerts, whose answer must then be checked out of
    band (RFC 7030 4.1.1).
    """

    def __init__(self, server: str, *, anchors: list[x509.Certificate] | None, label: str | None = None,
                 auth: BasicAuth | DigestAuth | None = None, client_cert: list[x509.Certificate] | None = None,
                 client_key: PrivateKeyTypes | None = None, timeout: float = 30.0,
                 tls_version: str | None = None) -> None:
        url = urlsplit(server if "//" in server else f"https://{server}")
        if url.scheme != "https":
            raise ValueError("EST runs over https only")
        self.host = url.hostname or "localhost"
        self.port = url.port or 443
        prefix = url.path.rstrip("/")
        if not prefix.endswith("/.well-known/est"):
            prefix += "/.well-known/est"
        self.base = prefix + (f"/{label}" if label else "")
        self.auth = auth
        self.conn = HttpsConnection(self.host, self.port, anchors=anchors, client_cert=client_cert,
                                    client_key=client_key, timeout=timeout, tls_version=tls_version)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> EstClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, op: str, body: bytes = b"", content_type: str | None = None, *,
                 accept: str | None = None, authenticate: bool | None = None,
                 path: str | None = None) -> HttpResponse:
        """``authenticate`` (default: for POST) sends the credentials; ``path``
        replaces ``base/op`` (e.g. a next-PAL URI's path)."""
        path = path or f"{self.base}/{op}"
        authenticate = method == "POST" if authenticate is None else authenticate
        for attempt in range(2):
            headers: dict[str, str] = {}
            if isinstance(self.auth, BasicAuth) and authenticate:
                headers["Authorization"] = self.auth.header()
            elif isinstance(self.auth, DigestAuth) and authenticate:
                value = self.auth.header(method, path)
                if value:
                    headers["Authorization"] = value
            if accept:
                headers["Accept"] = accept
            if content_type:
                headers["Content-Type"] = content_type
                headers["Content-Transfer-Encoding"] = "base64"
            resp = self.conn.request(method, path, headers, body)
            if (resp.status == 401 and isinstance(self.auth, DigestAuth) and attempt == 0
                    and self.auth.use_challenge(resp.header_values("www-authenticate"))):
                continue  # answer the Digest challenge once
            return resp
        return resp

    @staticmethod
    def certs(resp: HttpResponse, op: str) -> list[x509.Certificate]:
        if resp.status != 200:
            raise EstClientError(f"{op}: HTTP {resp.status} {_first_line(resp)}", resp.status)
        ctype = (resp.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/pkcs7-mime":
            raise EstClientError(f"{op}: unexpected Content-Type {resp.header('content-type')!r}")
        try:
            return read_certs_only(decode_body(resp.body))
        except (NotBase64OrDer, NotCertsOnly) as e:
            raise EstClientError(f"{op}: unreadable certs-only response: {e}") from None

    def cacerts(self) -> list[x509.Certificate]:
        return self.certs(self.request("GET", "cacerts"), "cacerts")

    def channel_binding(self) -> str:
        """The base64 channel-binding value for the CSR challengePassword (RFC 7030 3.5)."""
        self.conn.connect()
        return base64.b64encode(self.conn.channel_binding()).decode()

    def csrattrs(self) -> CsrHints | None:
        """What the server asks CSRs to hold, or None (204/404: nothing)."""
        resp = self.request("GET", "csrattrs")
        if resp.status in (204, 404):
            return None
        if resp.status != 200:
            raise EstClientError(f"csrattrs: HTTP {resp.status} {_first_line(resp)}", resp.status)
        try:
            return csrattrs.parse(decode_body(resp.body)) if resp.body.strip() else None
        except (NotBase64OrDer, csrattrs.BadCsrAttrs) as e:
            raise EstClientError(f"csrattrs: unreadable response: {e}") from None

    def simpleenroll(self, csr: x509.CertificateSigningRequest | bytes) -> x509.Certificate:
        """One POST; raises EnrollmentPending on 202."""
        return self._post_csr("simpleenroll", csr)

    def simplereenroll(self, csr: x509.CertificateSigningRequest | bytes) -> x509.Certificate:
        return self._post_csr("simplereenroll", csr)

    def enroll(self, key: CertificateIssuerPrivateKeyTypes, subject: str, *, dns_names: tuple[str, ...] = (),
               link: bool | None = None,
               reenroll: bool = False, max_polls: int = 10, max_wait: float = 300.0,
               sleep: Callable[[float], object] = time.sleep, hints: CsrHints | None = None) -> x509.Certificate:
        """Build the CSR (linked to this TLS session when asked, or when the
        server's CSR attributes ask) and enroll, following 202 + Retry-After
        at most ``max_polls`` times. The CSR is rebuilt for every attempt: a
        new connection has a new channel binding (RFC 7030 3.5). ``hints``:
        the /csrattrs answer if the caller already has it."""
        if hints is None and link is None:
            hints = self.csrattrs()
        if link is None:
            link = bool(hints and hints.challenge_password)
        signature_hash = _SIGNATURE_HASH.get(hints.signature_algorithm or "") if hints else None
        op = "simplereenroll" if reenroll else "simpleenroll"
        template = hints.template if hints else None
        for attempt in range(max_polls + 1):
            if template is not None:  # RFC 9908: the template only, the classic list aside
                csr = make_csr_from_template(key, template, subject, dns_names=dns_names,
                                             signature_hash=signature_hash,
                                             challenge_password=self.channel_binding() if link else None)
            else:
                csr = make_csr(key, subject, dns_names=dns_names, signature_hash=signature_hash,
                               challenge_password=self.channel_binding() if link else None)
            try:
                return self._post_csr(op, csr)
            except EnrollmentPending as pending:
                if attempt == max_polls:
                    raise
                sleep(min(max(pending.retry_after, 1), max_wait))
        raise AssertionError("unreachable")

    def _post_csr(self, op: str, csr: x509.CertificateSigningRequest | bytes) -> x509.Certificate:
        der = csr if isinstance(csr, bytes) else csr.public_bytes(serialization.Encoding.DER)
        resp = self.request("POST", op, base64.encodebytes(der), "application/pkcs10")
        if resp.status == 202:
            try:
                retry_after = int(resp.header("retry-after") or "60")
            except ValueError:
                retry_after = 60
            raise EnrollmentPending(f"{op}: {_first_line(resp) or 'pending'}", retry_after)
        certs = self.certs(resp, op)
        if len(certs) != 1:
            raise EstClientError(f"{op}: expected one certificate, got {len(certs)}")
        return certs[0]


def _first_line(resp: HttpResponse) -> str:
    lines = resp.body.decode("utf-8", "replace").strip().splitlines()
    return lines[0] if lines else resp.reason
