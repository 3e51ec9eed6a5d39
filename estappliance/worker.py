"""One worker process (``python -m estappliance.worker``), started by the
master in ``workers.py``: adopts the listening socket and serves it."""
from __future__ import annotations

import argparse
import socket
import sys

from twisted.internet import reactor, stdio
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.protocols.tls import TLSMemoryBIOFactory

from .config import ConfigError, load
from .service import ApplianceService, build, site, tls_factory
from .workers import adopt_fairly

log = Logger()


class _MasterWatch(Protocol):
    """stdin is a pipe from the master: when it closes, the master is gone."""

    def connectionLost(self, reason=None):
        if reactor.running:
            log.info("master gone; worker stopping")
            reactor.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="estappliance.worker")
    p.add_argument("--config", required=True)
    p.add_argument("--fd", type=int, required=True, help="the inherited listening socket")
    p.add_argument("--index", type=int, default=0)
    args = p.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    try:
        config = load(args.config)
        appliance = build(config, worker_index=args.index)
    except (ConfigError, OSError, ValueError) as e:
        print(f"est worker {args.index}: {e}", file=sys.stderr)
        return 2
    probe = socket.socket(fileno=args.fd)
    family = probe.family
    probe.detach()  # only asked for its family; the fd stays open for adoption
    tls = TLSMemoryBIOFactory(tls_factory(appliance), False, site(appliance))
    adopt_fairly(args.fd, family, tls)
    top = ApplianceService(appliance)
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    stdio.StandardIO(_MasterWatch())
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
