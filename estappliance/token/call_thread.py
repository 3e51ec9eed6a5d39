"""The one thread that talks PKCS#11, and the deadline of every call on it.

SoftHSM2 driven through python-pkcs11 corrupts token objects when two threads
call it at once, so every PKCS#11 call in this process runs on this single
thread. Throughput comes from more processes, not more threads.

A call that hangs inside the PKCS#11 library blocks that thread, and nothing
in Python can interrupt it. What a deadline (``[token] call_timeout``) means
here, by design:

* a call not finished ``timeout`` seconds after it was asked for is answered
  ``TokenUnavailable`` (503 + Retry-After) at once; if the thread is still
  inside that very call, the token is marked stuck;
* while it is stuck, every new call is answered ``TokenUnavailable`` without
  being queued (no request waits behind it), and calls already queued are
  skipped when their turn comes if their deadline has passed;
* when the stuck call returns (or raises), its result is dropped, every
  session is closed and the library re-initialised (``session.drop_all``),
  and the next call logs in again: the service recovers by itself.

No second thread is started beside a stuck one: the library would then be
entered by two threads at once, which is exactly what this thread exists to
prevent. A call that never returns therefore leaves this process's token
operations at 503 (everything else keeps working) until the process is
restarted (a worker killed is restarted by the master).
"""
from __future__ import annotations

from typing import Callable

from twisted.python.failure import Failure
from twisted.logger import Logger

from ..errors import TokenUnavailable
from ..threads import DeadlineCalls, SingleThread

log = Logger()


class TokenCalls(DeadlineCalls):
    """Runs token calls on one thread, each answered within ``timeout`` s
    (None: no deadline, for estctl, which blocks anyway)."""

    what = "token call"

    def __init__(self, thread: SingleThread, timeout: float | None = None) -> None:
        super().__init__(thread, TokenUnavailable, timeout)
        self.on_recovered: Callable[[], None] | None = None  # runs on the token thread after a stuck call

    def stuck(self, name: str) -> None:
        log.error("token call {name} has not returned after {timeout} s: the token is marked unavailable"
                  " until it does (then sessions are reopened)", name=name, timeout=self.timeout)

    def stuck_call_returned(self, stuck_for: float) -> None:
        recover = self.on_recovered
        if recover is None:
            self._unstuck(stuck_for)
            return
        # Before any other call: the session the stuck call used is suspect.
        done = self.thread.run(recover)
        done.addCallbacks(lambda _: self._unstuck(stuck_for), self._recover_failed)

    def _unstuck(self, stuck_for: float) -> None:
        self.stuck_since = None
        log.warn("the stuck token call returned after {seconds:.1f} s; sessions reopened, token calls resume",
                 seconds=stuck_for)

    def _recover_failed(self, failure: Failure) -> None:
        self.stuck_since = None
        log.failure("reopening token sessions after a stuck call", failure)


PKCS11_THREAD = SingleThread("pkcs11")
TOKEN_CALLS = TokenCalls(PKCS11_THREAD)
on_token_thread = TOKEN_CALLS.run
