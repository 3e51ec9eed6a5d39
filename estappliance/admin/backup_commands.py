"""``estctl backup DIR`` and ``estctl restore DIR`` (estappliance.ops.backup)."""
from __future__ import annotations

import argparse

from pathlib import Path

from ..ops.backup import BackupError, backup, restore
from ..progress import Progress
from ..config import Config


def cmd_backup(args: argparse.Namespace, config: Config) -> None:
    dest = Path(args.dir)
    try:
        with Progress() as progress:
            manifest = backup(config, dest, progress)
    except BackupError as e:
        raise SystemExit(f"estctl: {e}") from None
    store = next(f for f in manifest["files"] if f["role"] == "store")
    print(f"backup of {manifest['ca']['subject']} in {dest}: store {store['size']} bytes and "
          f"{len(manifest['files']) - 1} files, listed with their SHA-256 in {dest / 'manifest.json'}")


def cmd_restore(args: argparse.Namespace, config: Config) -> None:
    """Runs without a loaded config: the backup may have to put it back first."""
    try:
        with Progress() as progress:
            restored = restore(Path(args.config), Path(args.dir), progress, force=args.force)
    except BackupError as e:
        raise SystemExit(f"estctl: {e}") from None
    print(f"restored {args.dir} into {restored.store.path.parent} (store {restored.store.path}); start the service")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("backup", help="copy the store (while serving), the configuration and the certificates")
    b.add_argument("dir", help="a new or empty directory")
    b.set_defaults(func=cmd_backup)
    r = sub.add_parser("restore", help="put a backup back, once the token is seen to hold its CA key")
    r.add_argument("dir")
    r.add_argument("--force", action="store_true", help="replace an existing store and differing files")
    r.set_defaults(func=cmd_restore, own_config=True)
