"""``systemctl reload`` (SIGHUP): re-read the TLS certificate and key and the
label and profile tables, without dropping a connection.

A serving process loads its configuration file again, builds a whole new TLS
context from the files it names (pyOpenSSL will not change a context once
used) and swaps it in for new connections; open connections keep theirs.
The labels and profiles are the Registrar's configuration, read on every
request, so the new tables answer the next request. Anything wrong (the
file does not parse, the key does not match the certificate, the trust
anchors changed, which needs a restart) is logged and the process keeps
serving as before. The master (``[server] workers``) passes SIGHUP on to
every worker.
"""
from __future__ import annotations

import signal
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Union, cast

from OpenSSL import SSL
from twisted.application import service
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

from ..config import ConfigError, load
from ..web.tls import ServerContextFactory, build_context

if TYPE_CHECKING:
    from ..service import Appliance

# What signal.signal() gives back: a handler, SIG_DFL/SIG_IGN, or None.
_Handler = Union[Callable[[int, Union[FrameType, None]], Any], int, None]

log = Logger()


def reload_appliance(appliance: Appliance, tls: ServerContextFactory) -> bool:
    """Apply the configuration file as it is now; True if applied."""
    old = appliance.config
    try:
        new = load(old.path)
    except ConfigError as e:
        log.error("reload refused, still serving the old configuration: {error}", error=e)
        return False
    if new.trust_anchors != old.trust_anchors:
        log.error("reload refused: [trust_anchors] changed, which needs a restart")
        return False
    anchors = appliance.registrar.authenticator.anchors.certificates()
    try:
        context = build_context(new.server.tls_key, new.server.tls_cert, anchors)
    except (OSError, SSL.Error) as e:
        log.error("reload refused, TLS certificate or key unusable ({cert}): {error}",
                  cert=str(new.server.tls_cert), error=e)
        return False
    tls.replace(context)
    appliance.registrar.config = new
    appliance.config = new
    log.info("reloaded {path}: TLS certificate {cert}, labels {labels}", path=str(new.path),
             cert=str(new.server.tls_cert), labels=", ".join(sorted(new.labels)))
    return True


class ReloadOnHangup(service.Service):
    """Calls ``reload()`` on the reactor thread for each SIGHUP while running."""

    def __init__(self, reload: Callable[[], object]) -> None:
        self.reload = reload
        self._previous: _Handler = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._hangup)

    def _hangup(self, signum: int, frame: FrameType | None) -> None:
        cast(IReactorThreads, reactor).callFromThread(self.reload)

    def stopService(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        return super().stopService()
