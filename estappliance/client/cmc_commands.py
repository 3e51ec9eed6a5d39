"""``est fullcmc enroll|revoke|getcert|getcrl``: CMC Full PKI Requests (RFC 7030 4.3)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import pemfiles
from .cmc import CertRequestSpec, CmcFailed, FullCmcClient
from .est import EstClient, new_key
from .cli_support import client_from_args, link_choice, pem_certs, write_key, write_output

REASONS = ("unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise")
# estctl's reason names to asn1crypto's CRLReason names.
_CRL_REASON = {"unspecified": "unspecified", "keyCompromise": "key_compromise", "cACompromise": "ca_compromise",
               "affiliationChanged": "affiliation_changed", "superseded": "superseded",
               "cessationOfOperation": "cessation_of_operation", "certificateHold": "certificate_hold",
               "privilegeWithdrawn": "privilege_withdrawn", "aACompromise": "aa_compromise"}


def _serial(text: str) -> int:
    try:
        return int(text.replace(":", ""), 16)
    except ValueError:
        raise SystemExit(f"est: {text!r} is not a hexadecimal serial number") from None


def _cmc_client(args: argparse.Namespace, est: EstClient) -> FullCmcClient:
    sign_key = sign_cert = None
    if args.cert and not args.unsigned:
        sign_cert, sign_key = pemfiles.certificate_and_key(args.cert, args.key)
    secret = None
    if args.secret_file:
        secret = Path(args.secret_file).read_bytes().rstrip(b"\r\n")
    anchors = pemfiles.certificates(args.anchor)
    return FullCmcClient(est, anchors, sign_key=sign_key, sign_cert=sign_cert, secret=secret,
                         identification=args.identification, unsigned=args.unsigned)


def _issuer(est: EstClient) -> x509.Name:
    """The issuing CA's name: the first certificate /cacerts gives (RFC 7030 4.1.3)."""
    return est.cacerts()[0].subject


def cmd_enroll(args: argparse.Namespace) -> None:
    renewing = args.renew
    if renewing and not (args.cert and args.key):
        raise SystemExit("est fullcmc enroll --renew: --cert and --key (the certificate being renewed) are required")
    with client_from_args(args) as est:
        client = _cmc_client(args, est)
        if renewing:
            current = client.sign_cert
            assert current is not None  # --renew requires --cert (checked above)
            subject = current.subject.rfc4514_string()
            try:
                dns = tuple(current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                            .get_values_for_type(x509.DNSName))
            except x509.ExtensionNotFound:
                dns = ()
            key = client.sign_key
        else:
            if not args.subject:
                raise SystemExit("est fullcmc enroll: --subject is required (or --renew)")
            subject, dns, key = args.subject, tuple(args.dns or ()), None
        if key is None or args.rekey:
            if not args.key_out:
                raise SystemExit("est fullcmc enroll: --key-out is required for the new key")
            key = new_key(args.key_type or "ec-p256")
            write_key(args.key_out, key)
        link = link_choice(args)
        result = client.enroll([CertRequestSpec(key, subject, dns, crmf=args.crmf)],
                               challenge_password=est.channel_binding() if link else None,
                               max_polls=args.max_polls)
    if 1 not in result.certificates:
        status = result.failures.get(1)
        text = (status.status_string or status.fail_info or status.status) if status else "no certificate"
        raise CmcFailed(f"fullcmc enroll: {text}", None)
    cert = result.certificates[1]
    write_output(args.out, pem_certs([cert]))
    print(f"enrolled: {cert.subject.rfc4514_string()} serial {cert.serial_number:x}", file=sys.stderr)


def cmd_revoke(args: argparse.Namespace) -> None:
    with client_from_args(args) as est:
        client = _cmc_client(args, est)
        status = client.revoke(_issuer(est), _serial(args.serial), _CRL_REASON[args.reason], args.comment)
    print(f"revoked {args.serial} ({args.reason})" + (f": {status.status_string}" if status.status_string else ""))


def cmd_getcert(args: argparse.Namespace) -> None:
    with client_from_args(args) as est:
        client = _cmc_client(args, est)
        cert = client.get_cert(_issuer(est), _serial(args.serial))
    write_output(args.out, pem_certs([cert]))


def cmd_getcrl(args: argparse.Namespace) -> None:
    with client_from_args(args) as est:
        client = _cmc_client(args, est)
        crl = client.get_crl(_issuer(est))
    write_output(args.out, crl.public_bytes(serialization.Encoding.PEM))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    cmcopts = argparse.ArgumentParser(add_help=False)
    cmcopts.add_argument("--secret-file", help="CMC shared secret (identityProofV2, RFC 5272 6.2)")
    cmcopts.add_argument("--identification", help="the client name the shared secret belongs to")
    cmcopts.add_argument("--unsigned", action="store_true",
                         help="send the PKIData unsigned (the label must allow it; TLS authenticates)")
    cmcopts.add_argument("-o", "--out", help="write PEM here (default stdout)")
    p = subparsers.add_parser("fullcmc", help="CMC Full PKI Requests (/fullcmc)")
    sub = p.add_subparsers(dest="fullcmc_command", required=True)

    en = sub.add_parser("enroll", parents=[common, cmcopts],
                        help="ask for a certificate (PKCS#10 or CRMF), or renew/re-key with --renew")
    en.add_argument("--subject", help="subject, e.g. 'CN=device-1'")
    en.add_argument("--dns", action="append", help="subjectAltName DNS name (repeatable)")
    en.add_argument("--key-type", help="ec-p256 (default), ec-p384, rsa2048 ...")
    en.add_argument("--key-out", help="where to write the new private key (PEM, 0600)")
    en.add_argument("--crmf", action="store_true", help="a CRMF request (RFC 4211) instead of a PKCS#10")
    en.add_argument("--renew", action="store_true",
                    help="renew the certificate given with --cert/--key, signing the request with it")
    en.add_argument("--rekey", action="store_true", help="with --renew: a new key pair (written to --key-out)")
    en.add_argument("--link", action="store_true", help="channel binding in challengePassword (RFC 7030 3.5)")
    en.add_argument("--no-link", action="store_true", help=argparse.SUPPRESS)
    en.add_argument("--max-polls", type=int, default=10, help="how often to ask about a pending request")
    en.set_defaults(func=cmd_enroll)

    rv = sub.add_parser("revoke", parents=[common, cmcopts],
                        help="revoke a certificate (signed with --cert/--key, or --unsigned)")
    rv.add_argument("--serial", required=True, help="serial number, hexadecimal")
    rv.add_argument("--reason", default="unspecified", choices=REASONS)
    rv.add_argument("--comment", help="a comment for the CA's records")
    rv.set_defaults(func=cmd_revoke)

    gc = sub.add_parser("getcert", parents=[common, cmcopts], help="fetch a certificate by serial number")
    gc.add_argument("--serial", required=True, help="serial number, hexadecimal")
    gc.set_defaults(func=cmd_getcert)

    gl = sub.add_parser("getcrl", parents=[common, cmcopts], help="fetch the CA's current CRL")
    gl.set_defaults(func=cmd_getcrl)


__all__ = ["register"]
