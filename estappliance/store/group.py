"""Certificates issued while a commit is on its way to disk are recorded
together in the next one (batched.py). No certificate is handed out
unrecorded: each caller hears only once its own row is committed."""
from __future__ import annotations

from typing import Any

from twisted.internet import defer

from .. import metrics
from .batched import Batcher
from .db import Store


class GroupCommitter(Batcher[dict[str, Any], None]):
    def __init__(self, store: Store, max_batch: int = 256) -> None:
        super().__init__(store.certificates.record_certificates, max_batch)
        self.store = store

    def record_certificate(self, **item: Any) -> defer.Deferred[None]:
        """Like CertificateTables.record_certificate; fires once the row is committed."""
        return self.submit(item)

    def committed(self, items: list[dict[str, Any]], results: list[None | Exception]) -> None:
        metrics.observe_batch([item["label"] for item, outcome in zip(items, results) if outcome is None])
