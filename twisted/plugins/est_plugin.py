"""Registers ``twistd est``; the service itself lives in estappliance.service."""
from twisted.application.service import ServiceMaker

est = ServiceMaker(
    "estappliance",
    "estappliance.service",
    "HSM-backed EST server (RFC 7030, RFC 8951, RFC 8295)",
    "est",
)
