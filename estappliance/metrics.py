"""Prometheus metrics of the serving processes (prometheus_client).

Off until ``enable()``: the service turns them on when the admin listener
serves /metrics. With several workers, prometheus_client's multiprocess mode
keeps each process's values in files under ``PROMETHEUS_MULTIPROC_DIR``
(which the master empties at start and hands down to its workers) and the
master's /metrics sums them. That variable is read when prometheus_client is
imported, so it is imported here only once ``enable()`` has set it.

Everyone may call the ``observe_*`` functions (like ``errors`` and
``threads``, this module sits below every layer); each does nothing while
metrics are off. Figures kept in the store (pending approvals, packages,
CRL dates, expiring certificates) are read at scrape time instead
(ops/storemetrics.py).
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKEN_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

_m: SimpleNamespace | None = None
# Labelled children, found once: labels() validates and locks on every call,
# which doubled the cost of each observation (2 us instead of 4 for a count).
_children: dict[tuple[str, tuple[str, ...]], object] = {}


def _child(name: str, *values: str) -> Any:  # a Counter, Gauge or Histogram child: what name says
    child = _children.get((name, values))
    if child is None:
        child = _children[(name, values)] = getattr(_m, name).labels(*values)
    return child


def enable(multiprocess_dir: Path | None = None) -> None:
    """Create the metrics; with ``multiprocess_dir`` their values go to files there."""
    global _m
    if _m is not None:
        return
    if multiprocess_dir is not None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(multiprocess_dir)
    from prometheus_client import Counter, Histogram

    _m = SimpleNamespace(
        requests=Counter("est_requests", "HTTP requests answered", ["operation", "label", "status"]),
        request_seconds=Histogram("est_request_duration_seconds", "Time from request to answer",
                                  ["operation"], buckets=LATENCY_BUCKETS),
        token_ops=Counter("est_token_operations", "PKCS#11 operations", ["mechanism", "outcome"]),
        token_seconds=Histogram("est_token_operation_seconds", "PKCS#11 operation latency", ["mechanism"],
                                buckets=TOKEN_BUCKETS),
        commit_seconds=Histogram("est_store_commit_seconds", "Store write transactions, lock to durable commit",
                                 buckets=LATENCY_BUCKETS),
        batch_size=Histogram("est_store_commit_batch_size", "Certificates recorded per group commit",
                             buckets=BATCH_BUCKETS),
        issued=Counter("est_certificates_issued", "Certificates issued and recorded", ["label"]),
        handshakes=Counter("est_tls_handshakes", "TLS handshakes completed", ["kind"]),
    )


def enabled() -> bool:
    return _m is not None


def observe_request(operation: str, label: str, status: int, seconds: float) -> None:
    if _m is not None:
        _child("requests", operation, label, str(status)).inc()
        _child("request_seconds", operation).observe(seconds)


def observe_token_op(mechanism: str, seconds: float, ok: bool) -> None:
    if _m is not None:
        _child("token_ops", mechanism, "ok" if ok else "error").inc()
        _child("token_seconds", mechanism).observe(seconds)


def observe_commit(seconds: float) -> None:
    if _m is not None:
        _m.commit_seconds.observe(seconds)


def observe_batch(labels: list[str]) -> None:
    """One group commit that recorded a certificate under each of ``labels``."""
    if _m is not None:
        _m.batch_size.observe(len(labels))
        for label in labels:
            _child("issued", label).inc()


def observe_handshake(resumed: bool) -> None:
    if _m is not None:
        _child("handshakes", "resumed" if resumed else "new").inc()
