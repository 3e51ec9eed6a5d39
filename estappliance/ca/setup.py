"""Creating the CA: key pair in the token, self-signed root or CSR for a
parent CA, and the TLS server certificate the listener presents.

Blocking code for ``estctl``; it runs without a reactor.
"""
from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..config import Config
from ..files import write_atomically
from ..pki import certs
from ..store import Store
from ..token import KEY_SPECS, Token
from .authority import load_pem_certs
from .signer import TokenSigner

TLS_SERVER_DAYS = 397


class SetupError(Exception):
    """A CA set-up step cannot go ahead; the message says why."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ensure_key(config: Config, token: Token) -> None:
    if not token.has_key(config.ca.key_label):
        problem = token.policy().key_type_problem(config.ca.key_type)
        if problem:
            raise SetupError(f"[ca] key_type {config.ca.key_type!r}: {problem} ('estctl token check' shows what"
                             " this token can do)")
        token.generate_keypair(config.ca.key_label, KEY_SPECS[config.ca.key_type], extractable=False)


def _new_ca_key(config: Config, token: Token) -> tuple[x509.Name, TokenSigner]:
    """Refuse a second init; the CA subject and a signer for the (new) CA key."""
    if config.ca.cert_file.exists():
        raise SetupError(f"the CA is already initialised ({config.ca.cert_file})")
    try:
        subject = certs.parse_name(config.ca.subject)
    except ValueError as e:
        raise SetupError(f"[ca] subject: {e}") from None
    _ensure_key(config, token)
    return subject, TokenSigner(token, config.ca.key_label)


def init_root(config: Config, token: Token, store: Store) -> x509.Certificate:
    """Create the CA key in the token and a self-signed root; issue the TLS cert."""
    subject, signer = _new_ca_key(config, token)
    builder = certs.root_ca(subject, signer.key().public_key(), x509.random_serial_number(), _now(),
                            config.ca.validity_days)
    ca_cert = signer.sign_certificate(builder)
    write_atomically(config.ca.cert_file, _pem(ca_cert))
    if config.ca.chain_file is not None:
        write_atomically(config.ca.chain_file, b"")
    issue_tls_server(config, signer, ca_cert, store)
    issue_content_signer(config, token, signer, ca_cert, store)
    return ca_cert


def init_subordinate(config: Config, token: Token, csr_out: Path) -> x509.CertificateSigningRequest:
    """Create the CA key in the token and write a CSR for the parent CA."""
    subject, signer = _new_ca_key(config, token)
    builder = (x509.CertificateSigningRequestBuilder().subject_name(subject)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(certs.key_usage(("digitalSignature", "keyCertSign", "cRLSign")), critical=True))
    csr = signer.sign_csr(builder)
    write_atomically(csr_out, csr.public_bytes(serialization.Encoding.PEM))
    return csr


def import_subordinate(config: Config, token: Token, store: Store, cert_path: Path,
                       chain_path: Path | None) -> x509.Certificate:
    """Install the parent-signed CA certificate after checking key and chain."""
    if config.ca.cert_file.exists():
        raise SetupError(f"the CA is already initialised ({config.ca.cert_file})")
    try:
        found = load_pem_certs(cert_path)
        chain = load_pem_certs(chain_path) if chain_path else []
    except (OSError, ValueError) as e:
        raise SetupError(f"cannot read certificates: {e}") from None
    ca_cert, chain = found[0], [*found[1:], *chain]
    signer = TokenSigner(token, config.ca.key_label)
    ours = signer.key().public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = ca_cert.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    if ours != theirs:
        raise SetupError("the certificate is not for the CA key in the token")
    check_parent_answer(ca_cert, chain)
    write_atomically(config.ca.cert_file, _pem(ca_cert))
    if config.ca.chain_file is not None:
        write_atomically(config.ca.chain_file, b"".join(_pem(c) for c in chain))
    issue_tls_server(config, signer, ca_cert, store)
    issue_content_signer(config, token, signer, ca_cert, store)
    return ca_cert


def _verify_chain(ca_cert: x509.Certificate, chain: list[x509.Certificate]) -> None:
    roots = [c for c in chain if c.subject == c.issuer]
    if not roots:
        raise SetupError("the chain holds no self-signed root")
    intermediates = [c for c in chain if c.subject != c.issuer]
    # Each link's signature up to a self-signed root; the parent CA's own path
    # policy is its business.
    try:
        for cert in [ca_cert, *intermediates]:
            issuer = next((c for c in chain if c.subject == cert.issuer), None)
            if issuer is None:
                raise SetupError(f"no issuer in the chain for {cert.subject.rfc4514_string()}")
            cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError) as e:
        raise SetupError(f"the chain does not verify: {e or type(e).__name__}") from None


def issue_tls_server(config: Config, signer: TokenSigner, ca_cert: x509.Certificate, store: Store,
                     chain: list[x509.Certificate] | None = None) -> None:
    """A fresh P-256 key (a file, 0600) and a server certificate from the CA.

    The listener's TLS key lives on disk: OpenSSL (through pyOpenSSL) cannot
    use a PKCS#11 key without an engine, and this key only authenticates the
    TLS channel, never issues anything.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    names = config.server.server_names or ("localhost",)
    builder = certs.end_entity(
        subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])]),
        public_key=key.public_key(), issuer=ca_cert, serial=x509.random_serial_number(), now=_now(),
        days=TLS_SERVER_DAYS, key_usages=("digitalSignature",), extended_key_usages=("serverAuth", "cmcRA"),
        san=certs.server_san(names))
    cert = signer.sign_certificate(builder)
    store.certificates.record_certificate(serial=cert.serial_number, subject=cert.subject.rfc4514_string(),
                             not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                             label="(tls-server)", client=None, der=cert.public_bytes(serialization.Encoding.DER),
                             audit_detail="TLS server certificate")
    write_atomically(config.server.tls_key, key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()), mode=0o600)
    # ``chain``: what follows the server certificate (default: the CA certificate;
    # after a root key switch NewWithOld, so a client knowing only the old root finds its path).
    write_atomically(config.server.tls_cert, _pem(cert) + b"".join(_pem(c) for c in (chain or [ca_cert])))


def check_parent_answer(cert: x509.Certificate, chain: list[x509.Certificate]) -> None:
    """A parent CA's answer is a CA certificate, and its chain holds together."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise SetupError("the certificate is not a CA certificate (basicConstraints cA is not set)")
    if chain:
        _verify_chain(cert, chain)


def _named_after(ca_subject: x509.Name, role: str) -> x509.Name:
    """The CA's subject with its CN replaced by '<CA CN> <role>'."""
    cn = x509.NameOID.COMMON_NAME
    names = ca_subject.get_attributes_for_oid(cn)
    base = f"{str(names[0].value)} {role}" if names else role
    return x509.Name([a for a in ca_subject if a.oid != cn] + [x509.NameAttribute(cn, base)])


def issue_content_signer(config: Config, token: Token, ca_signer: TokenSigner, ca_cert: x509.Certificate,
                         store: Store) -> x509.Certificate:
    """The token key that signs CMS content, and its certificate from the CA.

    Kept apart from the CA key so that the CA key signs only certificates
    and CRLs.
    """
    label = config.ca.signer_key_label
    if not token.has_key(label):
        token.generate_keypair(label, KEY_SPECS[config.ca.key_type], extractable=False)
    public_key = TokenSigner(token, label).key().public_key()
    builder = certs.end_entity(
        subject=_named_after(ca_cert.subject, "content signer"), public_key=public_key, issuer=ca_cert,
        serial=x509.random_serial_number(), now=_now(),
        days=config.ca.validity_days, key_usages=("digitalSignature",), extended_key_usages=(), san=None)
    cert = ca_signer.sign_certificate(builder)
    store.certificates.record_certificate(serial=cert.serial_number, subject=cert.subject.rfc4514_string(),
                             not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                             label="(content-signer)", client=None, der=cert.public_bytes(serialization.Encoding.DER),
                             audit_detail="CMS content signer certificate")
    if config.ca.signer_cert_file is None:
        raise SetupError("[ca] signer_cert_file is not set")
    write_atomically(config.ca.signer_cert_file, _pem(cert))
    return cert
