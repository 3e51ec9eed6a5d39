"""The operator's parts of a worker process (``estappliance.worker_process``)."""
from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, cast

from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger, globalLogBeginner, globalLogPublisher, textFileLogObserver

from .. import metrics
from ..config import Config
from . import logs
from .reload import reload_appliance

if TYPE_CHECKING:
    from ..handoff import MasterLink
    from ..service import Appliance
    from ..web.tls import ServerContextFactory

log = Logger(namespace="estappliance.worker_process")


def begin(config: Config) -> None:
    """Before the appliance is built: the ``[log]`` observer and the metrics."""
    observer = logs.file_observer(config.ops.log) or textFileLogObserver(sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    if config.ops.metrics.enabled and config.ops.admin.port is not None:
        metrics.enable(config.ops.metrics.dir)  # the master made (and emptied) it


def operate(config: Config, appliance: Appliance, link: MasterLink, tls: ServerContextFactory) -> None:
    """Once serving: audit to syslog, readiness reports to the master's
    /readyz, and SIGHUP reloading (ops/reload.py)."""
    if config.ops.log.syslog:
        globalLogPublisher.addObserver(logs.AuditToSyslog(config.ops.log))
        logs.watch_audit(appliance.store)
    if config.ops.admin.port is not None:
        readiness = appliance.readiness
        assert readiness is not None  # service.build sets it

        def report_once() -> defer.Deferred[None]:
            return readiness.check().addCallbacks(
                lambda r: link.report_readiness(r.as_json()), lambda f: log.failure("readiness probe failed", f))
        report = task.LoopingCall(report_once)
        report.start(config.ops.health.cache_seconds)

    def hangup(signum: int, frame: FrameType | None) -> None:
        cast(IReactorThreads, reactor).callFromThread(reload_appliance, appliance, tls)
    signal.signal(signal.SIGHUP, hangup)
