"""The TLS peer's certificate chain, read once per connection."""
from __future__ import annotations

from cryptography import x509
from twisted.web import server

_ATTR = "_est_peer_chain"


def tls_connection(request: server.Request):
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
        leaf = conn.get_peer_certificate(as_cryptography=True)
        if leaf is not None:
            rest = conn.get_peer_cert_chain(as_cryptography=True) or []
            chain = (leaf, *[c for c in rest if c != leaf])
    setattr(channel, _ATTR, chain)
    return chain
