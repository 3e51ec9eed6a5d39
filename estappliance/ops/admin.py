"""The admin listener: plain HTTP on ``[admin] host:port`` (localhost by
default) with /healthz, /readyz and /metrics.

With one process it lives in that process and /readyz is its own probe.
With ``[server] workers`` it lives in the master, which holds no token and
no store connection: /readyz sums up the probes the workers report over
their socket pairs (ready while at least one worker serves and none reports
a failure), and /metrics sums the workers' multiprocess files.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from twisted.application import internet, service
from twisted.internet import defer, threads

from ..config import Config, ConfigError
from ..web import health as health_web
from ..web.http import Response
from .health import Readiness


def prepare_metrics_dir(config: Config) -> Path | None:
    """Empty prometheus_client's multiprocess directory (files of an earlier
    run would be summed in) and export it for this process and its workers.
    None when metrics are off."""
    if not (config.ops.metrics.enabled and config.ops.admin.port is not None):
        return None
    path = config.ops.metrics.dir
    if path is None:
        raise ConfigError("[metrics] dir is not set")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    from .. import metrics
    metrics.enable(path)
    return path


def metrics_route(config: Config, path: Path) -> health_web.PlainHandler:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    from .storemetrics import StoreCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    registry.register(StoreCollector(config.store, config.ops.metrics.store_cache_seconds))

    def render(request: object) -> defer.Deferred[Response]:
        # Reading the files and the store blocks: off the reactor thread.
        d = threads.deferToThread(generate_latest, registry)
        return d.addCallback(lambda body: Response(body, CONTENT_TYPE_LATEST.encode(), 200))
    return render


def admin_service(config: Config, readiness: Callable[[], defer.Deferred],
                  metrics_dir: Path | None) -> service.IService | None:
    admin = config.ops.admin
    if admin.port is None:
        return None
    routes = health_web.routes(readiness)
    if metrics_dir is not None:
        routes["metrics"] = metrics_route(config, metrics_dir)
    return internet.TCPServer(admin.port, health_web.admin_site(routes), interface=admin.host)


def workers_readiness(links: Callable[[], list]) -> Callable[[], defer.Deferred]:
    """The master's /readyz from its workers' reports (handoff.WorkerLink)."""
    def check() -> defer.Deferred:
        checks: dict[str, str] = {}
        serving = failing = 0
        for link in links():
            report = link.readiness
            if not link.ready or report is None:
                checks[f"worker {link.index}"] = "starting"
                continue
            ok = report.get("status") == "ready"
            serving += ok
            failing += not ok
            checks[f"worker {link.index}"] = "ok" if ok else "; ".join(
                f"{k}: {v}" for k, v in sorted(report.get("checks", {}).items()) if v != "ok")
        if not serving and not failing:
            checks["workers"] = "no worker has reported yet"
        return defer.succeed(Readiness(serving > 0 and failing == 0, checks))
    return check


def operated(config: Config, top: service.IService, readiness: Callable[[], defer.Deferred],
             metrics_dir: Path | None) -> service.IService:
    """``twistd est``'s service tree with the operator's parts around it:
    the ``[log]`` observers and the admin listener."""
    from .logs import LoggingSetup

    root = LoggingSetup(config.ops.log)
    top.setServiceParent(root)
    admin = admin_service(config, readiness, metrics_dir)
    if admin is not None:
        admin.setServiceParent(root)
    return root
