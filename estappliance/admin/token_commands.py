"""``estctl token check``: which appliance features the configured token can
serve, and why not (token/probe.py)."""
from __future__ import annotations

import argparse

from ..token import Token
from ..token.probe import check
from ..config import Config


def cmd_token_check(args: argparse.Namespace, config: Config) -> None:
    token = Token.from_config(config.token)
    report = check(token, config.ca.key_type, config.workers)
    print(f"token {report.token}")
    print(f"module {config.token.module}")
    print(f"mechanisms ({len(report.mechanisms)}): {' '.join(report.mechanisms)}")
    print("\nprobes (session objects only, nothing kept):")
    for what, ok, detail in report.results:
        print(f"  {'ok  ' if ok else 'FAIL'}  {what}: {detail}")
    print("\nfeatures:")
    for f in report.features:
        print(f"  {'yes' if f.ok else 'NO '}  {f.name}: {f.detail}")
    ca = report.features[0]
    if not ca.ok:
        raise SystemExit(f"estctl: the configured CA key type {config.ca.key_type!r} cannot be served: {ca.detail}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser("token", help="the PKCS#11 token").add_subparsers(dest="token_command", required=True)
    c = token.add_parser("check", help="probe the token: mechanisms, key types, wrapping, sessions; which "
                                       "features it can serve and why not")
    c.set_defaults(func=cmd_token_check)
