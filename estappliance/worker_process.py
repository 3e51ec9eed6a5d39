"""One worker process (``python -m estappliance.worker_process``), started by the
master in ``worker_pool.py``: serves the connections the master hands it."""
from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType
from typing import cast

from twisted.internet import reactor as _reactor
from twisted.internet.base import ReactorBase
from twisted.logger import Logger

from .config import ConfigError, load
from .handoff import MasterLink, counting_tls_factory
from .ops import worker_setup
from .service import ApplianceService, build, site, tls_factory
from .errors import StoreUnavailable
from .store import SchemaMismatch

# The installed reactor, as the class whose run() takes installSignalHandlers.
reactor = cast(ReactorBase, _reactor)

log = Logger(namespace="estappliance.worker_process")  # not __main__ under python -m


_stopping = False


def _stop(why: str) -> None:
    """Stop once, however many reasons arrive: on a service stop the worker
    gets SIGTERM from the master and, from systemd or a process-group kill,
    another one; Twisted's own handler then called reactor.stop() twice and
    logged a ReactorNotRunning traceback."""
    global _stopping
    if _stopping or not reactor.running:
        return
    _stopping = True
    log.info("worker stopping: {why}", why=why)
    reactor.stop()


def _master_gone() -> None:
    _stop("master gone")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    reactor.callFromThread(_stop, signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="estappliance.worker_process")
    p.add_argument("--config", required=True)
    p.add_argument("--link", type=int, required=True, help="the inherited socket pair end from the master")
    p.add_argument("--family", type=int, required=True, help="address family of the listening socket")
    p.add_argument("--index", type=int, default=0)
    args = p.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until it reloads (ops.worker.operate)
    try:
        config = load(args.config)
        worker_setup.begin(config)
        appliance = build(config, worker_index=args.index)
    except (ConfigError, OSError, ValueError, SchemaMismatch, StoreUnavailable) as e:
        print(f"est worker {args.index}: {e}", file=sys.stderr)
        return 2
    tls = tls_factory(appliance)
    link = MasterLink(args.link, args.family, counting_tls_factory(tls, site(appliance)), _master_gone)
    top = ApplianceService(appliance)
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    link.start()
    worker_setup.operate(config, appliance, link, tls)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
