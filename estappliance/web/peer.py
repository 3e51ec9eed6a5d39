"""The TLS peer's certificate chain, read once per connection."""
from __future__ import annotations

from cryptography import x509
from OpenSSL import SSL
from twisted.web import server

_ATTR = "_est_peer_chain"


def tls_connection(request: server.Request) -> SSL.Connection | None:
    """The pyOpenSSL Connection under this request, or None on plain TCP."""
    transport = getattr(request.channel, "transport", None)
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle else None
    return handle if hasattr(handle, "get_peer_certificate") else None


def peer_chain(request: server.Request) -> tuple[x509.Certificate, ...]:
    channel = request.channel
    cached = getattr(channel, _ATTR, None)
    if cached is not None:
        return cached
    conn = tls_connection(request)
    chain: tuple[x509.Certificate, ...] = ()
    if conn is not None:
        try:
            chain = _readable_chain(conn)
        except ValueError:
            # OpenSSL took it, cryptography cannot read it (a PrintableString
            # with '@', an empty RDN...): as good as no certificate.
            chain = ()
    setattr(channel, _ATTR, chain)
    return chain


def _readable_chain(conn: SSL.Connection) -> tuple[x509.Certificate, ...]:
    leaf = conn.get_peer_certificate(as_cryptography=True)
    if leaf is None:
        return ()
    rest = conn.get_peer_cert_chain(as_cryptography=True) or []
    chain = (leaf, *[c for c in rest if c != leaf])
    for cert in chain:
        cert.subject, cert.issuer  # noqa: B018 - names are parsed lazily: fail here, not deep in the RA
    return chain


def _session_reused(conn: SSL.Connection) -> bool:
    # pyOpenSSL has no public call for this; its binding has the OpenSSL one.
    try:
        from OpenSSL.SSL import _lib
        return bool(_lib.SSL_session_reused(conn._ssl))
    except (ImportError, AttributeError):
        return False


def channel_binding(request: server.Request) -> bytes | None:
    """RFC 5929 tls-unique (TLS 1.2) or RFC 9266 tls-exporter (TLS 1.3)."""
    conn = tls_connection(request)
    if conn is None:
        return None
    if conn.get_protocol_version_name() == "TLSv1.3":
        return conn.export_keying_material(b"EXPORTER-Channel-Binding", 32)
    # tls-unique is the first Finished of the latest handshake: the client's on
    # a full handshake, ours on an abbreviated (resumed) one.
    return conn.get_finished() if _session_reused(conn) else conn.get_peer_finished()
