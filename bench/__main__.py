"""``python -m bench``: one benchmark run, or the suite with ``--suite``."""
from __future__ import annotations

import sys

from .options import check_args, parser
from .run import run_once
from .suite import run_suite
from .target import BenchError


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        check_args(args)
        if args.suite:
            return run_suite(args)
        return 0 if run_once(args).enrollments else 1
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # not when a spawned load process imports this module
    sys.exit(main())
