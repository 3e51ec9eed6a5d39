"""Persistence (SQLite). Blocking; the service uses it on ``STORE_THREAD``."""
from ..threads import SingleThread
from .db import (AlreadyIssued, AuditEvent, CertificateRecord, ClientRecord, DuplicateClient, DuplicateSerial, PendingRequest, Store,
                 serial_key)
from .crls import CrlRecord

STORE_THREAD = SingleThread("store")
on_store_thread = STORE_THREAD.run

__all__ = ["AlreadyIssued", "CrlRecord", "AuditEvent", "CertificateRecord", "ClientRecord", "DuplicateClient", "DuplicateSerial", "PendingRequest", "Store",
           "on_store_thread", "serial_key", "STORE_THREAD"]
