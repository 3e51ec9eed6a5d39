"""``estctl store migrate`` (estappliance.store.schema; it also seals the
Digest credentials an older version kept in clear, ca.digest_credentials)
and ``estctl store copy --to URL`` (estappliance.store.copy)."""
from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from pathlib import Path

from ..config import Config, StoreConfig
from ..ca.digest_credentials import SEALED, seal_clear_ha1s
from ..progress import Progress
from ..store import Store
from ..store.copy import CopyError, CopyReport, copy_store
from ..store.db import open_database
from ..store.schema import SCHEMA_VERSION, prepare
from ..token import Token


def cmd_migrate(args: argparse.Namespace, config: Config) -> None:
    """What opening the store with ``migrate`` does, saying which version it found."""
    db = open_database(config.store)
    try:
        found = prepare(db, migrate=True)
    finally:
        db.close()
    where = config.store.where
    if found is None:
        print(f"store {where}: created at version {SCHEMA_VERSION}")
    elif found == SCHEMA_VERSION:
        print(f"store {where}: already at version {SCHEMA_VERSION}")
    else:
        print(f"store {where}: schema version {found} -> {SCHEMA_VERSION}")
    store = Store(config.store)
    try:
        clear = sum(1 for c in store.clients.clients() if any(not v.startswith(SEALED) for v in c.digest_ha1.values()))
        if clear:
            token = Token.from_config(config.token)
            problem = token.policy().sealing_problem()
            if problem is None:
                sealed = seal_clear_ha1s(token, config.ca.key_label, store)
                print(f"store {where}: Digest credentials of {sealed} client(s) sealed by the token")
            else:
                print(f"store {where}: {clear} client(s) keep Digest credentials in clear: the token cannot seal"
                      f" them ({problem}); 'estctl client passwd' removes them (Basic and"
                      " certificates still authenticate)", file=sys.stderr)
    finally:
        store.close()


def target_config(args: argparse.Namespace, config: Config) -> StoreConfig:
    """Where ``--to`` points, as a store's configuration (its password from a file or the environment)."""
    if args.to.startswith(("postgresql://", "postgres://")):
        if urllib.parse.urlsplit(args.to).password:
            raise SystemExit("estctl: no password in the URL (it would show in the process list):"
                             " use --password-file or --password-env")
        if args.password_env and not os.environ.get(args.password_env):
            raise SystemExit(f"estctl: the environment variable {args.password_env} is not set")
        return StoreConfig(path=config.store.path, url=args.to,
                           password_file=Path(args.password_file) if args.password_file else None,
                           password_env=args.password_env)
    if args.password_file or args.password_env:
        raise SystemExit("estctl: a SQLite file takes no password (--password-file/--password-env are for a"
                         " postgresql:// URL)")
    return StoreConfig(path=Path(args.to))


def cmd_copy(args: argparse.Namespace, config: Config) -> None:
    target = target_config(args, config)
    if config.store.url is None and not config.store.path.is_file():
        raise SystemExit(f"estctl: no store at {config.store.path}")
    source = open_database(config.store, read_only=True)
    try:
        destination = open_database(target)
        try:
            with Progress() as progress:
                report = copy_store(source, destination, progress)
        except CopyError as e:
            raise SystemExit(f"estctl: {e}") from None
        finally:
            destination.close()
    finally:
        source.close()
    print_report(report, config.store.where, target.where)
    if report.differences:
        raise SystemExit(f"estctl: the copy differs from the store: {'; '.join(report.differences)}")


def print_report(report: CopyReport, source: str, target: str) -> None:
    print(f"{'table':<24}{'store':>12}{'copy':>12}")
    for count in report.counts:
        print(f"{count.table:<24}{count.source:>12}{count.copy:>12}")
    print(f"certificates SHA-256 over (serial, DER): store {report.source_digest}")
    print(f"                                         copy  {report.copy_digest}")
    rate = report.rows / report.copy_seconds if report.copy_seconds > 0 else 0.0
    verdict = "verified" if not report.differences else "DIFFERENT"
    print(f"copied {report.rows} rows of {source} into {target} in {report.copy_seconds:.1f} s"
          f" ({rate:.0f} rows/s); {verdict} in {report.verify_seconds:.1f} s")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = sub.add_parser("store", help="the store's database").add_subparsers(dest="store_command",
                                                                                 required=True)
    store.add_parser("migrate", help="bring the store to this release's schema version").set_defaults(
        func=cmd_migrate)
    copy = store.add_parser("copy", help="copy the store (while serving) into an empty database, then verify it")
    copy.add_argument("--to", required=True, metavar="URL",
                      help="a postgresql:// URL (TLS as URL parameters) or a SQLite file path")
    password = copy.add_mutually_exclusive_group()
    password.add_argument("--password-file", help="file holding the target database's password")
    password.add_argument("--password-env", metavar="VAR", help="environment variable holding it")
    copy.set_defaults(func=cmd_copy)
