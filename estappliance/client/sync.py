"""``est sync``: walk the PAL like a device would (RFC 8295 2).

Round after round: fetch the PAL; for every symmetric key, firmware or TAMP
entry not downloaded yet, or downloaded but still owed a receipt (the PAL
lists the return right after it), GET the package, let the ``Device`` check,
decrypt and keep it, and POST the receipt, error or confirm it asks for.
Stops when the PAL offers nothing new, or when a round changes nothing (a
package the device cannot answer for is reported, not fetched forever).
"""
from __future__ import annotations

import argparse

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..pki.pal_format import PalEntry
from ..pki.pal_types import PAL_TYPES
from ..pki.encoding import NotBase64OrDer, decode_body
from ..progress import Progress
from . import pemfiles
from .device import Device, Outcome, load_kek
from .distribution_commands import _first_line, get_pal
from .est import EstClient, EstClientError
from .cli_support import client_from_args

HANDLED = ("symmetrickeys", "firmware", "tamp")
MAX_ROUNDS = 20


@dataclass
class SyncReport:
    outcomes: list[Outcome] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)  # operations whose answer the server took
    refused_returns: list[str] = field(default_factory=list)  # answers the server would not take
    rounds: int = 0


def _work(entries: list[PalEntry]) -> list[tuple[str, bool]]:
    """(operation, return asked) for each entry the device must act on, in PAL order."""
    out = []
    for i, entry in enumerate(entries):
        t = PAL_TYPES.get(entry.type)
        if t is None or t.operation not in HANDLED or t.notification:
            continue
        asked = i + 1 < len(entries) and entries[i + 1].type == t.receipt_type
        if entry.date is None or asked:
            out.append((t.operation, asked))
    return out


def fetch(client: EstClient, operation: str) -> tuple[bytes, str] | None:
    """(DER, Content-Type) of what GET on ``operation`` serves; None on 404."""
    resp = client.request("GET", operation, authenticate=True)
    if resp.status == 404:
        return None
    if resp.status != 200:
        raise EstClientError(f"{operation}: HTTP {resp.status} {_first_line(resp)}", resp.status)
    try:
        return decode_body(resp.body), resp.header("content-type") or ""
    except NotBase64OrDer as e:
        raise EstClientError(f"{operation}: unreadable body: {e}") from None


def post_return(client: EstClient, operation: str, der: bytes, content_type: str) -> None:
    resp = client.request("POST", f"{operation}/return", base64.encodebytes(der), content_type)
    if resp.status != 204:
        raise EstClientError(f"{operation}/return: HTTP {resp.status} {_first_line(resp)}", resp.status)


def sync(client: EstClient, device: Device, *, max_rounds: int = MAX_ROUNDS,
         log: Callable[[str], object] = lambda line: None,
         bars: Progress | None = None) -> SyncReport:
    """``bars``: a bar per PAL round (on a terminal)."""
    report = SyncReport()
    seen: set[bytes] = set()
    bars = bars or Progress(enabled=False)
    for _ in range(max_rounds):
        work = _work(get_pal(client))
        if not work:
            break
        report.rounds += 1
        bar = bars.task(f"PAL round {report.rounds}", total=len(work))
        progress = False
        for operation, asked in work:
            bar.advance()
            got = fetch(client, operation)
            if got is None:
                continue
            der, content_type = got
            fingerprint = hashlib.sha256(der).digest()
            if fingerprint in seen:
                continue  # served again: what could be done with it was done this run
            seen.add(fingerprint)
            progress = True
            outcome = device.handle(operation, der, content_type.split(";")[0].strip())
            report.outcomes.append(outcome)
            log(outcome.summary)
            if outcome.answer is not None and (asked or outcome.requested or not outcome.ok):
                try:
                    post_return(client, operation, outcome.answer, outcome.answer_type)
                except EstClientError as e:
                    report.refused_returns.append(f"{operation}/return: {e}")
                    log(f"  the server refused the answer: {e}")
                    continue
                report.returned.append(operation)
                log(f"  {'receipt' if outcome.ok else 'error'} returned to {operation}/return")
        if not progress:
            break
    return report


def cmd_sync(args: argparse.Namespace) -> None:
    anchors = pemfiles.certificates(args.anchor) if args.anchor else []
    for extra in args.trust or ():
        anchors += pemfiles.certificates(extra)
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None
    cert = None
    if args.cert:
        cert, signing = pemfiles.certificate_and_key(args.cert, args.key)
        if not isinstance(signing, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise EstClientError("the device key must be EC or RSA (it signs answers and opens packages)")
        key = signing
    device = Device(Path(args.state), anchors, key=key, cert=cert,
                    kek=load_kek(args.kek) if args.kek else None,
                    kek_id=bytes.fromhex(args.kek_id) if args.kek_id else None,
                    hw_type=args.hw_type, hw_serial=args.hw_serial.encode() if args.hw_serial else None)
    with client_from_args(args) as c, Progress() as bars:
        report = sync(c, device, max_rounds=args.max_rounds, log=bars.print, bars=bars)
    failed = [o for o in report.outcomes if not o.ok]
    print(f"sync: {len(report.outcomes)} package(s) handled, {len(report.returned)} answer(s) returned,"
          f" {len(failed)} refused, in {report.rounds} round(s)")
    if report.refused_returns:
        raise EstClientError(f"the server refused {len(report.refused_returns)} answer(s): "
                             + "; ".join(report.refused_returns))
    if failed:
        raise EstClientError(f"{len(failed)} package(s) refused; errors were returned to the server")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("sync", parents=[common],
                              help="fetch every offered package (keys, firmware, TAMP), check, keep, answer")
    p.add_argument("--state", required=True, help="directory of the device's keys, firmware and trust anchors")
    p.add_argument("--trust", action="append", help="more trust anchors (PEM), e.g. a firmware vendor's")
    p.add_argument("--kek", help="a KEK registered for this client (hex, or a file of raw bytes)")
    p.add_argument("--kek-id", help="the KEK's identifier (hex)")
    p.add_argument("--hw-type", help="this device's hardware module type OID (firmware and TAMP targets)")
    p.add_argument("--hw-serial", help="this device's hardware serial number")
    p.add_argument("--max-rounds", type=int, default=MAX_ROUNDS, help="stop after this many PAL rounds")
    p.set_defaults(func=cmd_sync)


__all__ = ["SyncReport", "fetch", "post_return", "register", "sync"]
