"""Where the log goes: text (twistd's own, the default) or one JSON object per
event (Twisted's ``jsonFileLogObserver``), and audit events also to syslog.

Audit rows are written by many store modules; a temporary SQLite trigger on
the serving connection sees every one of them as it is inserted and turns it
into a log event in the ``estappliance.audit`` namespace (in the JSON log
too). A row whose transaction is then rolled back (a serial number taken by
another worker) has been logged all the same.
"""
from __future__ import annotations

import logging
import logging.handlers
import socket
import sys
import time
from typing import IO, Any, TypeVar, cast

from twisted.application import service
from twisted.internet import defer, reactor
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import (ILogObserver, Logger, formatEvent, globalLogPublisher, jsonFileLogObserver,
                            textFileLogObserver)
from zope.interface import implementer

from ..store import Store
from ..store.audit_tables import AuditRow, watch
from ..config.operations import LogConfig

AUDIT_NAMESPACE = "estappliance.audit"
audit_log = Logger(namespace=AUDIT_NAMESPACE)
_log = Logger()
T = TypeVar("T")


def _open(config: LogConfig) -> IO[str]:
    if config.file is None:
        return sys.stdout
    config.file.parent.mkdir(parents=True, exist_ok=True)
    return open(config.file, "a", encoding="utf-8", buffering=1)


def file_observer(config: LogConfig) -> ILogObserver | None:
    """The observer ``[log]`` asks for; None: twistd's default (text on stdout or its --logfile)."""
    if config.format == "json":
        # recordSeparator "": one JSON object per line (JSON Lines), as journald and log shippers read it.
        return jsonFileLogObserver(_open(config), recordSeparator="")
    if config.file is not None:
        return textFileLogObserver(_open(config))
    return None


class _SysLogHandler(logging.handlers.SysLogHandler):
    """Reconnects on the next event by itself (stdlib); a failure is logged
    once a minute instead of a traceback on stderr per event."""

    _reported = 0.0

    def handleError(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if now - self._reported >= 60:
            self._reported = now
            _log.warn("syslog unavailable at {address}: audit events go to the service log only until it is back",
                      address=self.address)


@implementer(ILogObserver)
class AuditToSyslog:
    """Forwards audit events to syslog (stdlib SysLogHandler: a Unix socket, /dev/log by default)."""

    def __init__(self, config: LogConfig) -> None:
        address = config.syslog_address
        self.handler = _SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.facility_names[config.syslog_facility],
            socktype=socket.SOCK_DGRAM)
        self.handler.ident = "estappliance: "

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") != AUDIT_NAMESPACE:
            return
        record = logging.LogRecord("estappliance.audit", logging.INFO, "", 0, formatEvent(event), None, None)
        self.handler.emit(record)

    def close(self) -> None:
        self.handler.close()


def watch_audit(store: Store) -> None:
    """Every audit row this connection inserts becomes an ``estappliance.audit`` log event."""
    def emit(row: AuditRow) -> None:
        # On the store thread: the event is published on the reactor thread.
        at, client, label, operation, outcome, detail = row
        cast(IReactorThreads, reactor).callFromThread(
            audit_log.info, "audit {operation} {outcome} client={client} label={label}: {detail}", at=at,
            client=client, label=label, operation=operation, outcome=outcome, detail=detail)
    watch(store.db, emit)


class LoggingSetup(service.MultiService):
    """The top of ``twistd est``'s service tree: gives twistd the ``[log]``
    observer (as a .tac file would, through the application's ILogObserver
    component) and runs the syslog forwarder while the service runs."""

    def __init__(self, config: LogConfig) -> None:
        super().__init__()
        self.config = config
        self._syslog: AuditToSyslog | None = None

    def setServiceParent(self, parent: service.IServiceCollection) -> None:
        super().setServiceParent(parent)
        observer = file_observer(self.config)
        if observer is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, observer)

    def startService(self) -> None:
        if self.config.syslog:
            self._syslog = AuditToSyslog(self.config)
            globalLogPublisher.addObserver(self._syslog)
        super().startService()

    def stopService(self) -> defer.Deferred[None]:
        d = defer.maybeDeferred(super().stopService)

        def stopped(result: T) -> T:
            self._stop_syslog()
            return result
        d.addBoth(stopped)
        return d

    def _stop_syslog(self) -> None:
        if self._syslog is not None:
            globalLogPublisher.removeObserver(self._syslog)
            self._syslog.close()
            self._syslog = None
