"""``est``: an EST client for people and scripts; writes PEM."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from .est import BasicAuth, EstClient, EstClientError, make_csr, new_key
from .http import TLSError


def _pem_certs(certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _write(path: str | None, data: bytes, mode: int = 0o644) -> None:
    if path in (None, "-"):
        sys.stdout.write(data.decode())
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _client(args) -> EstClient:
    anchors = None
    if args.anchor:
        anchors = x509.load_pem_x509_certificates(Path(args.anchor).read_bytes())
    elif not getattr(args, "insecure_bootstrap", False):
        raise SystemExit("est: --anchor FILE is required (or --insecure-bootstrap for cacerts)")
    auth = None
    if args.user is not None:
        if not args.password_file:
            raise SystemExit("est: --user needs --password-file")
        auth = BasicAuth(args.user, Path(args.password_file).read_text().rstrip("\r\n"))
    client_cert = client_key = None
    if args.cert:
        if not args.key:
            raise SystemExit("est: --cert needs --key")
        client_cert = x509.load_pem_x509_certificates(Path(args.cert).read_bytes())
        client_key = serialization.load_pem_private_key(Path(args.key).read_bytes(), password=None)
    return EstClient(args.server, anchors=anchors, label=args.label, auth=auth, client_cert=client_cert,
                     client_key=client_key, tls_version=args.tls)


def cmd_cacerts(args) -> None:
    with _client(args) as c:
        certs = c.cacerts()
    if args.anchor is None:
        for cert in certs:
            print(f"# {cert.subject.rfc4514_string()}  SHA-256 {cert.fingerprint(hashes.SHA256()).hex(':')}",
                  file=sys.stderr)
        print("# bootstrap: check these fingerprints out of band before trusting them", file=sys.stderr)
    _write(args.out, _pem_certs(certs))


def cmd_enroll(args) -> None:
    with _client(args) as c:
        if args.csr:
            data = Path(args.csr).read_bytes()
            csr = x509.load_pem_x509_csr(data) if b"-----BEGIN" in data else x509.load_der_x509_csr(data)
        else:
            if not args.subject or not args.key_out:
                raise SystemExit("est enroll: give --csr FILE, or --subject and --key-out to make a key")
            key = new_key(args.key_type)
            _write(args.key_out, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()), mode=0o600)
            csr = make_csr(key, args.subject, dns_names=tuple(args.dns or ()))
        cert = c.simpleenroll(csr)
    _write(args.out, _pem_certs([cert]))
    print(f"enrolled: {cert.subject.rfc4514_string()} serial {cert.serial_number:x}", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=os.environ.get("EST_SERVER", "https://127.0.0.1:8443"),
                        help="EST server base URL")
    common.add_argument("--label", help="CA label (/.well-known/est/<label>/...)")
    common.add_argument("--anchor", help="PEM file of the CA certificate(s) that vouch for the server")
    common.add_argument("--user", help="HTTP Basic user name")
    common.add_argument("--password-file", help="file holding the HTTP Basic password")
    common.add_argument("--cert", help="PEM client certificate (TLS client authentication)")
    common.add_argument("--key", help="PEM private key of --cert")
    common.add_argument("--tls", choices=("1.2", "1.3"), help="force a TLS version")

    p = argparse.ArgumentParser(prog="est", description="EST client (RFC 7030, RFC 8951).")
    sub = p.add_subparsers(dest="command", required=True)
    ca = sub.add_parser("cacerts", parents=[common], help="fetch the CA certificates")
    ca.add_argument("-o", "--out", help="write PEM here (default stdout)")
    ca.add_argument("--insecure-bootstrap", action="store_true",
                    help="no anchor: print fingerprints to check out of band (RFC 7030 4.1.1)")
    ca.set_defaults(func=cmd_cacerts)
    en = sub.add_parser("enroll", parents=[common], help="enroll: get a certificate for a key")
    en.add_argument("--csr", help="send this CSR (PEM or DER) instead of making a key")
    en.add_argument("--subject", help="subject of the CSR to make, e.g. 'CN=device-1'")
    en.add_argument("--dns", action="append", help="subjectAltName DNS name (repeatable)")
    en.add_argument("--key-type", default="ec-p256", help="ec-p256 (default), ec-p384, rsa2048, rsa3072 ...")
    en.add_argument("--key-out", help="where to write the new private key (PEM, 0600)")
    en.add_argument("-o", "--out", help="write the certificate (PEM) here (default stdout)")
    en.set_defaults(func=cmd_enroll)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (EstClientError, TLSError) as e:
        print(f"est: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"est: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
