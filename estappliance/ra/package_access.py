"""Who may see which distributed packages (RFC 8295 2-4).

/pal needs an authenticated client and shows it only its own entries. /crls
and /eecerts need no authentication (RFC 8295 3, 4): an anonymous client gets
the CRLs and the EE certificates queued for the whole label; a client that
authenticates gets its own EE certificates too, and its downloads are
recorded, so that its PAL can date them. Explicit credentials that fail are
refused (401/403) even there; a TLS client certificate we cannot use merely
leaves the client anonymous.
"""
from __future__ import annotations

from typing import Any, Generator

from cryptography import x509
from twisted.internet import defer

from ..config import Label, PalConfig
from ..errors import EstError, NotFound
from ..distribution import PackageQueue
from ..pki import pal_types
from ..distribution.builder import PalBuilder, StandingItems, paginate, peer_certificates
from ..pki.pal_format import PalEntry
from ..store import Store, on_store_thread
from .auth import Credentials, Identity
from .registrar import Registrar


class Distribution:
    def __init__(self, registrar: Registrar, packages: PackageQueue, standing: StandingItems, builder: PalBuilder,
                 settings: PalConfig) -> None:
        self.registrar = registrar
        self.packages = packages
        self.standing = standing
        self.builder = builder
        self.settings = settings

    @property
    def store(self) -> Store:
        return self.registrar.store

    def refused(self, operation: str, error: EstError, label: Label | None, creds: Credentials,
                identity: Identity | None = None) -> defer.Deferred[None]:
        """Audit a refusal (Registrar.refused: the one refusal audit)."""
        return self.registrar.refused(operation, error, label, creds, identity)

    # -- /pal -------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def pal(self, label_name: str | None, creds: Credentials, base: str, page: int = 1) -> Generator[defer.Deferred[Any], Any, list[PalEntry]]:
        """Fires with the entries of one page of the client's PAL."""
        label, identity = yield self.registrar.identify("pal", label_name, creds)
        entries = yield self.builder.entries(identity.name, label, base)
        page_entries: list[PalEntry] = paginate(entries, page, self.settings.max_entries,
                                                lambda n: f"{base}/pal?page={n}")
        return page_entries

    # -- /crls ------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def crls(self, label_name: str | None, creds: Credentials) -> Generator[defer.Deferred[Any], Any, bytes]:
        """Fires with the crls-only DER (current CRL and ARL), recording the
        download for an authenticated client before it is sent."""
        label, identity = yield self.registrar.identify("crls", label_name, creds, anonymous=True)
        body = yield self.standing.crls()
        if identity is not None:
            yield on_store_thread(self.store.packages.record_standing_downloads, identity.name, label.name, body.versions)
        return body.der

    # -- /cacerts (served by the enrollment routes; its downloads are dated here) -----------

    @defer.inlineCallbacks
    def cacerts_served(self, label_name: str | None, creds: Credentials) -> Generator[defer.Deferred[Any], Any, None]:
        """Record that an identifiable client fetched /cacerts (quietly
        nothing for anyone else: /cacerts itself needs no authentication)."""
        if creds.username is None and creds.digest is None and not creds.peer_chain:
            return
        try:
            label = self.registrar.label(label_name)
            identity = yield self.registrar.authenticator.authenticate(creds, label)
        except EstError:
            return
        version = self.standing.cacerts()[1]
        yield on_store_thread(self.store.packages.record_standing_downloads, identity.name, label.name, {"cacerts": version})

    # -- /eecerts ---------------------------------------------------------------------------

    @defer.inlineCallbacks
    def eecerts(self, label_name: str | None, creds: Credentials) -> Generator[defer.Deferred[Any], Any, list[x509.Certificate]]:
        """Fires with the peer EE certificates queued for this client (or, for
        an anonymous one, for the whole label), downloads recorded first."""
        label, identity = yield self.registrar.identify("eecerts", label_name, creds, anonymous=True)
        if identity is None:
            found = yield on_store_thread(self.store.packages.packages, label.name)
            bodies = [p.content for p in found if p.pal_type == pal_types.EE_CERTIFICATE and p.target_kind == "label"]
        else:
            offers = yield self.packages.offered_to(identity.name, label.name, (pal_types.EE_CERTIFICATE,))

            def record() -> None:
                for offer in offers:
                    self.store.packages.mark_downloaded(offer.package.id, identity.name)
            yield on_store_thread(record)
            bodies = [o.body for o in offers]
        if not bodies:
            raise NotFound("no end-entity certificates are queued for this client")
        return peer_certificates(bodies)
