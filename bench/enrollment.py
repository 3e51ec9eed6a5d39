"""Enrollments: the request bytes the load sends, what counts as an
enrollment, and the untimed ones (warm-up, client certificates, Digest
nonces) made with the project's client (``estappliance.client``)."""
from __future__ import annotations

import base64
import binascii
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from estappliance.client import (BasicAuth, DigestAuth, EstClient, EstClientError, HttpsConnection, TLSError, make_csr,
                                 new_key)

from .target import ENROLL_PATH, HOST, BenchError, Target

DIGEST_SLOT = "Digest-to-be-computed"  # replaced per request by the client's Digest answer


def anchors(ca_file: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(ca_file).read_bytes())


def client_context(ca_file: str) -> ssl.SSLContext:
    """The load generator's TLS context (stdlib ``ssl``: non-blocking sockets)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def probe_tls(target: Target, timeout: float) -> None:
    """A TLS handshake with the server; raises TLSError or OSError if it fails."""
    with HttpsConnection(HOST, target.port, anchors=anchors(target.ca_file), timeout=timeout):
        pass


def basic_authorization(user: str, password: str) -> str:
    return BasicAuth(user, password).header()


def enroll_request(csr_der: bytes, port: int, authorization: str | None, close: bool) -> bytes:
    """A /simpleenroll POST; without ``authorization`` the TLS client certificate speaks."""
    body = base64.b64encode(csr_der)
    head = (f"POST {ENROLL_PATH} HTTP/1.1\r\n"
            f"Host: {HOST}:{port}\r\n"
            + (f"Authorization: {authorization}\r\n" if authorization else "")
            + "Content-Type: application/pkcs10\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n")
    return head.encode() + body


def certs_only_der(body: bytes) -> bytes | None:
    """The DER of a base64 certs-only body, or None if it is not base64 of a SEQUENCE."""
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return der if len(der) > 2 and der[0] == 0x30 else None


def enrolled(status: int, body: bytes) -> bool:
    """Only 200 answers whose body is base64 of DER count as enrollments."""
    return status == 200 and certs_only_der(body) is not None


def make_csrs(count: int, prefix: str) -> list[bytes]:
    """DER P-256 CSRs, each with its own key."""
    return [make_csr(new_key(), f"CN={prefix}-{i}").public_bytes(serialization.Encoding.DER) for i in range(count)]


def basic_client(target: Target, timeout: float) -> EstClient:
    return EstClient(f"https://{HOST}:{target.port}", anchors=anchors(target.ca_file),
                     auth=BasicAuth(target.user, target.password), timeout=timeout)


def warm_up(target: Target, timeout: float) -> None:
    """Untimed Basic enrollments, a few per server worker, each on its own
    connection: they check the credentials and fill each worker's caches."""
    for csr in make_csrs(3 * target.workers, "bench-warm-up"):
        try:
            with basic_client(target, timeout) as client:
                client.simpleenroll(csr)
        except (EstClientError, TLSError, OSError) as e:
            raise BenchError(f"the warm-up enrollment failed: {e}") from None


def certificate_context(target: Target, name: str, timeout: float) -> ssl.SSLContext:
    """Enroll once with Basic (untimed); a TLS context presenting the certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        with basic_client(target, timeout) as client:
            cert = client.simpleenroll(make_csr(key, f"CN={name}"))
    except (EstClientError, TLSError, OSError) as e:
        raise BenchError(f"the Basic enrollment for {name}'s certificate failed: {e}") from None
    context = client_context(target.ca_file)
    with tempfile.TemporaryDirectory(prefix="est-bench-client-") as tmp:
        pem = Path(tmp) / "client.pem"
        pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context.load_cert_chain(pem)
    return context


def digest_preparer(target: Target, timeout: float) -> Callable[[bytes], bytes]:
    """For one client: its own nonce (one untimed 401), and each request's
    Authorization with the next nonce count (RFC 7616, qop=auth, SHA-256)."""
    auth = DigestAuth(target.user, target.password)
    try:
        with HttpsConnection(HOST, target.port, anchors=anchors(target.ca_file), timeout=timeout) as conn:
            challenge = conn.request("POST", ENROLL_PATH, {"Content-Type": "application/pkcs10"}, b"")
    except (TLSError, OSError) as e:
        raise BenchError(f"the Digest challenge request failed: {e}") from None
    offers = challenge.header_values("www-authenticate")
    if challenge.status != 401 or not auth.use_challenge([o for o in offers if "SHA-256" in o.upper()]):
        raise BenchError(f"no SHA-256 Digest challenge in the answer: HTTP {challenge.status} {offers!r}")

    def prepare(request: bytes) -> bytes:
        value = auth.header("POST", ENROLL_PATH) or ""
        return request.replace(DIGEST_SLOT.encode(), value.encode(), 1)
    return prepare
