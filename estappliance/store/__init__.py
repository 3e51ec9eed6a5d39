"""Persistence (SQLite). Blocking; the service uses it on ``STORE_THREAD``."""
from ..threads import SingleThread
from .db import (AlreadyIssued, AuditEvent, CertificateRecord, ClientRecord, DuplicateClient, DuplicateSerial, PendingRequest, Store,
                 serial_key)
from .crls import CrlRecord

STORE_THREAD = SingleThread("store")
on_store_thread = STORE_THREAD.run
# Lookups on a Store.reader() connection, so they never wait for a commit.
READ_THREAD = SingleThread("store-read")
on_read_thread = READ_THREAD.run

__all__ = ["AlreadyIssued", "CrlRecord", "AuditEvent", "CertificateRecord", "ClientRecord", "DuplicateClient", "DuplicateSerial", "PendingRequest", "Store",
           "on_store_thread", "on_read_thread", "READ_THREAD", "serial_key", "STORE_THREAD"]
