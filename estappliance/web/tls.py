"""The listener's TLS context: TLS 1.2 and 1.3, optional client certificates.

pyOpenSSL will not let a context change after its first connection and
Twisted reuses one context, so everything is set up here, once per context;
a new server certificate (a CA key switch) or a reload swaps in a whole new one.
"""
from __future__ import annotations

from pathlib import Path

from cryptography import x509
from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _ossl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from .. import metrics
from .ticket_keys import SessionTicketKeys


def _accept_any(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    # Client certificates are judged by the RA against the label's anchors
    # (ra.auth): a stranger's certificate must earn a 401, not a broken handshake.
    return True


def _count_handshake(conn: SSL.Connection, where: int, ret: int) -> None:
    if where & SSL.SSL_CB_HANDSHAKE_DONE and metrics.enabled():
        # pyOpenSSL has no session_reused(); its own binding of OpenSSL's does.
        metrics.observe_handshake(bool(_ossl.SSL_session_reused(conn._ssl)))


@implementer(IOpenSSLServerConnectionCreator)
class ServerContextFactory:
    """Holds one prepared context; makes a server Connection per client.

    ``reload`` (a new server certificate after a CA key switch) and
    ``replace`` (a configuration reload) swap in a new context for the
    connections that come next; a connection already open keeps the context
    it was made with, so none is dropped. With ``ticket_keys``, every
    context it holds gets the session-ticket key all workers and nodes share
    (ticket_keys.py), again whenever that key changes."""

    def __init__(self, key_file: Path, cert_file: Path, client_cas: list[x509.Certificate],
                 ticket_keys: SessionTicketKeys | None = None) -> None:
        self.ticket_keys = ticket_keys
        self._context = build_context(key_file, cert_file, client_cas)
        if ticket_keys is not None:
            ticket_keys.apply(self._context)
            ticket_keys.listeners.append(lambda: ticket_keys.apply(self._context))

    def reload(self, key_file: Path, cert_file: Path, client_cas: list[x509.Certificate]) -> None:
        self.replace(build_context(key_file, cert_file, client_cas))

    def replace(self, context: SSL.Context) -> None:
        if self.ticket_keys is not None:
            self.ticket_keys.apply(context)
        self._context = context

    def getContext(self) -> SSL.Context:
        return self._context

    def serverConnectionForTLS(self, protocol: object) -> SSL.Connection:
        return SSL.Connection(self._context, None)


def build_context(key_file: Path, cert_file: Path, client_cas: list[x509.Certificate]) -> SSL.Context:
    """A fresh server context; raises OSError or SSL.Error for unusable files."""
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
    if metrics.enabled():
        ctx.set_info_callback(_count_handshake)
    return ctx
