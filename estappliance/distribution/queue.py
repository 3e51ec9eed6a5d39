"""The package queue as the server uses it: every call runs on the store
thread and returns a Deferred. ``estctl`` calls the same ``Store`` methods
directly (blocking)."""
from __future__ import annotations

from typing import Any, Generator, Iterable

from twisted.internet import defer

from ..store import Store, on_store_thread
from ..store.package_tables import Delivery, Offer, Package


def next_offer(offers: list[Offer]) -> Offer | None:
    """The one package a GET on a PC serves when several are offered: the
    oldest not yet downloaded, else the oldest still waiting for its receipt,
    else the newest (a client fetching again gets the latest)."""
    if not offers:
        return None
    for offer in offers:
        if offer.delivery.downloaded_at is None:
            return offer
    for offer in offers:
        if offer.awaiting_return:
            return offer
    return max(offers, key=lambda o: o.package.id)


class PackageQueue:
    def __init__(self, store: Store) -> None:
        self.store = store

    def queue(self, *, label: str, pal_type: str, target_kind: str, target: str, **kwargs: Any) -> defer.Deferred[Package]:
        """Fires with the queued Package; see ``Store.queue_package`` for the options."""
        return on_store_thread(self.store.packages.queue_package, label=label, pal_type=pal_type, target_kind=target_kind,
                               target=target, **kwargs)

    def offered_to(self, client: str, label: str, pal_types: Iterable[str] | None = None) -> defer.Deferred[list[Offer]]:
        """Fires with the list of Offers ``client`` may fetch under ``label``
        (recording first offers)."""
        types = None if pal_types is None else tuple(pal_types)
        return on_store_thread(self.store.packages.offers, client, label, types)

    @defer.inlineCallbacks
    def next_for(self, client: str, label: str, pal_types: Iterable[str]
                 ) -> Generator[defer.Deferred[Any], Any, Offer | None]:
        """Fires with the Offer a GET on the PC of ``pal_types`` serves, or None."""
        offers = yield self.offered_to(client, label, pal_types)
        return next_offer(offers)

    def mark_downloaded(self, package_id: int, client: str, *, content: bytes | None = None,
                        key_package_id: bytes | None = None) -> defer.Deferred[Delivery]:
        """Record the download before the body is sent; fires with the Delivery."""
        return on_store_thread(self.store.packages.mark_downloaded, package_id, client, content=content,
                               key_package_id=key_package_id)

    def set_delivery_content(self, package_id: int, client: str, content: bytes,
                             key_package_id: bytes | None = None) -> defer.Deferred[None]:
        return on_store_thread(self.store.packages.set_delivery_content, package_id, client, content, key_package_id)

    def find_by_key_package_id(self, client: str, label: str, key_package_id: bytes) -> defer.Deferred[Offer | None]:
        """Fires with the Offer whose RFC 7191 pkgID this is, or None if this
        client was never offered such a package."""
        return on_store_thread(self.store.packages.offer_by_key_package_id, client, label, key_package_id)

    def record_receipt(self, package_id: int, client: str, *, return_der: bytes | None = None) -> defer.Deferred[Delivery]:
        """Fires with the Delivery; fails with NotOffered (400) if the client was never offered it."""
        return on_store_thread(self.store.packages.record_receipt, package_id, client, return_der=return_der)

    def record_error(self, package_id: int, client: str, code: int, *,
                     return_der: bytes | None = None) -> defer.Deferred[Delivery]:
        """Fires with the Delivery; fails with NotOffered (400) if the client was never offered it."""
        return on_store_thread(self.store.packages.record_error, package_id, client, code, return_der=return_der)

    def package(self, package_id: int) -> defer.Deferred[Package | None]:
        return on_store_thread(self.store.packages.package, package_id)


__all__ = ["Delivery", "Offer", "Package", "PackageQueue", "next_offer"]
