"""A free TCP port on 127.0.0.1 for a server about to start (the tests' and
the benchmark's servers, their PostgreSQL).

Asking the kernel for port 0 hands out a port from its ephemeral range, the
range outgoing connections take their local ports from: between the check
and the server's bind, one of the thousands of connections a test run makes
could take it ("Address already in use"). The port is chosen below that
range instead, where only listeners bind, checked to be free, and handed out
once per process.
"""
from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

LOWEST = 10000
_given: set[int] = set()
_lock = threading.Lock()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    highest = _ephemeral_start() - 1
    with _lock:
        if highest - LOWEST >= 1000:
            for _ in range(500):
                port = random.randint(LOWEST, highest)
                if port not in _given and _bindable(host, port):
                    _given.add(port)
                    return port
        # No room below the ephemeral range (an unusual kernel setting): the kernel's choice.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        _given.add(port)
        return port
