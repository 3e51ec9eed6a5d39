"""RFC 8295 distribution: the package queue, the PAL, and what serves them.

The package store (for every distributed package type)
-------------------------------------------------------
A package is queued under a CA label for a target: ``("client", name)``,
``("group", name)`` (``estctl group``) or ``("label", label)`` (every client
that may use the label). It has an RFC 8295 PAL type (``pki.pal_types.PAL_TYPES``),
the Content-Type it is served with, and either its ``content`` (DER exactly as
served: already signed/encrypted) or, when the body is built per client at
GET time, a ``size`` to announce and a ``reference`` (e.g. a token key label)
for the module that builds it. ``receipt_requested`` makes the PAL ask for a
receipt or error (types 0023/0025/0027/...) until one comes back;
``key_package_id`` is the RFC 7191 pkgID that receipts and errors name.

Server side (Deferreds; ``appliance.packages`` is a ``PackageQueue``)::

    pkg = yield packages.queue(label=..., pal_type="0024", target_kind="client", target="dev-1",
                               content=None, size=312, reference="sym-key-7", media_type="application/cms; ...",
                               receipt_requested=True, key_package_id=b"...")
    offer = yield packages.next_for(client, label, types_for("symmetrickeys"))  # what a GET serves
    body = offer.body or build_for(client, offer.package)                          # per-client build
    yield packages.mark_downloaded(offer.package.id, client, content=body)        # before sending it
    offer = yield packages.find_by_key_package_id(client, label, pkg_id)          # a return names it
    yield packages.record_receipt(offer.package.id, client, return_der=der)
    yield packages.record_error(offer.package.id, client, code, return_der=der)   # NotOffered -> 400

``Offer`` = (``Package``, this client's ``Delivery``); ``offer.body`` is the
per-client body if one was kept, else the package's content. Blocking
equivalents are the ``Store`` methods of the same names (``queue_package``,
``offers``, ``mark_downloaded``, ``record_receipt``, ``record_error``,
``offer_by_key_package_id``, ``set_delivery_content``, ``package_report``).

Other modules here: ``builder`` (a client's PAL from its packages and the
server's notifications; its entries and formats are ``pki.pal_format``,
its types ``pki.pal_types``), publishing (``*_publishing``) and returns.
"""
from ..store.package_tables import Delivery, NotOffered, Offer, Package, PackageReport, UnknownPackage
from .queue import PackageQueue, next_offer
from ..pki.pal_types import PAL_TYPES, PalType, UnknownPalType, pal_type, types_for

__all__ = ["Delivery", "NotOffered", "Offer", "PAL_TYPES", "Package", "PackageQueue", "PackageReport", "PalType",
           "UnknownPackage", "UnknownPalType", "next_offer", "pal_type", "types_for"]
