"""``python -m bench.store_copy``: how fast ``estctl store copy``
(estappliance.store.copy) moves a SQLite store of N certificates (shaped
like ``--prefill``'s: bench.state.prefill_records) into PostgreSQL and into
another SQLite file, and how long its verification takes. Prints figures;
asserts nothing.

    .venv/bin/python -m bench.store_copy                      # 100,000 certificates, the tests' throwaway PostgreSQL
    .venv/bin/python -m bench.store_copy --certificates 1000000 --to postgresql://est@/est?host=/run/postgresql

``--to`` must name an empty database (the password, if any, from
``--password-env VAR``); without it a PostgreSQL cluster is started in a
temporary directory (tests/postgres_server.py) and removed at the end.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from estappliance.progress import Progress
    from estappliance.store import Store
    from estappliance.store.copy import copy_store
    from estappliance.store.database import Database
    from estappliance.store.db import open_database
    from estappliance.store.postgres_database import PostgresDatabase

    from .state import prefill_records, store_size

    p = argparse.ArgumentParser(prog="python -m bench.store_copy", description=__doc__.split("\n\n")[0])
    p.add_argument("--certificates", type=int, default=100_000, help="certificates in the store (default 100000)")
    p.add_argument("--to", help="an empty PostgreSQL database's URL (default: a throwaway cluster)")
    p.add_argument("--password-env", metavar="VAR", help="environment variable holding --to's password")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-store-copy-") as tmp:
        path = Path(tmp) / "est.sqlite"
        store = Store(path)
        started = time.perf_counter()
        store.clients.add_client("bench", None, ["default"])
        store.certificates.import_certificates(prefill_records(args.certificates, 0, random.Random(7)))
        store.close()
        print(f"store: {args.certificates} certificates, {store_size(path) / 2**20:.0f} MiB"
              f" (prefilled in {time.perf_counter() - started:.1f} s)", flush=True)

        targets: list[tuple[str, Callable[[], Database]]]
        if args.to is not None:
            password = os.environ.get(args.password_env) if args.password_env else None
            targets = [("PostgreSQL", lambda: PostgresDatabase(args.to, password=password))]
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.postgres_server import shared_server
            url = shared_server().create_database()
            targets = [("PostgreSQL", lambda: open_database(url))]
        targets.append(("SQLite", lambda: open_database(Path(tmp) / "copy.sqlite")))

        for name, connect in targets:
            source, target = open_database(path, read_only=True), connect()
            try:
                with Progress() as progress:
                    report = copy_store(source, target, progress)
            finally:
                source.close()
                target.close()
            verdict = "verified" if not report.differences else f"DIFFERENT: {'; '.join(report.differences)}"
            print(f"copy into {name}: {report.rows} rows in {report.copy_seconds:.1f} s"
                  f" ({report.rows / report.copy_seconds:.0f} rows/s), {verdict} in {report.verify_seconds:.1f} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
