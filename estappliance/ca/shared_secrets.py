"""Secrets every worker and every node must share: the key of the Digest
nonces' MAC ("digest") and the secret the TLS session-ticket keys are derived
from ("tls-ticket"). Each is 32 random bytes, made by whichever process needs
it first and kept in the store sealed by the token's AES-GCM sealing key, so
every node on the store gets the same value and the store never holds it in
clear.

The one workflow, "get or create the shared secret NAME":

1. the store has it sealed: open it in the token;
2. it has not: seal a new one (or the ``<name>.key`` file an older version
   kept next to the store: imported once, so the Digest nonces already handed
   out stay valid across the upgrade) and add it; the store keeps the first
   writer's (``store.add_sealed_secret``), so nodes racing to make it agree,
   and what it holds is opened as in 1;
3. once the store holds it, a ``<name>.key`` file left next to the store is
   removed: the secret must not stay in clear on disk, and nothing reads it
   any more.

The associated data of the seal is ``shared-secret:NAME``: the sealing key
also seals operator-set PKCS#12 passwords (bound to a client's name), and a
sealed value cannot be moved from one record to another or between the two.

``fetch`` runs the steps on their threads (PKCS#11 on the token thread, SQL
on the store thread) for a running service; ``fetch_blocking`` is for start-up,
before the service serves: SQL on the calling thread (as the rest of
``service.build``), PKCS#11 still on the token thread, waited for.
"""
from __future__ import annotations

import concurrent.futures
import os
import threading
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, cast

from twisted.application import service
from twisted.internet import defer, reactor
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..errors import TokenCannot, TokenUnavailable
from ..store import Store, on_store_thread
from ..token import Token, on_token_thread
from ..token import symmetric
from ..token.call_thread import PKCS11_THREAD, TOKEN_CALLS

log = Logger()

SECRET_SIZE = 32
# How long start-up waits for one token call when [token] call_timeout is unset.
START_TOKEN_WAIT = 30.0
# How often a process that started without its shared secrets (token away) asks again.
RETRY_SECONDS = 30.0

_TOKEN, _STORE = "token", "store"
_Step = tuple[str, Callable[..., Any], tuple[Any, ...]]


def _advance(steps: Generator[_Step, Any, bytes], result: Any) -> _Step | bytes:
    """The next step (where, what, arguments) given the last one's result,
    or the secret once the steps are done (one driver awaits, one blocks)."""
    try:
        return steps.send(result)
    except StopIteration as done:
        value: bytes = done.value
        return value


def sealing_key_label(key_prefix: str) -> str:
    """The token's AES key that seals secrets kept in the store (PKCS#12
    passwords, shared secrets); ``key_prefix`` is the CA key's label."""
    return f"{key_prefix}-skg-sealing"


class SharedSecretUnreadable(ValueError):
    """The store holds the secret, but the token's sealing key does not open it."""


class SharedSecrets:
    def __init__(self, token: Token, store: Store, key_prefix: str, legacy_dir: Path | None = None) -> None:
        """``legacy_dir``: where older versions kept ``<name>.key`` (the SQLite store's directory)."""
        self.token = token
        self.store = store
        self.sealing_label = sealing_key_label(key_prefix)
        self.legacy_dir = legacy_dir

    # -- the workflow, once ------------------------------------------------------------

    def _steps(self, name: str) -> Generator[_Step, Any, bytes]:
        context = b"shared-secret:" + name.encode()
        sealed = yield _STORE, self.store.secrets.sealed_secret, (name,)
        if sealed is None:
            new = (yield _STORE, self._legacy_value, (name,)) or os.urandom(SECRET_SIZE)
            mine = yield _TOKEN, self._seal, (new, context)
            sealed = yield _STORE, self.store.secrets.add_sealed_secret, (name, mine)
        value: bytes = yield _TOKEN, self._open, (name, sealed, context)
        yield _STORE, self._forget_legacy, (name,)
        return value

    def fetch(self, name: str) -> defer.Deferred[bytes]:
        """For a running service: each step on its thread."""
        return defer.ensureDeferred(self._fetch(name))

    async def _fetch(self, name: str) -> bytes:
        steps = self._steps(name)
        step = _advance(steps, None)
        while not isinstance(step, bytes):
            where, fn, args = step
            run = on_token_thread if where == _TOKEN else on_store_thread
            step = _advance(steps, await run(fn, *args))
        return step

    def fetch_blocking(self, name: str) -> bytes:
        """For start-up (before serving) and commands: blocks the calling thread."""
        steps = self._steps(name)
        step = _advance(steps, None)
        while not isinstance(step, bytes):
            where, fn, args = step
            step = _advance(steps, _wait_on_token_thread(fn, *args) if where == _TOKEN else fn(*args))
        return step

    # -- token steps (on the token thread) ---------------------------------------------

    def _seal(self, value: bytes, context: bytes) -> bytes:
        policy = self.token.policy()
        policy.require(policy.sealing_problem(), "shared secrets sealed in the store")
        symmetric.ensure_sealing_key(self.token, self.sealing_label)
        return symmetric.seal(self.token, self.sealing_label, value, context)

    def _open(self, name: str, sealed: bytes, context: bytes) -> bytes:
        if not symmetric.has_secret_key(self.token, self.sealing_label):
            raise SharedSecretUnreadable(
                f"the store holds the shared secret {name!r} sealed, but the token has no key"
                f" {self.sealing_label!r} to open it: the store was sealed by another token")
        try:
            value = symmetric.unseal(self.token, self.sealing_label, sealed, context)
        except ValueError:
            raise SharedSecretUnreadable(
                f"the shared secret {name!r} in the store does not open with the token key"
                f" {self.sealing_label!r}: the store was sealed by another token (or altered)") from None
        if len(value) != SECRET_SIZE:
            raise SharedSecretUnreadable(f"the shared secret {name!r} in the store is not {SECRET_SIZE} bytes")
        return value

    # -- the files of older versions (store steps: the store's directory) --------------

    def _legacy_path(self, name: str) -> Path | None:
        return None if self.legacy_dir is None else self.legacy_dir / f"{name}.key"

    def _legacy_value(self, name: str) -> bytes | None:
        path = self._legacy_path(name)
        if path is None:
            return None
        try:
            value = path.read_bytes()
        except FileNotFoundError:
            return None
        if len(value) != SECRET_SIZE:
            log.warn("{path} is not a {size}-byte key: not imported, a new shared secret is made",
                     path=str(path), size=SECRET_SIZE)
            return None
        log.info("importing {path} into the store (sealed) as the shared secret {name!r}", path=str(path), name=name)
        return value

    def _forget_legacy(self, name: str) -> None:
        path = self._legacy_path(name)
        if path is not None:
            try:
                path.unlink()
            except FileNotFoundError:
                return
            log.info("removed {path}: the store holds the shared secret {name!r} (sealed)", path=str(path), name=name)


def _wait_on_token_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on the token thread, in turn with every other token call
    of this process, waited for here (a token call never runs on another
    thread); TokenUnavailable if it does not finish in time."""
    if threading.current_thread().name == PKCS11_THREAD.name:
        return fn(*args)  # already there (estctl's in-process calls)
    if TOKEN_CALLS.stuck_since is not None:
        raise TokenUnavailable("a token call has not returned")
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def call() -> None:
        try:
            done.set_result(fn(*args))
        except BaseException as e:  # handed to the waiting thread
            done.set_exception(e)
    PKCS11_THREAD.run(call)
    try:
        return done.result(timeout=TOKEN_CALLS.timeout or START_TOKEN_WAIT)
    except concurrent.futures.TimeoutError:
        raise TokenUnavailable("the token did not answer in time") from None


def fetch_at_start(secrets: SharedSecrets, names: Iterable[str]) -> tuple[dict[str, bytes], list[str]]:
    """The shared secrets ``names`` for a process about to serve, and the
    names to ask for again later (``FetchLater``): those the token cannot
    give now because it is away. Each one missing is warned about: the
    process serves meanwhile with a key of its own, which other processes do
    not know (a Digest nonce is good only here, a TLS session resumes only
    here). A token that cannot seal at all (no AES-GCM) stays so."""
    found: dict[str, bytes] = {}
    later: list[str] = []
    for name in names:
        try:
            found[name] = secrets.fetch_blocking(name)
        except TokenUnavailable as e:
            later.append(name)
            log.warn("shared secret {name!r} not available at start ({error}): this process uses a key of its"
                     " own until the token answers", name=name, error=str(e))
        except TokenCannot as e:
            log.warn("shared secret {name!r} cannot be kept ({error}): this process uses a key of its own",
                     name=name, error=str(e))
    return found, later


class FetchLater(service.Service):
    """Asks every ``RETRY_SECONDS`` for the shared secrets a process started
    without, and hands each, once had, to its user (``wanted``: name ->
    callable taking the secret)."""

    def __init__(self, secrets: SharedSecrets, wanted: dict[str, Callable[[bytes], None]],
                 every: float = RETRY_SECONDS, clock: IReactorTime | None = None) -> None:
        self.secrets = secrets
        self.wanted = dict(wanted)
        self.every = every
        self.clock = clock if clock is not None else cast(IReactorTime, reactor)
        self._call: IDelayedCall | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self._schedule()

    def stopService(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        super().stopService()  # type: ignore[no-untyped-call]  # a plain Service: returns None

    def _schedule(self) -> None:
        if self.wanted and self.running:
            self._call = self.clock.callLater(self.every, self._ask)

    def _ask(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._ask_all())

    async def _ask_all(self) -> None:
        for name, use in list(self.wanted.items()):
            try:
                value = await self.secrets.fetch(name)
            except TokenUnavailable:
                continue
            except TokenCannot as e:
                del self.wanted[name]
                log.warn("shared secret {name!r} cannot be kept ({error})", name=name, error=str(e))
                continue
            except Exception:
                log.failure("shared secret {name!r}", name=name)
                continue
            del self.wanted[name]
            use(value)
            log.info("shared secret {name!r} now in use", name=name)
        self._schedule()


__all__ = ["FetchLater", "SECRET_SIZE", "SharedSecretUnreadable", "SharedSecrets", "fetch_at_start",
           "sealing_key_label"]
