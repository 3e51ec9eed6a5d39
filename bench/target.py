"""What one run benchmarks: the server's port and trust anchor, the EST
client's credentials, and the config naming the token with the CA key."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from estappliance.config import ConfigError, load

from .loadgen import HOST

ENROLL_PATH = "/.well-known/est/simpleenroll"

__all__ = ["ENROLL_PATH", "HOST", "BenchError", "LoadPlan", "Target", "read_password", "target_from_config"]


class BenchError(Exception):
    """The benchmark cannot go on; the message says why. ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    config: Path  # the server's config: its token and CA key, for the raw sign rate
    port: int
    ca_file: str
    key_type: str
    user: str
    password: str
    workers: int  # the server's worker processes (1: a single process), per node
    node_ports: tuple[int, ...] = ()  # with several nodes: each one's port (``port`` is the first)

    def nodes(self) -> list[Target]:
        """One Target per node sharing the store (this one alone without ``node_ports``)."""
        return [replace(self, port=port, node_ports=()) for port in self.node_ports] or [self]


@dataclass(frozen=True)
class LoadPlan:
    target: Target
    clients: int
    seconds: float
    new_connection: bool
    auth: str  # "basic", "cert" or "digest"
    csrs_per_process: int
    timeout: float


def target_from_config(config_path: Path, user: str, password: str) -> Target:
    """Read the port, CA file and key type with the server's own loader."""
    try:
        config = load(config_path)
    except ConfigError as e:
        raise BenchError(f"bad config: {e}", 2) from None
    return Target(config=config_path.resolve(), port=config.server.port, ca_file=str(config.ca.cert_file),
                  key_type=config.ca.key_type, user=user, password=password, workers=config.workers)


def read_password(path: Path) -> str:
    try:
        password = path.read_text().rstrip("\r\n")
    except OSError as e:
        raise BenchError(f"cannot read the password file {path}: {e.strerror}", 2) from None
    if not password:
        raise BenchError(f"the password file {path} is empty", 2)
    return password
