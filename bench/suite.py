"""The suite: each scenario is one run (``run.run_once``) against a fresh
server, its figures checked against the issues' targets (issue 7: 1-6;
issue 13, the store on PostgreSQL and two nodes: 7-9); then one summary
table and, with ``--plot``, a picture. Nothing is asserted."""
from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass

from estappliance.progress import Progress

from . import plot
from .figures import Figures
from .options import parser
from .run import run_once
from .target import BenchError

COMMAND = ".venv/bin/python -m bench"


@dataclass(frozen=True)
class Check:
    figure: str
    value: float | None
    shown: str  # the value as printed
    target: str
    met: bool | None  # None: no target, or not measured


def check(figure: str, value: float | None, target: str, passes: Callable[[float], bool] | None = None,
          fmt: str = "{:.1f}") -> Check:
    """A figure against its target; without ``passes`` it is only reported."""
    met = None if value is None or passes is None else passes(value)
    return Check(figure, value, "n/a" if value is None else fmt.format(value), target, met)


Done = dict[int, Figures]  # scenario number -> its figures, for the scenarios run so far


def common_checks(f: Figures) -> list[Check]:
    """Every scenario: memory per server process, CPU per enrollment (reported)."""
    return [check("max server RSS MiB", f.rss_max_mib, "< 150", lambda v: v < 150),
            check("server CPU ms/enroll", f.cpu_ms_per_enrollment, "(reported)", fmt="{:.2f}"),
            check("CPU used by others %", f.shares.others * 100 if f.shares else None, "(noise)", fmt="{:.0f}")]


def checks_basic(f: Figures, _: Done) -> list[Check]:
    return [check("enroll/s", f.rate, ">= 1000", lambda v: v >= 1000, "{:.0f}"),
            check("p99 ms", f.p99, "<= 50", lambda v: v <= 50),
            check("starved clients", f.starved, "0", lambda v: v == 0, "{:.0f}")]


def checks_new_connection(f: Figures, _: Done) -> list[Check]:
    return [check("enroll/s", f.rate, ">= 500", lambda v: v >= 500, "{:.0f}"),
            check("p99 ms", f.p99, "(reported)")]


def checks_reported(f: Figures, _: Done) -> list[Check]:
    return [check("enroll/s", f.rate, "(reported; no target given)", fmt="{:.0f}"),
            check("p99 ms", f.p99, "(reported)")]


def checks_rsa(f: Figures, _: Done) -> list[Check]:
    """Against the token's raw rate as one PKCS#11 session signs in a loop.
    The rate of one session per worker in parallel is shown beside it: with
    SoftHSM2 those signatures use the very cores the server needs, so no
    server on this machine could come near it (RSA-3072 costs ~1.9 ms of CPU
    per signature; TLS, HTTP, the CSR check and the store need CPU too)."""
    raw = f.raw
    if raw.one is None:
        return [check("enroll/s", f.rate, ">= 0.9 x raw sign/s (not measured)", fmt="{:.0f}")]
    floor = 0.9 * raw.one
    checks = [check("enroll/s", f.rate, f">= 0.9 x raw {raw.one:.0f} = {floor:.0f}", lambda v: v >= floor, "{:.0f}"),
              check("x raw sign/s, 1 session", f.rate / raw.one, "(the target's ratio)", fmt="{:.2f}")]
    if raw.parallel is not None:
        checks.append(check(f"x raw sign/s, {raw.processes} at once", f.rate / raw.parallel,
                            "(reported; shares the server's cores)", fmt="{:.2f}"))
    return checks


def checks_prefilled(f: Figures, done: Done) -> list[Check]:
    empty = done.get(1)
    if empty is None:
        return [check("enroll/s", f.rate, ">= 0.9 x scenario 1 (did not run)", fmt="{:.0f}")]
    floor = 0.9 * empty.rate
    return [check("enroll/s", f.rate, f">= 0.9 x {empty.rate:.0f} (1) = {floor:.0f}", lambda v: v >= floor, "{:.0f}"),
            check("p99 ms", f.p99, f"(reported; (1) had {empty.p99:.1f})" if empty.p99 else "(reported)")]


def ratio_to(f: Figures, done: Done, number: int, name: str) -> Check:
    """This scenario's enrollments/s as a multiple of scenario ``number``'s (reported)."""
    other = done.get(number)
    if other is None or not other.rate:
        return check(f"x {name} ({number})", None, f"({number} did not run)")
    return check(f"x {name} ({number})", f.rate / other.rate, f"(reported; ({number}) {other.rate:.0f}/s)",
                 fmt="{:.2f}")


def cpu_ratio_to(f: Figures, done: Done, number: int) -> Check:
    """Server CPU per enrollment (the database's included) as a multiple of
    scenario ``number``'s: what the store costs, whoever else used the machine."""
    other = done.get(number)
    mine = f.cpu_ms_per_enrollment
    theirs = other.cpu_ms_per_enrollment if other is not None else None
    return check(f"CPU/enroll x ({number})", mine / theirs if mine is not None and theirs else None,
                 f"(reported; ({number}) {theirs:.2f} ms)" if theirs else f"(reported; ({number}): n/a)", fmt="{:.2f}")


def at_least(f: Figures, done: Done, number: int, factor: float) -> Check:
    """Enrollments/s against ``factor`` x scenario ``number``'s."""
    other = done.get(number)
    if other is None:
        return check("enroll/s", f.rate, f">= {factor:g} x ({number}) (did not run)", fmt="{:.0f}")
    floor = factor * other.rate
    return check("enroll/s", f.rate, f">= {factor:g} x {other.rate:.0f} ({number}) = {floor:.0f}",
                 lambda v: v >= floor, "{:.0f}")


def p99_beside(f: Figures, done: Done, number: int) -> Check:
    other = done.get(number)
    return check("p99 ms", f.p99, f"(reported; ({number}) had {other.p99:.1f})"
                 if other is not None and other.p99 is not None else "(reported)")


# Issue 13: the store on PostgreSQL, several nodes. (1) is the same load on SQLite.

def checks_postgres(f: Figures, done: Done) -> list[Check]:
    """One node on PostgreSQL: at least 0.8 x the same load on SQLite (1)."""
    return [at_least(f, done, 1, 0.8), ratio_to(f, done, 1, "SQLite"), p99_beside(f, done, 1),
            cpu_ratio_to(f, done, 1)]


def checks_two_nodes(f: Figures, done: Done) -> list[Check]:
    """Two nodes on one PostgreSQL: no worse than one node (7); they share this machine's cores."""
    return [at_least(f, done, 7, 1.0), ratio_to(f, done, 1, "SQLite"), p99_beside(f, done, 7),
            check("starved clients", f.starved, "0", lambda v: v == 0, "{:.0f}"), cpu_ratio_to(f, done, 7)]


def checks_postgres_prefilled(f: Figures, done: Done) -> list[Check]:
    """1M certificates on PostgreSQL: within 10% of the empty database (7)."""
    return [at_least(f, done, 7, 0.9), ratio_to(f, done, 1, "SQLite"), p99_beside(f, done, 7),
            cpu_ratio_to(f, done, 7), check("prefill s", f.prefill_seconds, "(reported)")]


@dataclass(frozen=True)
class Scenario:
    number: int
    title: str
    options: tuple[str, ...]  # beyond the options every scenario shares
    checks: Callable[[Figures, Done], list[Check]]


def suite_scenarios(args: argparse.Namespace) -> list[Scenario]:
    prefill = ("--prefill", str(args.suite_prefill)) + (("--state", str(args.state)) if args.state else ())
    return [
        Scenario(1, "P-256, keep-alive, Basic", (), checks_basic),
        Scenario(2, "P-256, new TLS connection per enrollment", ("--new-connection",), checks_new_connection),
        Scenario(3, "P-256, keep-alive, TLS client certificate", ("--auth", "cert"), checks_reported),
        Scenario(4, "RSA-3072 CA, keep-alive, Basic", ("--key-type", "rsa3072"), checks_rsa),
        Scenario(5, f"P-256, keep-alive, Basic, store prefilled ({args.suite_prefill})", prefill,
                 checks_prefilled),
        Scenario(6, "P-256, keep-alive, SHA-256 Digest (nonce counts in the store)", ("--auth", "digest"),
                 checks_reported),
        Scenario(7, "as (1), one node on PostgreSQL", ("--store", "postgresql"), checks_postgres),
        # The two nodes share this machine's cores, as one node's workers do:
        # each gets half of (7)'s workers, so both run as many processes.
        Scenario(8, "as (7), two nodes, half the workers each",
                 ("--store", "postgresql", "--nodes", "2", "--workers", str(max(1, args.workers // 2))),
                 checks_two_nodes),
        Scenario(9, f"as (7), PostgreSQL prefilled ({args.suite_prefill})",
                 ("--store", "postgresql", "--prefill", str(args.suite_prefill)), checks_postgres_prefilled),
    ]


def chosen_scenarios(args: argparse.Namespace) -> list[Scenario]:
    """Every scenario, or those ``--scenarios`` names in its order."""
    every = {s.number: s for s in suite_scenarios(args)}
    if not args.scenarios:
        return list(every.values())
    unknown = [n for n in args.scenarios if n not in every]
    if unknown:
        raise BenchError(f"no scenario {', '.join(map(str, unknown))} (there are 1 to {max(every)})", 2)
    return [every[n] for n in args.scenarios]


def scenario_argv(args: argparse.Namespace, scenario: Scenario) -> list[str]:
    """The command line of one scenario: the suite's shared knobs, then its own."""
    shared = ["--workers", str(args.workers), "--clients", str(args.suite_clients), "--seconds", f"{args.seconds:g}",
              "--processes", str(args.processes), "--raw-seconds", f"{args.raw_seconds:g}"]
    if args.metrics:
        shared.append("--metrics")
    for option in ("timeout", "csr_pool"):  # only when not the default, to keep the line short
        if getattr(args, option) != parser().get_default(option):
            shared += [f"--{option.replace('_', '-')}", f"{getattr(args, option):g}"]
    if args.keep_state:
        shared.append("--keep-state")
    key_type = () if "--key-type" in scenario.options else ("--key-type", "ec-p256")
    return shared + list(key_type) + list(scenario.options)


def summary_lines(rows: list[tuple[Scenario, list[Check] | str]]) -> list[str]:
    head = f"{'scenario':<56} {'figure':<24} {'value':>9}  {'target':<36} verdict"
    lines = ["", "== summary: issue 7 (1-6), issue 13 (7-9) (figures from this machine; nothing is asserted)", head,
             "-" * len(head)]
    for scenario, checks in rows:
        name = f"({scenario.number}) {scenario.title}"
        if isinstance(checks, str):
            lines.append(f"{name:<56} did not run: {checks}")
            continue
        for i, c in enumerate(checks):
            verdict = "-" if c.met is None else ("met" if c.met else "NOT MET")
            lines.append(f"{name if i == 0 else '':<56} {c.figure:<24} {c.shown:>9}  {c.target:<36} {verdict}")
    return lines


def run_suite(args: argparse.Namespace, scenarios: list[Scenario] | None = None) -> int:
    """Run ``scenarios`` (default: all); 0 when every one ran, whatever its figures."""
    ran: list[tuple[Scenario, Figures | str]] = []
    done: Done = {}
    scenarios = chosen_scenarios(args) if scenarios is None else scenarios
    with Progress() as bars:  # on a terminal only
        bar = bars.task("bench scenarios", total=len(scenarios))
        for scenario in scenarios:
            argv = scenario_argv(args, scenario)
            print(f"\n== ({scenario.number}) {scenario.title}\n$ {COMMAND} {shlex.join(argv)}", flush=True)
            try:
                f = run_once(parser().parse_args(argv))
            except BenchError as e:
                print(f"bench: {e}", file=sys.stderr)
                ran.append((scenario, str(e).splitlines()[0]))
                continue
            finally:
                bar.advance()
            done[scenario.number] = f
            ran.append((scenario, f))
    # Checked once all ran: a scenario compared with another may run before it (--scenarios 8,7).
    rows = [(s, f if isinstance(f, str) else s.checks(f, done) + common_checks(f)) for s, f in ran]
    print("\n".join(summary_lines(rows)))
    if args.plot is not None and done:
        plot.write_png(args.plot, [plot.ScenarioFigures(f"({s.number}) {s.title}", done[s.number].rate,
                                                        done[s.number].p50, done[s.number].p90, done[s.number].p99)
                                   for s, _ in rows if s.number in done],
                       f"estappliance bench: {args.suite_clients} clients, {args.workers} workers")
        print(f"figures drawn in {args.plot}")
    return 0 if len(done) == len(rows) else 1
