"""Serving queued packages to their client and taking back what it returns
(RFC 8295 5, 6, 7): /symmetrickeys, /firmware, /tamp and their /return.

Every one of these needs an authenticated client, and a client is only ever
served, or allowed to answer for, its own packages. A GET serves the package
the PAL points at (``packages.next_offer``), recorded as downloaded before the
body leaves; nothing to serve is a 404. Refusals are audited.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Generator

from twisted.internet import defer

from ..errors import EstError, NotFound
from ..distribution import returns
from ..pki import pal_types
from ..store import Store, on_store_thread
from ..store.package_tables import Offer
from .auth import Credentials
from .package_access import Distribution

OPERATIONS = ("symmetrickeys", "firmware", "tamp")
_NOTHING = {
    "symmetrickeys": "no symmetric key package is waiting for this client",
    "firmware": "no firmware package is waiting for this client",
    "tamp": "no TAMP message is waiting for this client",
}


@dataclass(frozen=True)
class Served:
    media_type: str
    body: bytes  # DER
    package_id: int


class PackageDelivery:
    def __init__(self, distribution: Distribution) -> None:
        self.distribution = distribution

    @property
    def store(self) -> Store:
        return self.distribution.store

    @defer.inlineCallbacks
    def fetch(self, operation: str, label_name: str | None, creds: Credentials) -> Generator[defer.Deferred[Any], Any, Served]:
        """Fires with what a GET on ``operation`` serves this client (Served)."""
        label, identity = yield self.distribution.registrar.identify(operation, label_name, creds)
        try:
            offer = yield self.distribution.packages.next_for(identity.name, label.name, pal_types.types_for(operation))
            if offer is None or offer.body is None:
                raise NotFound(_NOTHING[operation])
            yield self.distribution.packages.mark_downloaded(offer.package.id, identity.name)
        except EstError as e:
            yield self.distribution.refused(operation, e, label, creds, identity)
            raise
        return Served(offer.package.media_type or "application/cms", offer.body, offer.package.id)

    @defer.inlineCallbacks
    def take_return(self, operation: str, label_name: str | None, creds: Credentials, body: Callable[[], bytes],
                    media_type: str | None = None) -> Generator[defer.Deferred[Any], Any, int]:
        """Parse, check and record a return on ``operation``/return; fires
        with the id of the package it was for."""
        where = f"{operation}/return"
        label, identity = yield self.distribution.registrar.identify(where, label_name, creds)
        presented = identity.certificate if identity.method == "cert" else None
        try:
            der = body()
            record: Callable[[], Offer]
            if operation == "symmetrickeys":
                record = partial(returns.record_key_package_return, self.store, identity.name, label.name,
                                 returns.parse_key_package_return(der), presented)
            elif operation == "firmware":
                record = partial(returns.record_firmware_report, self.store, identity.name, label.name,
                                 returns.parse_firmware_report(der), presented)
            elif operation == "tamp":
                record = partial(returns.record_tamp_answer, self.store, identity.name, label.name,
                                 returns.parse_tamp_answer(der, media_type), presented)
            else:
                raise NotFound("no such EST operation")
            offer = yield on_store_thread(record)
        except EstError as e:
            yield self.distribution.refused(where, e, label, creds, identity)
            raise
        return offer.package.id


__all__ = ["OPERATIONS", "PackageDelivery", "Served"]
