"""``estctl``: the operator's command line. Blocking; no reactor runs here."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes

from ..ca import setup
from ..ca.digest_credentials import seal_ha1s
from ..config import DEFAULT_LABEL, Config, ConfigError, load
from ..errors import StoreUnavailable, TokenUnavailable
from ..http_digest import ha1_all
from ..ra.passwords import hash_password
from ..store import DuplicateClient, SchemaMismatch, Store
from ..token import Token
from . import (backup_commands, ca_commands, cmc_commands, distribution_commands, keygen_commands, package_commands,
               store_commands, token_commands)

if TYPE_CHECKING:
    from cryptography import x509

DEFAULT_CONFIG = os.environ.get("EST_CONFIG", "etc/estappliance.toml")
# Modules adding their own sub-commands: each has register(subparsers); a
# command's func(args, config) runs with the config loaded.
COMMAND_MODULES = (package_commands, keygen_commands, distribution_commands, cmc_commands, token_commands,
                   backup_commands, store_commands)



def _read_password(path: str) -> str:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    password = text.rstrip("\r\n")
    if not password:
        raise SystemExit("estctl: the password file is empty")
    return password


def cmd_init(args: argparse.Namespace, config: Config) -> None:
    token = Token.from_config(config.token)
    store = Store(config.store)
    if args.subordinate:
        if not args.csr_out:
            raise SystemExit("estctl: --subordinate needs --csr-out FILE")
        setup.init_subordinate(config, token, Path(args.csr_out))
        print(f"CA key {config.ca.key_label!r} ({config.ca.key_type}) is in token {config.token.label!r}.")
        print(f"CSR written to {args.csr_out}; have it signed, then run: estctl ca import CERT [--chain FILE]")
        return
    cert = setup.init_root(config, token, store)
    _print_ca(cert, config)


def cmd_ca_import(args: argparse.Namespace, config: Config) -> None:
    from cryptography import x509
    from ..ca import ceremony
    store = Store(config.store)
    if config.ca.cert_file.exists():  # a renewal's answer (estctl ca renew)
        ceremony.import_renewal(config, Token.from_config(config.token), store, Path(args.cert), Path(args.chain) if args.chain else None)
        cert = x509.load_pem_x509_certificate(config.ca.cert_file.read_bytes())
    else:
        cert = setup.import_subordinate(config, Token.from_config(config.token), store, Path(args.cert),
                                        Path(args.chain) if args.chain else None)
    _print_ca(cert, config)


def cmd_ca_show(args: argparse.Namespace, config: Config) -> None:
    from cryptography import x509
    from .ca_commands import print_generations
    if not config.ca.cert_file.exists():
        raise SystemExit("estctl: the CA is not initialised (run 'estctl init')")
    _print_ca(x509.load_pem_x509_certificate(config.ca.cert_file.read_bytes()), config)
    print_generations(config, Store(config.store))


def cmd_ca_signer(args: argparse.Namespace, config: Config) -> None:
    from cryptography import x509
    from ..ca import TokenSigner
    if not config.ca.cert_file.exists():
        raise SystemExit("estctl: the CA is not initialised (run 'estctl init')")
    if config.ca.signer_cert_file is None:
        raise SystemExit("estctl: [ca] signer_cert_file is not set")
    if config.ca.signer_cert_file.exists() and not args.renew:
        raise SystemExit(f"estctl: the content signer exists ({config.ca.signer_cert_file}); --renew replaces it")
    from ..ca.roles import current_key_label
    token = Token.from_config(config.token)
    store = Store(config.store)
    ca_cert = x509.load_pem_x509_certificate(config.ca.cert_file.read_bytes())
    cert = setup.issue_content_signer(config, token, TokenSigner(token, current_key_label(config, store)), ca_cert,
                                      store)
    print(f"content signer: {cert.subject.rfc4514_string()} (key {config.ca.signer_key_label!r} in the token)")


def _print_ca(cert: x509.Certificate, config: Config) -> None:
    from ..ca.generations import records
    current = next(g for g in records(config, Store(config.store)) if g.state == "current")  # after a key update
    print(f"CA: {cert.subject.rfc4514_string()}")
    print(f"  key: {current.key_label!r} in token {config.token.label!r} ({current.key_type})")
    print(f"  valid until {cert.not_valid_after_utc:%Y-%m-%d}")
    print(f"  SHA-256 fingerprint: {cert.fingerprint(hashes.SHA256()).hex(':')}")
    print(f"  certificate: {config.ca.cert_file}")
    print(f"  TLS server certificate: {config.server.tls_cert}")


def _sealed_ha1s(config: Config, name: str, password: str) -> dict[str, str]:
    """The client's Digest H(A1)s as the store keeps them: sealed by the
    token. A token that cannot seal (no AES-GCM) gets none: the client
    authenticates with Basic or a certificate, never with clear H(A1)s."""
    token = Token.from_config(config.token)
    problem = token.policy().sealing_problem()
    if problem is not None:
        print(f"estctl: no Digest credentials for {name!r}: the token cannot seal them ({problem});"
              " Basic and certificates still authenticate it", file=sys.stderr)
        return {}
    return seal_ha1s(token, config.ca.key_label, name, ha1_all(name, config.server.realm, password))


def cmd_client_add(args: argparse.Namespace, config: Config) -> None:
    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    for label in labels:
        if label != "*" and label not in config.labels:
            raise SystemExit(f"estctl: no label {label!r} in {config.path}")
    password = _read_password(args.password_file)
    ha1s = _sealed_ha1s(config, args.name, password)
    try:
        Store(config.store).clients.add_client(args.name, hash_password(password), labels, ha1s)
    except DuplicateClient:
        raise SystemExit(f"estctl: client {args.name!r} already exists") from None
    print(f"client {args.name!r} added (labels: {', '.join(labels)})")


def cmd_client_passwd(args: argparse.Namespace, config: Config) -> None:
    password = _read_password(args.password_file)
    ha1s = _sealed_ha1s(config, args.name, password)
    if not Store(config.store).clients.set_client_password(args.name, hash_password(password), ha1s):
        raise SystemExit(f"estctl: no client {args.name!r}")
    print(f"password of {args.name!r} changed")


def cmd_client_remove(args: argparse.Namespace, config: Config) -> None:
    if not Store(config.store).clients.remove_client(args.name):
        raise SystemExit(f"estctl: no client {args.name!r}")
    print(f"client {args.name!r} removed")


def cmd_client_list(args: argparse.Namespace, config: Config) -> None:
    for c in Store(config.store).clients.clients():
        print(f"{c.name}\tlabels={','.join(c.labels)}\tcreated={c.created_at}")


def cmd_cert_list(args: argparse.Namespace, config: Config) -> None:
    for c in Store(config.store).certificates.certificates(args.client):
        print(f"{c.serial:x}\t{c.status}\t{c.not_after}\t{c.label}\t{c.client or '-'}\t{c.subject}")


REVOCATION_REASONS = ("unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
                      "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise")


def _serial(text: str) -> int:
    try:
        return int(text.replace(":", ""), 16)
    except ValueError:
        raise SystemExit(f"estctl: {text!r} is not a hexadecimal serial number") from None


def cmd_cert_revoke(args: argparse.Namespace, config: Config) -> None:
    record = Store(config.store).certificates.revoke(_serial(args.serial), args.reason)
    if record is None:
        raise SystemExit(f"estctl: no certificate with serial {args.serial}")
    if record.revoked:
        print(f"{record.serial:x} was already revoked ({record.revocation_reason})")
    else:
        print(f"revoked {record.serial:x} ({record.subject}): {args.reason}")


def cmd_crl_issue(args: argparse.Namespace, config: Config) -> None:
    import datetime
    from ..ca.ceremony import new_crl_issuers
    if not config.ca.cert_file.exists():
        raise SystemExit("estctl: the CA is not initialised (run 'estctl init')")
    # Every CA key that still signs CRLs (two while an old key retires), the current one first.
    for issuer in new_crl_issuers(config, Token.from_config(config.token), Store(config.store)):
        issuer.validity = datetime.timedelta(hours=args.hours)
        for kind in (("crl", "arl") if args.both else ("arl",) if args.arl else ("crl",)):
            record = issuer.issue_blocking(kind)
            print(f"{record.kind.upper()} number {record.number} issued, next update {record.next_update}")


def cmd_pending_list(args: argparse.Namespace, config: Config) -> None:
    for p in Store(config.store).certificates.pending_requests(None if args.all else "pending"):
        print(f"{p.id}\t{p.state}\t{p.created_at}\t{p.label}\t{p.client}\t{p.operation}\t{p.subject}")


def _decide(args: argparse.Namespace, config: Config, approve: bool) -> None:
    decided = Store(config.store).certificates.decide_pending(args.id, approve)
    if decided is None:
        raise SystemExit(f"estctl: no pending request {args.id}")
    print(f"request {decided.id} {decided.state}: {decided.subject} for {decided.client}"
          " (delivered when the client asks again)")


def cmd_audit(args: argparse.Namespace, config: Config) -> None:
    for e in reversed(Store(config.store).audit.events(args.limit)):
        print(f"{e.at}\t{e.operation}\t{e.outcome}\t{e.client or '-'}\t{e.label or '-'}\t{e.detail or ''}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="estctl", description="Operate the estappliance CA/RA.")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="path to estappliance.toml")
    sub = p.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="create the CA key in the token and the CA certificate")
    init.add_argument("--subordinate", action="store_true", help="write a CSR for a parent CA instead of a root")
    init.add_argument("--csr-out", help="where --subordinate writes the CSR (PEM)")
    init.set_defaults(func=cmd_init)

    ca = sub.add_parser("ca", help="the CA certificate").add_subparsers(dest="ca_command", required=True)
    imp = ca.add_parser("import", help="install the parent-signed CA certificate")
    imp.add_argument("cert", help="PEM: the CA certificate (may be followed by its chain)")
    imp.add_argument("--chain", help="PEM: the parent CA chain up to its root")
    imp.set_defaults(func=cmd_ca_import)
    ca.add_parser("show", help="print the CA certificate and every CA generation").set_defaults(func=cmd_ca_show)
    ca_commands.register(ca)  # rollover, switch, retire, renew
    sg = ca.add_parser("signer", help="create the CMS content-signer key and certificate (done by init)")
    sg.add_argument("--renew", action="store_true", help="issue a new certificate for it")
    sg.set_defaults(func=cmd_ca_signer)

    client = sub.add_parser("client", help="EST clients (HTTP Basic and Digest)").add_subparsers(dest="client_command",
                                                                                     required=True)
    add = client.add_parser("add", help="add a client with a password")
    add.add_argument("name")
    add.add_argument("--password-file", required=True, help="file holding the password ('-' for stdin)")
    add.add_argument("--labels", default=DEFAULT_LABEL,
                     help=f"comma-separated labels the client may use ('*' for all; default {DEFAULT_LABEL})")
    add.set_defaults(func=cmd_client_add)
    pw = client.add_parser("passwd", help="set a client's password")
    pw.add_argument("name")
    pw.add_argument("--password-file", required=True)
    pw.set_defaults(func=cmd_client_passwd)
    rm = client.add_parser("remove", help="remove a client")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_client_remove)
    client.add_parser("list", help="list clients").set_defaults(func=cmd_client_list)

    cert = sub.add_parser("cert", help="issued certificates").add_subparsers(dest="cert_command", required=True)
    ls = cert.add_parser("list", help="list issued certificates")
    ls.add_argument("--client")
    ls.set_defaults(func=cmd_cert_list)
    rv = cert.add_parser("revoke", help="revoke a certificate")
    rv.add_argument("serial", help="serial number, hexadecimal (as 'cert list' shows it)")
    rv.add_argument("--reason", default="unspecified", choices=REVOCATION_REASONS)
    rv.set_defaults(func=cmd_cert_revoke)

    crl = sub.add_parser("crl", help="certificate revocation lists").add_subparsers(dest="crl_command",
                                                                                  required=True)
    ci = crl.add_parser("issue", help="issue a new CRL (or ARL) signed by the CA key in the token")
    ci.add_argument("--arl", action="store_true", help="the authority revocation list (revoked CA certificates)")
    ci.add_argument("--both", action="store_true", help="issue the CRL and the ARL")
    ci.add_argument("--hours", type=int, default=24, help="hours until nextUpdate (default 24)")
    ci.set_defaults(func=cmd_crl_issue)

    pending = sub.add_parser("pending", help="enrollment requests waiting for approval").add_subparsers(
        dest="pending_command", required=True)
    pl = pending.add_parser("list", help="list waiting requests")
    pl.add_argument("--all", action="store_true", help="include decided and issued requests")
    pl.set_defaults(func=cmd_pending_list)
    for verb, approve in (("approve", True), ("reject", False)):
        d = pending.add_parser(verb, help=f"{verb} a request")
        d.add_argument("id", type=int)
        d.set_defaults(func=lambda args, config, approve=approve: _decide(args, config, approve))

    audit = sub.add_parser("audit", help="show the audit log")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(func=cmd_audit)
    for module in COMMAND_MODULES:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        # own_config: the command reads (or restores) the config itself.
        config = None if getattr(args, "own_config", False) else load(args.config)
        args.func(args, config)
    except (ConfigError, setup.SetupError) as e:
        print(f"estctl: {e}", file=sys.stderr)
        return 2
    except TokenUnavailable as e:
        cause = f" ({e.__cause__!r})" if e.__cause__ else ""
        print(f"estctl: {e.reason}{cause}", file=sys.stderr)
        return 3
    except OSError as e:
        print(f"estctl: {e}", file=sys.stderr)
        return 2
    except (SchemaMismatch, StoreUnavailable) as e:  # an older schema: 'estctl store migrate'
        print(f"estctl: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
