"""One client's PAL under one label (RFC 8295 2.1 and 2.3).

Entries come from four places:

* the standing ones every client gets: /cacerts (0002), the ARL (0004) and
  the CRL (0005), dated when this client last downloaded the current version;
* the server's notifications: a certificate of the client nearing its end
  (0010 DS / 0017 KE re-enrollment, ``iasn`` naming it), an enrollment
  result waiting after an operator's decision (0008/0009, 0011/0012,
  0015/0016, 0018/0019; one at a time, oldest first), fetched with GET on
  /simpleenroll or /simplereenroll (RFC 8295 9), and the receipt owed for a
  server-generated key (0023, /serverkeygen/return);
* the queued packages, dated once downloaded, each followed by the request
  for its receipt or error (0023/0025/0027/...) while one is owed; EE
  certificates (0003) are one entry, as /eecerts serves them all at once;
* past ``max_entries``, the last entry is a 0001 pointer to the next page.

Order (2.3): cacerts and CRLs, csrattrs, enrollment, then symmetric keys,
firmware, TAMP, and EE certificates last; within each, what still needs the
client's action first. Notifications have size 0 and no date.
"""
from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generator, overload

from cryptography import x509
from twisted.internet import defer

from ..config import Label, PalConfig
from ..pki.cms import certs_only
from ..pki.crlsonly import crls_only
from ..store import Store, on_store_thread
from ..pki import pal_types
from ..pki.pal_format import IssuerSerial, PalEntry

if TYPE_CHECKING:
    from ..ca import CertificateAuthority
    from ..ca.crl import CrlIssuer
    from ..store import CrlRecord

UTC = datetime.timezone.utc


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(UTC).replace(microsecond=0)


@overload
def _when(text: str) -> datetime.datetime: ...
@overload
def _when(text: str | None) -> datetime.datetime | None: ...
def _when(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    value = datetime.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- /cacerts and /crls as the PAL sees them ----------------------------------------------

@dataclass(frozen=True)
class CrlsBody:
    der: bytes  # the crls-only SignedData /crls serves
    versions: dict[str, str]  # {"crl": CRL number, "arl": ARL number}


class StandingItems:
    """The current /cacerts and /crls bodies and their versions (what a PAL
    date is compared with). CRLs come from the issuer, re-issued when due."""

    def __init__(self, ca: CertificateAuthority, crl_issuer: CrlIssuer, reissue_before: datetime.timedelta) -> None:
        self.ca = ca
        self.crl_issuer = crl_issuer
        self.reissue_before = reissue_before

    def cacerts(self) -> tuple[bytes, str]:
        der = certs_only(self.ca.ca_certificates())
        return der, hashlib.sha256(der).hexdigest()

    @defer.inlineCallbacks
    def current_crls(self) -> Generator[defer.Deferred[Any], Any, tuple[list[CrlRecord], list[CrlRecord]]]:
        """Fires with (CRL records, ARL records), issuing any that is due:
        one of each per CA key still answering for certificates (a key
        update has two), the current key's first."""
        if hasattr(self.crl_issuer, "all_current"):
            crls = yield self.crl_issuer.all_current("crl", self.reissue_before)
            arls = yield self.crl_issuer.all_current("arl", self.reissue_before)
            return crls, arls
        crl = yield self.crl_issuer.current("crl", self.reissue_before)
        arl = yield self.crl_issuer.current("arl", self.reissue_before)
        return [crl], [arl]

    @defer.inlineCallbacks
    def crls(self) -> Generator[defer.Deferred[Any], Any, CrlsBody]:
        """Fires with the CrlsBody /crls serves: the CRLs, then the ARLs.
        A version names every key's number, so a new one dates the PAL anew."""
        crls, arls = yield self.current_crls()
        return CrlsBody(crls_only([r.der for r in crls] + [r.der for r in arls]),
                        {"crl": ",".join(f"{r.kind}:{r.number}" if r.kind != "crl" else str(r.number) for r in crls),
                         "arl": ",".join(f"{r.kind}:{r.number}" if r.kind != "arl" else str(r.number) for r in arls)})


# -- the builder ----------------------------------------------------------------------------

@dataclass
class _Group:
    tier: int
    waiting: bool  # needs the client's action: not downloaded yet, or something asked of it
    order: tuple
    entries: list[PalEntry] = field(default_factory=list)


@dataclass(frozen=True)
class _Snapshot:
    standing: dict
    offers: list
    expiring: list  # CertificateRecords ending soon (store.certificates.expiring_certificates)
    requests: list
    delivered: dict
    key_packages: list  # server-generated keys (/serverkeygen) delivered to the client


def key_use(key_usage: x509.KeyUsage | tuple[str, ...] | None) -> str:
    """"DS" for a signing certificate (digitalSignature), else "KE" (key establishment)."""
    if key_usage is None:
        return "DS"
    if isinstance(key_usage, x509.KeyUsage):
        return "DS" if key_usage.digital_signature else "KE"
    return "DS" if "digitalSignature" in key_usage else "KE"


class PalBuilder:
    def __init__(self, store: Store, standing: StandingItems, settings: PalConfig,
                 now: Callable[[], datetime.datetime] = _utcnow) -> None:
        self.store = store
        self.standing = standing
        self.settings = settings
        self.now = now

    def _snapshot(self, client: str, label: str) -> _Snapshot:
        """Everything the PAL needs from the store, read in one visit (blocking)."""
        requests = self.store.certificates.client_requests(label, client)
        return _Snapshot(
            standing=self.store.packages.standing_downloads(client, label),
            offers=self.store.packages.offers(client, label),
            expiring=self.store.certificates.expiring_certificates(
                client, label, self.now(), self.now() + datetime.timedelta(days=self.settings.renew_before_days)),
            requests=requests,
            delivered=self.store.packages.delivered_results(r.id for r in requests),
            key_packages=self.store.keygen.key_packages(client),
        )

    @defer.inlineCallbacks
    def entries(self, client: str, label: Label, base: str) -> Generator[defer.Deferred[Any], Any, list[PalEntry]]:
        """Fires with the client's whole PAL (unpaged), ``base`` being
        ``https://host/.well-known/est[/label]``."""
        crls = yield self.standing.crls()
        snap = yield on_store_thread(self._snapshot, client, label.name)
        now = self.now()
        groups = [*self._standing(snap, crls, base), *self._results(snap, label, base),
                  *self._expiring(snap, label, base, now), *self._key_receipts(snap, label, base),
                  *self._packages(snap, base, now)]
        groups.sort(key=lambda g: (g.tier, not g.waiting, g.order))
        return [e for g in groups for e in g.entries]

    def _standing(self, snap: _Snapshot, crls: CrlsBody, base: str) -> list[_Group]:
        cacerts_der, cacerts_version = self.standing.cacerts()
        items = [(pal_types.CA_CERTIFICATES, "cacerts", "cacerts", len(cacerts_der), cacerts_version),
                 (pal_types.ARL, "arl", "crls", len(crls.der), crls.versions["arl"]),
                 (pal_types.CRL, "crl", "crls", len(crls.der), crls.versions["crl"])]
        groups = []
        for n, (code, item, operation, size, version) in enumerate(items):
            seen = snap.standing.get(item)
            date = _when(seen.downloaded_at) if seen is not None and seen.version == version else None
            groups.append(_Group(1, date is None, (n,), [PalEntry(code, size, uri=f"{base}/{operation}", date=date)]))
        return groups

    def _results(self, snap: _Snapshot, label: Label, base: str) -> list[_Group]:
        """The oldest decided enrollment request whose result the client has not fetched."""
        use = key_use(label.profile.key_usage)
        for request in snap.requests:
            waiting = request.state == "approved" or (request.state == "rejected" and request.id not in snap.delivered)
            if not waiting or (request.operation, use) not in pal_types.ENROLLMENT_TYPES:
                continue
            _, success, failure = pal_types.ENROLLMENT_TYPES[(request.operation, use)]
            code = success if request.state == "approved" else failure
            return [_Group(3, True, (0, request.id), [PalEntry(code, 0, uri=f"{base}/{request.operation}")])]
        return []

    def _expiring(self, snap: _Snapshot, label: Label, base: str, now: datetime.datetime) -> list[_Group]:
        """Valid certificates of the client under this label, not yet renewed,
        in their last ``renew_before_days`` (or last third of their life)."""
        groups = []
        for record in snap.expiring:
            not_before, not_after = _when(record.not_before), _when(record.not_after)
            window = min(datetime.timedelta(days=self.settings.renew_before_days), (not_after - not_before) / 3)
            if not (not_after - window <= now < not_after):
                continue
            cert = x509.load_der_x509_certificate(record.der)
            try:
                ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            except x509.ExtensionNotFound:
                ku = None
            start = pal_types.ENROLLMENT_TYPES[("simplereenroll", key_use(ku))][0]
            groups.append(_Group(3, True, (1, record.not_after, record.serial), [PalEntry(
                start, 0, iasn=IssuerSerial(cert.issuer.rfc4514_string(), record.serial))]))
        return groups

    def _key_receipts(self, snap: _Snapshot, label: Label, base: str) -> list[_Group]:
        """0023 for each server-generated key delivered under this label whose
        RFC 7191 receipt was asked for and has not come back."""
        receipt = pal_types.PAL_TYPES["0023"]
        return [_Group(receipt.tier, True, (2, k.created_at), [PalEntry(receipt.code, 0,
                                                                        uri=f"{base}/{receipt.operation}")])
                for k in snap.key_packages
                if k.label == label.name and k.receipt_requested and k.state == "delivered"]

    def _packages(self, snap: _Snapshot, base: str, now: datetime.datetime) -> list[_Group]:
        history = datetime.timedelta(days=self.settings.history_days)
        groups = []
        ee_offers, ee_current = [], False
        for offer in snap.offers:
            delivery = offer.delivery
            last = max(filter(None, (delivery.downloaded_at, delivery.receipt_at, delivery.error_at)), default=None)
            done = delivery.downloaded_at is not None and not offer.awaiting_return
            old = done and last is not None and _when(last) < now - history
            if offer.package.pal_type == pal_types.EE_CERTIFICATE:
                ee_offers.append(offer)  # /eecerts serves them all, old ones too
                ee_current = ee_current or not old
                continue
            if old:
                continue
            t = pal_types.PAL_TYPES[offer.package.pal_type]
            entries = [PalEntry(t.code, 0 if t.notification else offer.size, uri=f"{base}/{t.operation}",
                                date=_when(delivery.downloaded_at))]
            if offer.awaiting_return and t.receipt_type:
                receipt = pal_types.PAL_TYPES[t.receipt_type]
                entries.append(PalEntry(receipt.code, 0, uri=f"{base}/{receipt.operation}"))
            groups.append(_Group(t.tier, not done, (offer.package.id,), entries))
        if ee_current:
            size = len(certs_only(peer_certificates([o.body for o in ee_offers])))
            dates = [_when(o.delivery.downloaded_at) for o in ee_offers]
            known = [d for d in dates if d is not None]
            date = min(known) if len(known) == len(dates) else None
            groups.append(_Group(pal_types.PAL_TYPES[pal_types.EE_CERTIFICATE].tier, date is None, (0,), [
                PalEntry(pal_types.EE_CERTIFICATE, size, uri=f"{base}/eecerts", date=date)]))
        return groups


def peer_certificates(bodies: list[bytes]) -> list[x509.Certificate]:
    """What /eecerts serves for these queued EE certificates: each once, in queue order."""
    certs: list[x509.Certificate] = []
    for der in bodies:
        cert = x509.load_der_x509_certificate(der)
        if cert not in certs:
            certs.append(cert)
    return certs


def paginate(entries: list[PalEntry], page: int, max_entries: int,
             next_uri: Callable[[int], str]) -> list[PalEntry]:
    """Page ``page`` (from 1) of a PAL: at most ``max_entries`` entries, the
    last of them a 0001 pointer when more follow (never the only entry)."""
    if max_entries < 2:
        raise ValueError("a PAL page holds at least two entries")
    start = 0
    for _ in range(page - 1):
        if len(entries) - start <= max_entries:
            return []
        start += max_entries - 1
    rest = entries[start:]
    if len(rest) <= max_entries:
        return rest
    return [*rest[:max_entries - 1], PalEntry(pal_types.NEXT_PAL, 0, uri=next_uri(page + 1))]
