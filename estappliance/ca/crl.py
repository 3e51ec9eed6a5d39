"""CRLs and ARLs signed with the CA key in the token (RFC 5280 5).

The CRL lists revoked end-entity certificates, the ARL revoked CA
certificates (issuingDistributionPoint onlyContainsCACerts). Each carries a
CRL number that only grows, and the authority key identifier.
"""
from __future__ import annotations

import datetime
from typing import Any, Generator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.logger import Logger

from ..pki.certs import issuer_public_key
from ..pki.rollover import authority_key_identifier
from ..store import CrlRecord, Store, on_store_thread
from ..token import on_token_thread
from .lease import LeaseKeeper
from .signer import TokenSigner

_log = Logger()
REASONS = {r.name: r for r in x509.ReasonFlags}
_CAMEL = {"keyCompromise": "key_compromise", "cACompromise": "ca_compromise",
          "affiliationChanged": "affiliation_changed", "superseded": "superseded",
          "cessationOfOperation": "cessation_of_operation", "certificateHold": "certificate_hold",
          "privilegeWithdrawn": "privilege_withdrawn", "aACompromise": "aa_compromise", "unspecified": "unspecified"}


def _reason(name: str | None) -> x509.ReasonFlags | None:
    flag = REASONS.get(_CAMEL.get(name or "", name or ""))
    return None if flag in (None, x509.ReasonFlags.unspecified) else flag


def build_crl(*, issuer: x509.Certificate, number: int, revoked: list[tuple[int, str, str]],
              now: datetime.datetime, next_update: datetime.datetime,
              ca_only: bool) -> x509.CertificateRevocationListBuilder:
    """A CRL builder (pure); ``revoked`` is (serial, revoked_at ISO, reason name)."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(now).next_update(next_update)
               .add_extension(x509.CRLNumber(number), critical=False))
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
    except x509.ExtensionNotFound:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key(issuer)), False)
    if ca_only:
        builder = builder.add_extension(x509.IssuingDistributionPoint(
            full_name=None, relative_name=None, only_contains_user_certs=False, only_contains_ca_certs=True,
            only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False), critical=True)
    for serial, revoked_at, reason in revoked:
        entry = (x509.RevokedCertificateBuilder().serial_number(serial)
                 .revocation_date(datetime.datetime.fromisoformat(revoked_at)))
        flag = _reason(reason)
        if flag is not None:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder


class CrlIssuer:
    """Issues and keeps the current CRL and ARL of one CA key.

    With several CA generations (a rollover), each key has its own CRL and
    ARL (``suffix`` tells their numbers apart in the store) listing only the
    certificates it signed (``key_id``: their authorityKeyIdentifier). A
    retired key (``signer`` None) issues nothing; its last CRL serves on."""

    def __init__(self, signer: TokenSigner | None, issuer: x509.Certificate, store: Store, validity_hours: int = 24,
                 *, key_id: bytes | None = None, suffix: str = "") -> None:
        self.signer = signer
        self.issuer = issuer
        self.store = store
        self.validity = datetime.timedelta(hours=validity_hours)
        self.key_id = key_id
        self.suffix = suffix
        self._signed_by: dict[int, bytes | None] = {}  # serial -> AKI, for the few revoked certificates
        self._lock = defer.DeferredLock()

    def revoked(self, kind: str) -> list[tuple[int, str, str]]:
        """(serial, revoked_at, reason) for this key's CRL or ARL (blocking: a store call)."""
        if self.key_id is None:
            return self.store.crls.revoked_certificates(ca_certificates=kind == "arl")
        out: list[tuple[int, str, str]] = []
        for serial, at, reason, _, der in self.store.generations.revoked_certificates_with_der(ca_certificates=kind == "arl"):
            if serial not in self._signed_by:
                self._signed_by[serial] = authority_key_identifier(x509.load_der_x509_certificate(der))
            if self._signed_by[serial] in (self.key_id, None):
                out.append((serial, at, reason))
        return out

    def issue_blocking(self, kind: str, next_update: datetime.datetime | None = None) -> CrlRecord:
        """Build, sign and record one CRL ('crl') or ARL ('arl'). Blocking:
        for estctl, or on the PKCS#11 thread (the store calls are quick)."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        until = next_update or now + self.validity
        number = self.store.crls.next_crl_number(kind + self.suffix)
        builder = build_crl(issuer=self.issuer, number=number, revoked=self.revoked(kind),
                            now=now, next_update=until, ca_only=kind == "arl")
        assert self.signer is not None, "a retired key issues no CRL"
        crl = self.signer.sign_crl(builder)
        der = crl.public_bytes(serialization.Encoding.DER)
        self.store.crls.record_crl(kind + self.suffix, number, now.isoformat(), until.isoformat(), der)
        return CrlRecord(kind + self.suffix, number, now.isoformat(), until.isoformat(), der)

    @defer.inlineCallbacks
    def issue(self, kind: str) -> Generator[defer.Deferred[Any], Any, CrlRecord]:
        """Fires with the new CrlRecord; signing on the PKCS#11 thread, recording on the store thread."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        number: int = yield on_store_thread(self.store.crls.next_crl_number, kind + self.suffix)
        revoked: list[tuple[int, str, str]] = yield on_store_thread(self.revoked, kind)
        builder = build_crl(issuer=self.issuer, number=number, revoked=revoked, now=now,
                            next_update=now + self.validity, ca_only=kind == "arl")
        assert self.signer is not None, "a retired key issues no CRL"
        crl: x509.CertificateRevocationList = yield on_token_thread(self.signer.sign_crl, builder)
        der = crl.public_bytes(serialization.Encoding.DER)
        record = CrlRecord(kind + self.suffix, number, now.isoformat(), (now + self.validity).isoformat(), der)
        yield on_store_thread(self.store.crls.record_crl, kind + self.suffix, number, record.this_update,
                              record.next_update, der)
        return record

    def current(self, kind: str, refresh_before: datetime.timedelta = datetime.timedelta(hours=1)
                ) -> defer.Deferred[CrlRecord | None]:
        """The latest CRL of that kind, re-issued first if missing, near its
        nextUpdate, or missing a revocation it should list. One at a time:
        two concurrent issues would claim the same CRL number."""
        return self._lock.run(self._current, kind, refresh_before)

    @defer.inlineCallbacks
    def _current(self, kind: str, refresh_before: datetime.timedelta
                 ) -> Generator[defer.Deferred[Any], Any, CrlRecord | None]:
        record: CrlRecord | None = yield on_store_thread(self.store.crls.latest_crl, kind + self.suffix)
        if self.signer is None:
            return record  # a retired key: its last CRL, issued to last
        now = datetime.datetime.now(datetime.timezone.utc)
        stale = record is None or datetime.datetime.fromisoformat(record.next_update) - now < refresh_before
        if not stale and record is not None:
            revoked: list[tuple[int, str, str]] = yield on_store_thread(self.revoked, kind)
            listed = {entry.serial_number for entry in x509.load_der_x509_crl(record.der)}
            stale = any(serial not in listed for serial, _, _ in revoked)
        if stale:
            try:
                record = yield self.issue(kind)
            except Exception:
                # Another process (a worker, estctl) may have taken the number first: use its CRL.
                latest: CrlRecord | None = yield on_store_thread(self.store.crls.latest_crl, kind + self.suffix)
                if latest is not None and (record is None or latest.number > record.number):
                    return latest
                # The token is away: the CRL we have serves until its nextUpdate.
                if record is None or datetime.datetime.fromisoformat(record.next_update) <= now:
                    raise
                _log.warn("could not re-issue the {kind}; number {number} serves until {until}", kind=kind,
                          number=record.number, until=record.next_update)
        return record


class CrlSchedule(TimerService):
    """Keeps the CRL and ARL current: every ``check_minutes`` it re-issues
    whichever is within ``reissue_before`` of its nextUpdate (or missing, or
    missing a revocation). A token outage is logged and retried next time.
    With a ``lease`` (several nodes on one store) it checks only while this
    process holds it (lease.py)."""

    def __init__(self, issuer: CrlIssuer, reissue_before: datetime.timedelta, check_minutes: int,
                 lease: LeaseKeeper | None = None) -> None:
        """``issuer``: a CrlIssuer, or the CaCrls of every CA generation."""
        super().__init__(check_minutes * 60, self.check)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.issuer = issuer
        self.reissue_before = reissue_before
        self.lease = lease

    @defer.inlineCallbacks
    def check(self) -> Generator[defer.Deferred[Any], Any, None]:
        if self.lease is not None and not self.lease.holding:
            return
        for issuer in list(getattr(self.issuer, "issuers", [self.issuer])):
            for kind in ("crl", "arl"):
                try:
                    yield issuer.current(kind, self.reissue_before)
                except Exception:
                    _log.failure("could not re-issue the {kind}", kind=kind)
