"""Readiness: can this process issue right now?

/readyz answers from the last probe while it is younger than
``cache_seconds``, so a load balancer polling often costs nothing: a probe
signs once in the token (on the PKCS#11 thread, as every request does),
commits once to the store (on the store thread), and checks that the CA
certificate and the current CRL stay valid for ``margin_hours``. A token or
store that has not answered within ``timeout_seconds`` fails the probe; the
next probe after it answers again passes, so /readyz recovers by itself.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any, Generator, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from twisted.internet import defer, reactor
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..ca import CertificateAuthority
from ..errors import TokenUnavailable
from ..config.operations import HealthConfig
from ..store import CrlRecord, Store, on_store_thread
from ..token import on_token_thread, signature_hash

PROBE_DATA = b"estappliance readiness probe"
log = Logger()
T = TypeVar("T")


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str] = field(default_factory=dict)  # check -> "ok" or a one-line reason

    def as_json(self) -> dict:
        return {"status": "ready" if self.ready else "not ready", "checks": self.checks}


def _sign_probe(ca: CertificateAuthority) -> None:
    """Blocking, on the PKCS#11 thread: one signature with the CA key."""
    key = ca.signer.key()
    algorithm = signature_hash(key.public_key())
    if isinstance(key, rsa.RSAPrivateKey):
        key.sign(PROBE_DATA, padding.PKCS1v15(), algorithm)
    else:
        key.sign(PROBE_DATA, ec.ECDSA(algorithm))


def _store_probe(store: Store) -> CrlRecord | None:
    """Blocking, on the store thread: one commit, then the current CRL."""
    store.audit.probe_commit()
    return store.crls.latest_crl("crl")


class ReadinessProbe:
    def __init__(self, ca: CertificateAuthority, store: Store, settings: HealthConfig) -> None:
        self.ca = ca
        self.store = store
        self.settings = settings
        self._last: Readiness | None = None
        self._at = 0.0
        self._waiting: list[defer.Deferred[Readiness]] = []  # callers of the probe under way

    def check(self) -> defer.Deferred[Readiness]:
        """Fires with a Readiness, fresh or at most ``cache_seconds`` old;
        callers during a probe share it."""
        if self._last is not None and time.monotonic() - self._at < self.settings.cache_seconds:
            return defer.succeed(self._last)
        d: defer.Deferred[Readiness] = defer.Deferred()
        self._waiting.append(d)
        if len(self._waiting) == 1:
            self._probe().addBoth(self._done)
        return d

    def _done(self, result: Readiness | Failure) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)

    @defer.inlineCallbacks
    def _probe(self) -> Generator[defer.Deferred[Any], Any, Readiness]:
        margin = datetime.timedelta(hours=self.settings.margin_hours)
        now = datetime.datetime.now(datetime.timezone.utc)
        token, store = yield defer.DeferredList(
            [self._within(on_token_thread(_sign_probe, self.ca), "token"),
             self._within(on_store_thread(_store_probe, self.store), "store")], consumeErrors=True)
        checks = {"token": "ok" if token[0] else _reason(token[1], "token"),
                  "store": "ok" if store[0] else _reason(store[1], "store")}
        left = self.ca.certificate.not_valid_after_utc - now
        checks["ca"] = "ok" if left >= margin else f"CA certificate ends in {_hours(left)} h"
        if not store[0]:
            checks["crl"] = "unknown: the store did not answer"
        elif store[1] is None:
            checks["crl"] = "no CRL issued yet"
        else:
            left = datetime.datetime.fromisoformat(store[1].next_update) - now
            checks["crl"] = "ok" if left >= margin else f"CRL nextUpdate in {_hours(left)} h"
        result = Readiness(all(v == "ok" for v in checks.values()), checks)
        if self._last is None or result.ready != self._last.ready:  # changes only, not every probe
            if result.ready:
                log.info("ready")
            else:
                log.warn("not ready: {reasons}", reasons="; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"))
        self._last, self._at = result, time.monotonic()
        return result

    def _within(self, d: defer.Deferred[T], what: str) -> defer.Deferred[T]:
        """The work stays queued on its thread; only the waiting stops."""
        outer: defer.Deferred[T] = defer.Deferred()

        def expire() -> None:
            if not outer.called:
                outer.errback(TimeoutError(f"{what} did not answer within {self.settings.timeout_seconds:g} s"))
        timer = reactor.callLater(self.settings.timeout_seconds, expire)

        def fire(result: T | Failure) -> None:
            if timer.active():
                timer.cancel()
            if not outer.called:
                if isinstance(result, Failure):
                    outer.errback(result)
                else:
                    outer.callback(result)
        d.addBoth(fire)
        return outer


def _reason(failure: Failure, what: str) -> str:
    exc = failure.value
    if isinstance(exc, TimeoutError):
        return str(exc)
    if isinstance(exc, TokenUnavailable):
        return "token unavailable"
    return f"{what} failed: {type(exc).__name__}"


def _hours(delta: datetime.timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f}"
