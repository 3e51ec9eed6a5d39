"""Persistence: SQLite (one file) or PostgreSQL (several nodes), as a core
(database.py) and a repository per concern. Blocking; the service uses it on
``STORE_THREAD`` (writes) and ``READ_THREAD`` (lookups on ``Store.reader()``)."""
from ..threads import SingleThread
from .certificate_tables import AlreadyIssued, CertificateRecord, DuplicateSerial, PendingRequest, serial_key
from .client_tables import ClientRecord, DuplicateClient
from .audit_tables import AuditEvent
from .crls import CrlRecord
from .database import SchemaMismatch
from .db import Store
from .deadline import StoreCalls

STORE_THREAD = SingleThread("store")
# Each call answered within a deadline (deadline.py; set by service.build).
STORE_CALLS = StoreCalls(STORE_THREAD)
on_store_thread = STORE_CALLS.run
# Lookups on a Store.reader() connection, so they never wait for a commit.
READ_THREAD = SingleThread("store-read")
READ_CALLS = StoreCalls(READ_THREAD)
on_read_thread = READ_CALLS.run

__all__ = ["AlreadyIssued", "CrlRecord", "AuditEvent", "CertificateRecord", "ClientRecord", "DuplicateClient",
           "DuplicateSerial", "PendingRequest", "SchemaMismatch", "Store", "on_store_thread", "on_read_thread",
           "READ_CALLS", "READ_THREAD", "serial_key", "STORE_CALLS", "STORE_THREAD"]
