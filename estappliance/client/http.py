"""A small blocking HTTP/1.1-over-TLS client built on pyOpenSSL.

pyOpenSSL rather than the stdlib ``ssl`` because EST proof-of-possession
linking needs the TLS 1.2 Finished message (tls-unique) and the TLS 1.3
exporter (RFC 9266), which ``ssl`` does not expose for 1.3.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from OpenSSL import SSL, crypto

ID_KP_CMC_RA = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.28")


class TLSError(Exception):
    """The TLS connection failed or the server is not the one we trust."""


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def header_values(self, name: str) -> list[str]:
        """Every value of a header that may repeat (WWW-Authenticate)."""
        return [v for k, v in self.raw_headers if k == name.lower()]


class HttpsConnection:
    """One TLS connection, reused for several requests (keep-alive)."""

    def __init__(self, host: str, port: int, *, anchors: list[x509.Certificate] | None,
                 client_cert: list[x509.Certificate] | None = None, client_key: PrivateKeyTypes | None = None,
                 timeout: float = 30.0, tls_version: str | None = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        if tls_version == "1.2":
            ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        elif tls_version == "1.3":
            ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        if anchors is not None:
            store = ctx.get_cert_store()
            assert store is not None  # a new context has its store
            for a in anchors:
                store.add_cert(crypto.X509.from_cryptography(a))
            ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, errno, depth, ok: bool(ok))
        else:
            ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        if client_cert:
            ctx.use_certificate(crypto.X509.from_cryptography(client_cert[0]))
            for extra in client_cert[1:]:
                ctx.add_extra_chain_cert(crypto.X509.from_cryptography(extra))
            if not isinstance(client_key, (dsa.DSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                                           ed448.Ed448PrivateKey, rsa.RSAPrivateKey)):
                raise TLSError("a TLS client certificate needs its RSA, EC or EdDSA private key")
            ctx.use_privatekey(crypto.PKey.from_cryptography_key(client_key))
        self._ctx = ctx
        self._anchored = anchors is not None
        self._conn: SSL.Connection | None = None
        self._buf = b""

    # -- connection ------------------------------------------------------------

    def connect(self) -> None:
        if self._conn is not None:
            return
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # pyOpenSSL needs a blocking socket (a Python timeout makes it
        # non-blocking); the kernel enforces the timeout instead.
        sock.settimeout(None)
        tv = struct.pack("ll", int(self.timeout), int((self.timeout % 1) * 1e6))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        conn = SSL.Connection(self._ctx, sock)
        if not _is_ip(self.host):
            conn.set_tlsext_host_name(self.host.encode("idna"))
        conn.set_connect_state()
        try:
            conn.do_handshake()
        except SSL.Error as e:
            sock.close()
            raise TLSError(f"TLS handshake with {self.host}:{self.port} failed: {_ssl_reason(e)}") from None
        self._conn, self._sock = conn, sock
        self._buf = b""
        if self._anchored:
            self._authorize_server()

    def _authorize_server(self) -> None:
        """RFC 7030 3.6: the URI must match the certificate, or it must carry id-kp-cmcRA."""
        cert = self.server_certificate()
        if _name_matches(cert, self.host) or _has_cmc_ra(cert):
            return
        self.close()
        raise TLSError(f"server certificate does not name {self.host} and is not an EST RA certificate")

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.shutdown()
            except SSL.Error:
                pass
            self._sock.close()

    def __enter__(self) -> HttpsConnection:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- TLS facts ---------------------------------------------------------------

    @property
    def _tls(self) -> SSL.Connection:
        if self._conn is None:
            raise TLSError(f"not connected to {self.host}:{self.port}")
        return self._conn

    def server_certificate(self) -> x509.Certificate:
        cert = self._tls.get_peer_certificate(as_cryptography=True)
        if cert is None:
            raise TLSError(f"{self.host}:{self.port} sent no certificate")
        return cert

    def server_chain(self) -> list[x509.Certificate]:
        return self._tls.get_peer_cert_chain(as_cryptography=True) or []

    def tls_version(self) -> str:
        return self._tls.get_protocol_version_name()

    def channel_binding(self) -> bytes:
        """tls-unique on TLS 1.2 (RFC 5929), tls-exporter on TLS 1.3 (RFC 9266)."""
        if self._tls.get_protocol_version_name() == "TLSv1.3":
            return self._tls.export_keying_material(b"EXPORTER-Channel-Binding", 32)
        # The client sends the first Finished of a full handshake.
        finished = self._tls.get_finished()
        if finished is None:
            raise TLSError("no TLS handshake has finished")
        return finished

    # -- HTTP --------------------------------------------------------------------

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> HttpResponse:
        self.connect()
        given = {k.lower() for k in (headers or {})}
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header()}",
                 *([] if "accept" in given else ["Accept: */*"]), "User-Agent: estappliance-client"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            self._tls.sendall(data)
            return self._read_response(method)
        except (SSL.Error, OSError) as e:
            self.close()
            raise TLSError(f"connection to {self.host}:{self.port} failed: {_ssl_reason(e)}") from None

    def _host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"

    def _recv(self) -> bytes:
        try:
            data = self._tls.recv(65536)
        except SSL.ZeroReturnError:
            data = b""
        except SSL.SysCallError as e:
            if e.args and e.args[0] == -1:  # unexpected EOF
                data = b""
            else:
                raise
        return data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            chunk = self._recv()
            if not chunk:
                raise TLSError("connection closed before the response was complete")
            self._buf += chunk
        head, self._buf = self._buf.split(marker, 1)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self._recv()
            if not chunk:
                raise TLSError("connection closed before the response was complete")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _read_response(self, method: str) -> HttpResponse:
        head = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        version, status, *reason = head[0].split(" ", 2)
        headers: dict[str, str] = {}
        raw: list[tuple[str, str]] = []
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
            raw.append((name.strip().lower(), value.strip()))
        status_code = int(status)
        if method == "HEAD" or status_code in (204, 304) or 100 <= status_code < 200:
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        else:
            body = self._buf
            while chunk := self._recv():
                body += chunk
            self._buf = b""
            self.close()
        if headers.get("connection", "").lower() == "close" or version == "HTTP/1.0":
            self.close()
        return HttpResponse(status_code, reason[0] if reason else "", headers, body, raw)

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self._read_until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                self._read_until(b"\r\n")
                return body
            body += self._read_exact(size)
            self._read_exact(2)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _name_matches(cert: x509.Certificate, host: str) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if _is_ip(host):
        return ipaddress.ip_address(host) in san.get_values_for_type(x509.IPAddress)
    host = host.lower().rstrip(".")
    for name in san.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _has_cmc_ra(cert: x509.Certificate) -> bool:
    try:
        return ID_KP_CMC_RA in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


def _ssl_reason(e: Exception) -> str:
    if isinstance(e, SSL.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        return e.args[0][0][-1]
    return str(e) or type(e).__name__


def load_private_key(data: bytes) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(data, password=None)
