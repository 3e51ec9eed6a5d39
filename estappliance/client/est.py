"""EST client operations (RFC 7030 as clarified by RFC 8951)."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..pki.cms import NotCertsOnly, read_certs_only
from ..pki.encoding import NotBase64OrDer, decode_body
from .http import HttpResponse, HttpsConnection


class EstClientError(Exception):
    """The server refused, or answered something we cannot use."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str

    def header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def new_key(key_type: str = "ec-p256"):
    """A fresh private key of a profile key type (``ec-p256``, ``rsa2048``...)."""
    curves = {"ec-p256": ec.SECP256R1, "ec-p384": ec.SECP384R1, "ec-p521": ec.SECP521R1}
    if key_type in curves:
        return ec.generate_private_key(curves[key_type]())
    if key_type.startswith("rsa") and key_type[3:].isdigit():
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    raise ValueError(f"unknown key type {key_type!r}")


def make_csr(key, subject: str, *, dns_names: tuple[str, ...] = (),
             challenge_password: str | None = None) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name.from_rfc4514_string(subject))
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
    if challenge_password is not None:
        builder = builder.add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge_password.encode())
    algorithm = hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) and key.key_size >= 384 \
        else hashes.SHA256()
    return builder.sign(key, algorithm)


class EstClient:
    """Talks to one EST server (one base URI, optionally with a CA label).

    ``anchors`` are the explicit trust anchors for the server; ``None`` is
    only for bootstrapping /cacerts, whose answer must then be checked out of
    band (RFC 7030 4.1.1).
    """

    def __init__(self, server: str, *, anchors: list[x509.Certificate] | None, label: str | None = None,
                 auth: BasicAuth | None = None, client_cert: list[x509.Certificate] | None = None,
                 client_key=None, timeout: float = 30.0, tls_version: str | None = None):
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

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, method: str, op: str, body: bytes = b"", content_type: str | None = None) -> HttpResponse:
        headers = {}
        if self.auth is not None and method == "POST":
            headers["Authorization"] = self.auth.header()
        if content_type:
            headers["Content-Type"] = content_type
            headers["Content-Transfer-Encoding"] = "base64"
        return self.conn.request(method, f"{self.base}/{op}", headers, body)

    @staticmethod
    def _certs(resp: HttpResponse, op: str) -> list[x509.Certificate]:
        if resp.status != 200:
            reason = resp.body.decode("utf-8", "replace").strip().splitlines()
            raise EstClientError(f"{op}: HTTP {resp.status} {reason[0] if reason else resp.reason}", resp.status)
        ctype = (resp.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/pkcs7-mime":
            raise EstClientError(f"{op}: unexpected Content-Type {resp.header('content-type')!r}")
        try:
            return read_certs_only(decode_body(resp.body))
        except (NotBase64OrDer, NotCertsOnly) as e:
            raise EstClientError(f"{op}: unreadable certs-only response: {e}") from None

    def cacerts(self) -> list[x509.Certificate]:
        return self._certs(self._request("GET", "cacerts"), "cacerts")

    def channel_binding(self) -> str:
        """The base64 channel-binding value for the CSR challengePassword (RFC 7030 3.5)."""
        self.conn.connect()
        return base64.b64encode(self.conn.channel_binding()).decode()

    def simpleenroll(self, csr: x509.CertificateSigningRequest | bytes) -> x509.Certificate:
        return self._enroll("simpleenroll", csr)

    def _enroll(self, op: str, csr) -> x509.Certificate:
        der = csr if isinstance(csr, bytes) else csr.public_bytes(serialization.Encoding.DER)
        resp = self._request("POST", op, base64.encodebytes(der), "application/pkcs10")
        certs = self._certs(resp, op)
        if len(certs) != 1:
            raise EstClientError(f"{op}: expected one certificate, got {len(certs)}")
        return certs[0]
