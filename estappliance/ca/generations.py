"""The CA's generations as a running process sees them: which key signs
now, which older keys still sign their own CRLs, and what /cacerts holds.

The store is the truth (store/generations.py); ``CaWatch`` re-reads it every
few seconds (one small SELECT) and, when a ceremony step changed it, swaps
the signing key, CRL issuers, anchors and TLS certificate in place: no
restart, no dropped connection. A store without generations (a CA made
before them) is one current generation read from the files.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.logger import Logger

from ..config import Config
from ..errors import StoreUnavailable
from ..pki.rollover import key_identifier
from ..store import CrlRecord, Store, on_store_thread
from ..store.generations import Generation
from ..token import Token
from .signer import TokenSigner
from .crl import CrlIssuer

WATCH_SECONDS = 5.0
_log = Logger()


@dataclass
class LiveGeneration:
    record: Generation
    certificate: x509.Certificate | None  # None: a renewal waiting for the parent's answer
    chain: list[x509.Certificate] = field(default_factory=list)
    new_with_old: x509.Certificate | None = None
    old_with_new: x509.Certificate | None = None

    @property
    def state(self) -> str:
        return self.record.state

    @property
    def key_id(self) -> bytes | None:
        return key_identifier(self.certificate) if self.certificate is not None else None


def crl_suffix(config: Config, key_label: str) -> str:
    """The store's CRL kind suffix of a key: none for the configured key (so
    a CA made before generations keeps its CRL numbers)."""
    return "" if key_label == config.ca.key_label else f"@{key_label}"


def certs_pem(data: bytes | None) -> list[x509.Certificate]:
    """Every certificate of a PEM blob (a stored chain); none for None or empty."""
    return x509.load_pem_x509_certificates(data) if data and data.strip() else []


def _der(data: bytes | None) -> x509.Certificate | None:
    return x509.load_der_x509_certificate(data) if data else None


def from_files(config: Config) -> Generation:
    """Generation 1 as the files describe it (a CA made before generations)."""
    cert = x509.load_pem_x509_certificate(config.ca.cert_file.read_bytes())
    chain = config.ca.chain_file.read_bytes() if config.ca.chain_file and config.ca.chain_file.exists() else None
    return Generation(0, config.ca.key_label, config.ca.key_type, "current",
                      cert.public_bytes(serialization.Encoding.DER), chain, None, None, None, "", None, None)


def records(config: Config, store: Store) -> list[Generation]:
    """The recorded generations, or the one the files describe."""
    return store.generations.generations() or [from_files(config)]


def live(found: list[Generation]) -> list[LiveGeneration]:
    """The generations that still matter to a server (not retired or aborted,
    but retired ones for their last CRL), current first."""
    out = []
    for g in found:
        if g.state not in ("next", "current", "retiring", "retired"):
            continue
        out.append(LiveGeneration(g, _der(g.cert), certs_pem(g.chain), _der(g.new_with_old), _der(g.old_with_new)))
    out.sort(key=lambda lg: (lg.state != "current", -lg.record.id))
    return out


def cacerts(gens: list[LiveGeneration]) -> list[x509.Certificate]:
    """/cacerts (RFC 7030 4.1.3): the current CA certificate and its chain
    first; during a root key update also the other root (NewWithNew before
    the switch, OldWithOld after it) and the links NewWithOld and
    OldWithNew (RFC 4210 4.4), until the old key is retired."""
    current = next(g for g in gens if g.state == "current")
    assert current.certificate is not None, "the current generation has its certificate"
    out = [current.certificate, *current.chain]
    # A next generation is published once complete (its links made); a
    # renewal's shows only after its switch.
    others = [g for g in gens if g.certificate is not None
              and (g.state == "retiring" or (g.state == "next" and g.new_with_old is not None))]
    for g in others:
        assert g.certificate is not None  # only published ones are in others
        out.append(g.certificate)
        out.extend(g.chain)
    for g in [current, *others]:
        if g.state == "next" or (g.state == "current" and any(o.state == "retiring" for o in others)):
            out.extend(c for c in (g.new_with_old, g.old_with_new) if c is not None)
    unique: list[x509.Certificate] = []
    for c in out:
        if c not in unique:
            unique.append(c)
    return unique


def anchors(gens: list[LiveGeneration]) -> list[x509.Certificate]:
    """The CA certificates whose issued certificates are still good client
    certificates: the current one and the retiring ones."""
    return [g.certificate for g in gens if g.state in ("current", "retiring") and g.certificate is not None]


def crl_issuers(config: Config, token: Token, store: Store, gens: list[LiveGeneration]) -> list[CrlIssuer]:
    """One CRL issuer per key that issued something, current first; a
    retired key's issuer only serves its last CRL. With one generation it
    lists every revocation (as before generations existed)."""
    several = len([g for g in gens if g.state in ("current", "retiring", "retired")]) > 1
    out = []
    seen = set()
    for g in gens:
        if g.state == "next" or g.certificate is None or g.record.key_label in seen:
            continue
        seen.add(g.record.key_label)
        signer = TokenSigner(token, g.record.key_label) if g.state != "retired" else None
        out.append(CrlIssuer(signer, g.certificate, store, validity_hours=config.crl.validity_hours,
                             key_id=g.key_id if several else None, suffix=crl_suffix(config, g.record.key_label)))
    return out


class CaCrls(CrlIssuer):
    """The CRL issuers of every CA key still answering for certificates.

    Itself the current key's issuer (what getCRL, the schedule and estctl
    mean by "the CRL"; retargeted in place at a switch, so every holder of
    it follows); ``others`` are the retiring and retired keys'.
    ``all_current`` gives every key's, for /crls."""

    def __init__(self, issuers: list[CrlIssuer]) -> None:
        first = issuers[0]
        super().__init__(first.signer, first.issuer, first.store, key_id=first.key_id, suffix=first.suffix)
        self.validity = first.validity
        self.others: list[CrlIssuer] = list(issuers[1:])

    @property
    def issuers(self) -> list[CrlIssuer]:
        return [self, *self.others]

    def set_issuers(self, issuers: list[CrlIssuer]) -> None:
        first = issuers[0]
        self.signer, self.issuer, self.key_id, self.suffix = first.signer, first.issuer, first.key_id, first.suffix
        self.validity = first.validity
        self._signed_by = {}
        self.others = list(issuers[1:])

    @defer.inlineCallbacks
    def all_current(self, kind: str, refresh_before: datetime.timedelta
                    ) -> Generator[defer.Deferred[Any], Any, list[CrlRecord]]:
        """Every key's current CRL (or ARL) that is still in force, current key first."""
        now = datetime.datetime.now(datetime.timezone.utc)
        out: list[CrlRecord] = []
        for issuer in self.issuers:
            record: CrlRecord | None = yield issuer.current(kind, refresh_before)
            if record is not None and (issuer.signer is not None
                                       or datetime.datetime.fromisoformat(record.next_update) > now):
                out.append(record)
        return out


def _file_stamp(paths: list[Path | None]) -> tuple[tuple[int, int, int] | None, ...]:
    out: list[tuple[int, int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p) if p is not None else None
        except OSError:
            st = None
        out.append(None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size))  # files are replaced, not edited
    return tuple(out)


class CaWatch(TimerService):
    """Every ``WATCH_SECONDS``: has a ceremony step changed the generations
    (or rewritten the TLS or content-signer certificate)? Then rebuild the
    CA's view and tell the listeners (anchors, TLS context, content signer).

    With ``follow`` (one process per node): first, at the first check and
    after each change of the generations, bring this node's own files in line
    with them (``ceremony.update_node_files``): the step may have been run
    with estctl on another node, or while this node was down. It fires with
    False while another process of the node is at it (then it is tried again
    at the next check)."""

    def __init__(self, config: Config, token: Token, store: Store, apply: Callable[[list[LiveGeneration]], None],
                 interval: float = WATCH_SECONDS,
                 follow: Callable[[], defer.Deferred[bool]] | None = None) -> None:
        super().__init__(interval, self.check)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.config = config
        self.token = token
        self.store = store
        self.apply = apply
        self.follow = follow
        self.followed: object = None  # the generations the node's files were last brought to
        self.follow_failing = False  # the last follow failed (said once until it works)
        self.stamp: tuple[object, ...] | None = None
        self.store_away = False  # the last check could not reach the store (said once per outage)

    def _stamp(self) -> tuple[object, ...]:
        files = [self.config.server.tls_cert, self.config.ca.signer_cert_file]
        return (self.store.generations.generations_stamp(), _file_stamp(files))

    def prime(self) -> None:
        """Take the present state as seen (blocking: at start-up)."""
        self.stamp = self._stamp()

    @defer.inlineCallbacks
    def check(self) -> Generator[defer.Deferred[Any], Any, bool]:
        try:
            stamp: tuple[object, ...] = yield on_store_thread(self._stamp)
            if self.store_away:
                self.store_away = False
                _log.info("CA generations: the store answers again")
            if self.follow is not None and stamp[0] != self.followed:
                done = yield self._follow()
                if done:
                    self.followed = stamp[0]
                    stamp = yield on_store_thread(self._stamp)  # the files it rewrote
            if stamp == self.stamp:
                return False
            found: list[Generation] = yield on_store_thread(records, self.config, self.store)
            self.apply(live(found))
            self.stamp = stamp
            _log.info("CA generations reloaded: the current key is {label!r}",
                      label=next(g for g in found if g.state == "current").key_label)
            return True
        except StoreUnavailable as e:
            # The database is away (a PostgreSQL restart): no traceback every
            # few seconds; the next check looks again.
            if not self.store_away:
                self.store_away = True
                _log.warn("CA generations not checked while the store is unavailable: {error}", error=e)
            return False
        except Exception:
            _log.failure("could not reload the CA generations")
            return False

    @defer.inlineCallbacks
    def _follow(self) -> Generator[defer.Deferred[Any], Any, bool]:
        assert self.follow is not None
        try:
            done: bool = yield self.follow()
        except Exception as e:  # the token away, a file not writable: said once, tried again next check
            if not self.follow_failing:
                self.follow_failing = True
                _log.warn("this node's CA files could not be brought up to date (tried again every"
                          " {seconds:g} s): {error}", seconds=self.step, error=e)
            return False
        if done and self.follow_failing:
            self.follow_failing = False
            _log.info("this node's CA files are up to date again")
        return done


__all__ = ["CaCrls", "CaWatch", "LiveGeneration", "anchors", "cacerts", "crl_issuers", "crl_suffix", "from_files",
           "live", "records"]
