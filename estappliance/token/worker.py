"""The one thread that talks PKCS#11.

SoftHSM2 driven through python-pkcs11 corrupts token objects when two threads
call it at once, so every PKCS#11 call in this process runs on this single
thread. Throughput comes from more processes, not more threads.
"""
from __future__ import annotations

from ..threads import SingleThread

PKCS11_THREAD = SingleThread("pkcs11")
on_token_thread = PKCS11_THREAD.run
