"""The operator's tables of the config: ``[admin]``, ``[health]``, ``[log]``, ``[metrics]``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LOG_FORMATS = ("text", "json")
SYSLOG_FACILITIES = ("auth", "authpriv", "daemon", "user", "local0", "local1", "local2", "local3", "local4",
                     "local5", "local6", "local7")


@dataclass(frozen=True)
class AdminConfig:
    """The admin listener (plain HTTP, meant for localhost): /healthz, /readyz, /metrics."""

    host: str = "127.0.0.1"
    port: int | None = None  # None: no admin listener


@dataclass(frozen=True)
class HealthConfig:
    margin_hours: int = 1  # the CA certificate and the current CRL must stay valid this long
    cache_seconds: float = 2.0  # a probe result answers /readyz this long
    timeout_seconds: float = 3.0  # a token or store that has not answered by then fails the probe


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"  # "json": one JSON object per event (twisted.logger.jsonFileLogObserver)
    file: Path | None = None  # None: standard output (the journal under systemd)
    # One event per HTTP request (id, peer, client, label, operation, status,
    # duration); default: with the JSON format only (an event costs 66 us as
    # text, 120 us as JSON: 4-7% of an enrollment's CPU).
    requests: bool = False
    syslog: bool = False  # audit events also to syslog
    syslog_address: str = "/dev/log"
    syslog_facility: str = "auth"


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True  # served on the admin listener when there is one
    dir: Path | None = None  # prometheus_client's multiprocess directory (default: <store dir>/metrics)
    store_cache_seconds: float = 10.0  # figures counted in the store are re-read at most this often


@dataclass(frozen=True)
class OpsConfig:
    admin: AdminConfig = field(default_factory=AdminConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


def ops_config(raw: dict, base: Path, store: Path) -> OpsConfig:
    from ..config import ConfigError, _bool, _int, _path

    a = raw.get("admin", {})
    admin = AdminConfig(host=a.get("host", "127.0.0.1"),
                        port=_int(a, "port", 0, "admin") if "port" in a else None)
    h = raw.get("health", {})
    health = HealthConfig(margin_hours=_int(h, "margin_hours", 1, "health"),
                          cache_seconds=_seconds(h, "cache_seconds", 2.0, "health"),
                          timeout_seconds=_seconds(h, "timeout_seconds", 3.0, "health"))
    lg = raw.get("log", {})
    fmt = lg.get("format", "text")
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"[log] format must be one of {', '.join(LOG_FORMATS)}")
    facility = lg.get("syslog_facility", "auth")
    if facility not in SYSLOG_FACILITIES:
        raise ConfigError(f"[log] syslog_facility must be one of {', '.join(SYSLOG_FACILITIES)}")
    log = LogConfig(format=fmt, file=_path(base, lg.get("file")), requests=_bool(lg, "requests", fmt == "json", "log"),
                    syslog=_bool(lg, "syslog", False, "log"), syslog_address=str(lg.get("syslog_address", "/dev/log")),
                    syslog_facility=facility)
    m = raw.get("metrics", {})
    metrics = MetricsConfig(enabled=_bool(m, "enabled", True, "metrics"),
                            dir=_path(base, m.get("dir", str(store.parent / "metrics"))),
                            store_cache_seconds=_seconds(m, "store_cache_seconds", 10.0, "metrics"))
    return OpsConfig(admin=admin, health=health, log=log, metrics=metrics)


def _seconds(table: dict, key: str, default: float, where: str) -> float:
    from ..config import ConfigError

    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"[{where}] {key} must be a positive number of seconds")
    return float(value)
