"""``estctl ca rollover | switch | retire | renew`` and the generations
``estctl ca show`` lists (the ceremony itself is ca/ceremony.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ..ca import ceremony
from ..ca.generations import records
from ..config import Config
from ..pki.rollover import key_identifier
from ..store import Store
from ..token import KEY_SPECS, Token



def _store(config: Config) -> Store:
    return Store(config.store)


def print_generations(config: Config, store: Store) -> None:
    for g in records(config, store):
        if g.state == "aborted":
            print(f"generation {g.id}: aborted (key {g.key_label!r} destroyed)")
            continue
        head = f"generation {g.id or 1}: {g.state}, key {g.key_label!r} ({g.key_type})"
        if g.cert is None:
            print(f"{head}, waiting for the parent's certificate" if g.csr else f"{head}, not complete")
            continue
        cert = x509.load_der_x509_certificate(g.cert)
        print(head)
        print(f"  {cert.subject.rfc4514_string()}, issued by {cert.issuer.rfc4514_string()}")
        print(f"  valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d},"
              f" key id {key_identifier(cert).hex()}")
        print(f"  SHA-256 fingerprint: {cert.fingerprint(hashes.SHA256()).hex(':')}")
        if g.new_with_old:
            print("  links: NewWithOld and OldWithNew (RFC 4210 4.4)")
        if g.switched_at:
            print(f"  current since {g.switched_at}")
        if g.retired_at:
            print(f"  retired {g.retired_at}")


def cmd_rollover(args: argparse.Namespace, config: Config) -> None:
    store = _store(config)
    token = Token.from_config(config.token)
    if args.abort:
        g = ceremony.abort(config, token, store)
        print(f"generation {g.id} aborted; its key is destroyed; the CA signs with the current key as before")
        return
    g = ceremony.rollover(config, token, store, key_type=args.key_type)
    print(f"generation {g.id} ready: key {g.key_label!r} ({g.key_type}) in the token, NewWithNew,"
          " NewWithOld and OldWithNew issued; /cacerts carries them.")
    print("next: 'estctl ca switch' (or 'estctl ca rollover --abort')")


def cmd_switch(args: argparse.Namespace, config: Config) -> None:
    g = ceremony.switch(config, Token.from_config(config.token), _store(config))
    print(f"generation {g.id} (key {g.key_label!r}) is current: certificates, CRLs and the TLS server"
          " certificate come from it; running servers follow within seconds.")


def cmd_retire(args: argparse.Namespace, config: Config) -> None:
    done = ceremony.retire(config, Token.from_config(config.token), _store(config))
    for g in done:
        print(f"generation {g.id} retired: last CRL and ARL issued, key {g.key_label!r} destroyed in the token")
    if not done:
        print("left-over keys of retired or aborted generations destroyed")


def cmd_renew(args: argparse.Namespace, config: Config) -> None:
    g = ceremony.renew(config, Token.from_config(config.token), _store(config), Path(args.csr_out), same_key=args.same_key,
                       key_type=args.key_type)
    print(f"generation {g.id}: CSR for key {g.key_label!r} written to {args.csr_out}; have the parent CA sign it,"
          " then: estctl ca import CERT [--chain FILE] (switches to it)")


def register(ca: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ro = ca.add_parser("rollover", help="root key update: new key in the token, NewWithNew and the link certificates")
    ro.add_argument("--key-type", choices=sorted(KEY_SPECS), help="the new key's type (default: the current one's)")
    ro.add_argument("--abort", action="store_true", help="undo a rollover or renewal not yet switched")
    ro.set_defaults(func=cmd_rollover)
    ca.add_parser("switch", help="sign with the new generation from now on").set_defaults(func=cmd_switch)
    ca.add_parser("retire", help="destroy the old key once nothing valid depends on it").set_defaults(
        func=cmd_retire)
    rn = ca.add_parser("renew", help="subordinate CA: a CSR for the parent with a new (or the same) key")
    rn.add_argument("--csr-out", required=True, help="where to write the CSR (PEM)")
    rn.add_argument("--same-key", action="store_true", help="certify the current key again")
    rn.add_argument("--key-type", choices=sorted(KEY_SPECS), help="the new key's type (default: the current one's)")
    rn.set_defaults(func=cmd_renew)
