"""``estctl cmc secret set|remove|list``: the shared secrets clients prove in
CMC requests (identityProofV2, RFC 5272 6.2).

The secret is turned into HMAC keys inside the token and forgotten (see
``ca.identity_proofs``); a client that has one must prove it in every /fullcmc
request that its certificate does not sign. ``--generate`` prints a new
random secret once: hand it to the device out of band.
"""
from __future__ import annotations

import argparse

import base64
import os
import sys
from pathlib import Path

from ..ca import identity_proofs
from ..store import Store
from ..token import Token
from ..config import Config


def _secret(args: argparse.Namespace) -> bytes:
    if args.generate:
        secret = base64.urlsafe_b64encode(os.urandom(24)).rstrip(b"=")
        print(secret.decode())
        return secret
    data = sys.stdin.buffer.read() if args.secret_file == "-" else Path(args.secret_file).read_bytes()
    secret = data.rstrip(b"\r\n")
    if len(secret) < identity_proofs.MIN_SECRET:
        raise SystemExit(f"estctl: a CMC shared secret has at least {identity_proofs.MIN_SECRET} characters")
    return secret


def cmd_secret_set(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    if store.clients.client(args.name) is None:
        raise SystemExit(f"estctl: no client {args.name!r} (estctl client add first)")
    secret = _secret(args)
    identity_proofs.install(Token.from_config(config.token), store, args.name, secret)
    print(f"CMC shared secret of {args.name!r} set: its /fullcmc requests must now carry identityProofV2",
          file=sys.stderr)


def cmd_secret_remove(args: argparse.Namespace, config: Config) -> None:
    if not identity_proofs.remove(Token.from_config(config.token), Store(config.store), args.name):
        raise SystemExit(f"estctl: client {args.name!r} has no CMC shared secret")
    print(f"CMC shared secret of {args.name!r} removed")


def cmd_secret_list(args: argparse.Namespace, config: Config) -> None:
    for client, set_at in Store(config.store).cmc.cmc_secret_clients():
        print(f"{client}\tset={set_at}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmc = sub.add_parser("cmc", help="CMC (/fullcmc) settings of clients").add_subparsers(dest="cmc_command",
                                                                                         required=True)
    secret = cmc.add_parser("secret", help="identity-proof shared secrets (RFC 5272 6.2)").add_subparsers(
        dest="cmc_secret_command", required=True)
    st = secret.add_parser("set", help="give a client a shared secret (kept as HMAC keys in the token)")
    st.add_argument("name", help="the client (estctl client list)")
    how = st.add_mutually_exclusive_group(required=True)
    how.add_argument("--secret-file", help="file holding the secret ('-' for stdin)")
    how.add_argument("--generate", action="store_true", help="make a random secret and print it once")
    st.set_defaults(func=cmd_secret_set)
    rm = secret.add_parser("remove", help="remove a client's shared secret")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_secret_remove)
    secret.add_parser("list", help="clients that have a shared secret").set_defaults(func=cmd_secret_list)


__all__ = ["register"]
