"""``est``: an EST client for people and scripts; writes PEM."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from . import cmc_commands, distribution_commands, keygen_commands, pemfiles, sync
from .cli_support import client_from_args, link_choice, pem_certs, write_key, write_output
from .est import EnrollmentPending, EstClientError, new_key
from .http import TLSError


# Modules adding their own sub-commands: each has register(subparsers, common)
# where ``common`` is the parent parser with the connection options.
COMMAND_MODULES = (distribution_commands, keygen_commands, sync, cmc_commands)


def cmd_cacerts(args: argparse.Namespace) -> None:
    with client_from_args(args) as c:
        certs = c.cacerts()
    if args.anchor is None:
        for cert in certs:
            print(f"# {cert.subject.rfc4514_string()}  SHA-256 {cert.fingerprint(hashes.SHA256()).hex(':')}",
                  file=sys.stderr)
        print("# bootstrap: check these fingerprints out of band before trusting them", file=sys.stderr)
    else:
        _follow_key_update(args.anchor, certs)
    write_output(args.out, pem_certs(certs))


def _follow_key_update(anchor_file: str, certs: list[x509.Certificate]) -> None:
    """RFC 7030 4.1.3 / RFC 4210 4.4: take a new root that the trusted one
    certified (NewWithOld), drop a retired one; rewrite the anchor file and say so."""
    from .rollover import update_anchors
    update = update_anchors(pemfiles.certificates(anchor_file), certs)
    for why in update.refused:
        print(f"est: new root not trusted: {why}", file=sys.stderr)
    if not update.changed:
        return
    for cert in update.added:
        print(f"est: CA key update: new root {cert.subject.rfc4514_string()}"
              f" (SHA-256 {cert.fingerprint(hashes.SHA256()).hex(':')}) certified by the trusted root"
              " through NewWithOld; added to the anchors", file=sys.stderr)
    for cert in update.dropped:
        print(f"est: CA key update: root {cert.subject.rfc4514_string()}"
              f" (SHA-256 {cert.fingerprint(hashes.SHA256()).hex(':')}) is retired; removed from the anchors",
              file=sys.stderr)
    write_output(anchor_file, pem_certs(update.anchors))
    print(f"est: {anchor_file} updated ({len(update.anchors)} anchor(s))", file=sys.stderr)


def cmd_enroll(args: argparse.Namespace) -> None:
    with client_from_args(args) as c:
        if args.csr:
            data = Path(args.csr).read_bytes()
            csr = x509.load_pem_x509_csr(data) if b"-----BEGIN" in data else x509.load_der_x509_csr(data)
            cert = c.simpleenroll(csr)
        else:
            if not args.subject or not args.key_out:
                raise SystemExit("est enroll: give --csr FILE, or --subject and --key-out to make a key")
            hints = c.csrattrs()
            template_key = hints.template.key_type if hints and hints.template else None
            key = new_key(args.key_type or template_key or (hints.key_type if hints else None) or "ec-p256")
            # Written first: a key whose certificate is still pending approval must survive.
            write_key(args.key_out, key)
            try:
                cert = c.enroll(key, args.subject, dns_names=tuple(args.dns or ()), link=link_choice(args),
                                max_polls=args.max_polls, hints=hints)
            except ValueError as e:  # the server's CSR template asks for what was not given
                raise SystemExit(f"est enroll: {e}") from None
    write_output(args.out, pem_certs([cert]))
    print(f"enrolled: {cert.subject.rfc4514_string()} serial {cert.serial_number:x}", file=sys.stderr)


def cmd_reenroll(args: argparse.Namespace) -> None:
    if not args.cert or not args.key:
        raise SystemExit("est reenroll: --cert and --key (the certificate being renewed) are required")
    current = pemfiles.certificates(args.cert)[0]
    with client_from_args(args) as c:
        key: CertificateIssuerPrivateKeyTypes = pemfiles.signing_key(args.key)
        if args.rekey:
            if not args.key_out:
                raise SystemExit("est reenroll --rekey: --key-out is required for the new key")
            key = new_key(args.key_type or "ec-p256")
            write_key(args.key_out, key)
        try:
            san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = tuple(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            dns = ()
        cert = c.enroll(key, current.subject.rfc4514_string(), dns_names=dns, link=link_choice(args), reenroll=True,
                        max_polls=args.max_polls)
    write_output(args.out, pem_certs([cert]))
    print(f"re-enrolled: {cert.subject.rfc4514_string()} serial {cert.serial_number:x}"
          f" ({'rekey' if args.rekey else 'renewal'})", file=sys.stderr)


def cmd_csrattrs(args: argparse.Namespace) -> None:
    with client_from_args(args) as c:
        hints = c.csrattrs()
    if hints is None:
        print("no CSR attributes (the server asks nothing)")
        return
    print(f"proof-of-possession linking (challengePassword): {'required' if hints.challenge_password else 'no'}")
    print(f"key type: {hints.key_type or 'any'}")
    print(f"signature algorithm: {hints.signature_algorithm or 'any'}")
    if hints.extensions:
        print(f"extensions requested: {', '.join(sorted(hints.extensions))}")
    if hints.template is not None:  # RFC 9908
        t = hints.template
        subject = ", ".join(f"{s.name}={s.value}" if s.value is not None else f"{s.name}=?" for s in t.subject or ())
        print(f"CSR template: subject {subject or 'free'}; key {t.key_type or 'free'}; extensions "
              + (", ".join(f"{e.name}{' (critical)' if e.critical else ''}{'' if e.value is not None else '=?'}"
                           for e in t.extensions) or "none"))
    for oid in hints.oids:
        print(f"oid: {oid}")
    for oid in hints.attributes:
        print(f"attribute: {oid}")


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
    common.add_argument("--digest", action="store_true", help="use HTTP Digest instead of Basic")
    common.add_argument("--tls", choices=("1.2", "1.3"), help="force a TLS version")
    enrolling = argparse.ArgumentParser(add_help=False)
    enrolling.add_argument("--link", action="store_true",
                           help="put this TLS session's channel binding in challengePassword (RFC 7030 3.5)")
    enrolling.add_argument("--no-link", action="store_true", help="never link, whatever /csrattrs says")
    enrolling.add_argument("--max-polls", type=int, default=10,
                           help="how often to follow 202 + Retry-After (manual approval)")
    enrolling.add_argument("-o", "--out", help="write the certificate (PEM) here (default stdout)")

    p = argparse.ArgumentParser(prog="est", description="EST client (RFC 7030, RFC 8951).")
    sub = p.add_subparsers(dest="command", required=True)
    ca = sub.add_parser("cacerts", parents=[common], help="fetch the CA certificates")
    ca.add_argument("-o", "--out", help="write PEM here (default stdout)")
    ca.add_argument("--insecure-bootstrap", action="store_true",
                    help="no anchor: print fingerprints to check out of band (RFC 7030 4.1.1)")
    ca.set_defaults(func=cmd_cacerts)
    en = sub.add_parser("enroll", parents=[common, enrolling], help="enroll: get a certificate for a key")
    en.add_argument("--csr", help="send this CSR (PEM or DER) as is instead of making a key")
    en.add_argument("--subject", help="subject of the CSR to make, e.g. 'CN=device-1'")
    en.add_argument("--dns", action="append", help="subjectAltName DNS name (repeatable)")
    en.add_argument("--key-type", help="ec-p256, ec-p384, rsa2048, rsa3072 ... (default: what /csrattrs asks,"
                                       " else ec-p256)")
    en.add_argument("--key-out", help="where to write the new private key (PEM, 0600)")
    en.set_defaults(func=cmd_enroll)
    re_ = sub.add_parser("reenroll", parents=[common, enrolling],
                         help="renew (same key) or rekey (--rekey) the certificate given with --cert/--key")
    re_.add_argument("--rekey", action="store_true", help="make a new key pair")
    re_.add_argument("--key-type", help="key type of the new key with --rekey (default ec-p256)")
    re_.add_argument("--key-out", help="where --rekey writes the new private key")
    re_.set_defaults(func=cmd_reenroll)
    at = sub.add_parser("csrattrs", parents=[common], help="show what the server asks CSRs to contain")
    at.set_defaults(func=cmd_csrattrs)
    for module in COMMAND_MODULES:
        module.register(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except EnrollmentPending as e:
        print(f"est: still pending after the allowed polls: {e}", file=sys.stderr)
        return 4
    except (EstClientError, TLSError) as e:
        print(f"est: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"est: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
