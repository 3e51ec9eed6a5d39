"""``python -m bench``: one benchmark run, or the suite with ``--suite``.

The load and raw-sign processes are spawned, and each imports this module
again (as ``__mp_main__``): its imports are inside ``main`` so that they
load only what they use."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from .options import check_args, parser
    from .run import run_once
    from .suite import run_suite
    from .target import BenchError

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


if __name__ == "__main__":
    sys.exit(main())
