"""The tests' PostgreSQL: ``bench/postgres.py``'s throwaway cluster (fsync
off for speed; ``synchronous_commit`` on, so commit semantics are the real
ones), and ``shared_server()``: one cluster per test process, started on
first use and removed at exit; each test takes its own database from it.
"""
from __future__ import annotations

import atexit
import os
import signal
import threading
from types import FrameType
from typing import Callable, Union

from bench.postgres import (SUPERUSER, TLS_USER, PostgresMissing, PostgresServer, _alive,  # noqa: F401 (re-exported)
                            _children_of, _self_signed_tls)

__all__ = ["SUPERUSER", "TLS_USER", "PostgresMissing", "PostgresServer", "shared_server"]


_shared: PostgresServer | None = None
_shared_lock = threading.Lock()
_SignalHandler = Union[Callable[[int, Union[FrameType, None]], object], int, None]


def shared_server() -> PostgresServer:
    """This test process's cluster, started on first use and removed at exit (or on SIGTERM)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            server = PostgresServer(fsync=False)
            server.start()
            _shared = server
            atexit.register(server.destroy)
            if threading.current_thread() is threading.main_thread():
                _stop_on_sigterm(server)
        elif not _shared.running:
            _shared.start()  # a test stopped or killed it
        return _shared


def _stop_on_sigterm(server: PostgresServer) -> None:
    previous: _SignalHandler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        server.destroy()
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    if previous in (signal.SIG_DFL, None) or callable(previous):
        signal.signal(signal.SIGTERM, on_sigterm)
