"""Prints ``tests: N passed, M failed`` from a trial log (its last verdict line)."""
from __future__ import annotations

import re
import sys

VERDICT = re.compile(r"^(PASSED|FAILED) \((.*)\)\s*$")


def summarize(text: str) -> tuple[int, int]:
    counts: dict[str, int] = {}
    verdict = None
    for line in text.splitlines():
        m = VERDICT.match(line.strip())
        if m:
            verdict = m
    if verdict is None:
        return 0, 1  # trial did not finish: count the run as failed
    for part in verdict.group(2).split(","):
        name, _, value = part.strip().partition("=")
        if value.isdigit():
            counts[name] = int(value)
    failed = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("unexpectedSuccesses", 0)
    return counts.get("successes", 0), failed


def main(path: str) -> None:
    with open(path, encoding="utf-8", errors="replace") as f:
        passed, failed = summarize(f.read())
    print(f"tests: {passed} passed, {failed} failed")


if __name__ == "__main__":
    main(sys.argv[1])
