"""The listener's TLS context: TLS 1.2 and 1.3, optional client certificates.

pyOpenSSL will not let a context change after its first connection and
Twisted reuses one context, so everything is set up here; a new server
certificate (a CA key switch) gets a whole new context.
"""
from __future__ import annotations

from pathlib import Path

from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer


def _accept_any(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    # Client certificates are judged by the RA against the label's anchors
    # (ra.auth): a stranger's certificate must earn a 401, not a broken handshake.
    return True


@implementer(IOpenSSLServerConnectionCreator)
class ServerContextFactory:
    """Holds one prepared context; makes a server Connection per client.

    ``reload`` prepares a new context (a new server certificate after a CA
    key switch) for the connections that come next; a connection already
    open keeps the context it was made with, so none is dropped."""

    def __init__(self, key_file: Path, cert_file: Path, client_cas: list[x509.Certificate]) -> None:
        self._context = _context(key_file, cert_file, client_cas)

    def reload(self, key_file: Path, cert_file: Path, client_cas: list[x509.Certificate]) -> None:
        self._context = _context(key_file, cert_file, client_cas)

    def getContext(self) -> SSL.Context:
        return self._context

    def serverConnectionForTLS(self, protocol: object) -> SSL.Connection:
        return SSL.Connection(self._context, None)


def _context(key_file: Path, cert_file: Path, client_cas: list[x509.Certificate]) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    # No renegotiation: the channel binding of a connection must not change.
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION)
    ctx.set_cipher_list(b"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL:!MD5:!DSS")
    ctx.use_certificate_chain_file(str(cert_file))
    ctx.use_privatekey_file(str(key_file))
    ctx.check_privatekey()
    ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
    ctx.set_verify_depth(8)
    if client_cas:
        ctx.set_client_ca_list([crypto.X509.from_cryptography(c).get_subject() for c in client_cas])
    ctx.set_session_id(b"estappliance")
    return ctx
