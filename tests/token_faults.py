"""A fault-injecting wrapper around a real PKCS#11 session (test double).

It stands in for the process's logged-in session (``token.session._SESSIONS``)
and forwards every call to the real session and to the real objects it
returns (keys are wrapped too), until a fault is armed: then the next call
fails the way a real HSM fails, once. Some faults are real (the session is
really closed behind our back, so the library itself answers
CKR_SESSION_HANDLE_INVALID); the others raise the exception python-pkcs11
raises for that CKR_ code; ``hang`` blocks the call until released.
"""
from __future__ import annotations

import threading
import types

import pkcs11
from pkcs11 import exceptions

from estappliance.token import session as token_session

RAISED = {
    "CKR_SESSION_CLOSED": exceptions.SessionClosed,
    "CKR_USER_NOT_LOGGED_IN": exceptions.UserNotLoggedIn,
    "CKR_DEVICE_REMOVED": exceptions.DeviceRemoved,
    "CKR_TOKEN_NOT_PRESENT": exceptions.TokenNotPresent,
    "CKR_DEVICE_MEMORY": exceptions.DeviceMemory,
}
# Closed behind our back: the real library answers CKR_SESSION_HANDLE_INVALID.
REAL_CLOSE = "CKR_SESSION_HANDLE_INVALID"
HANG = "hang"
HANG_LIMIT = 60.0  # a hung call gives up on its own after this (so a failing test cannot wedge the run)


class Faults:
    def __init__(self, real_session: pkcs11.Session):
        self.real_session = real_session
        self.armed: str | None = None
        self.struck: list[str] = []
        self.release = threading.Event()
        self.hanging = threading.Event()

    def arm(self, fault: str) -> None:
        self.armed = fault

    def strike(self, call: str) -> None:
        """Called before each forwarded call (on the PKCS#11 thread)."""
        fault, self.armed = self.armed, None
        if fault is None:
            return
        self.struck.append(f"{fault} in {call}")
        if fault == REAL_CLOSE:
            self.real_session.close()
        elif fault == HANG:
            self.hanging.set()
            self.release.wait(HANG_LIMIT)
        else:
            raise RAISED[fault]()


class Wrapped:
    """Forwards to ``target``; each call (and attribute read) first meets the armed fault."""

    def __init__(self, target, faults: Faults):
        self._target, self._faults = target, faults

    def __getattr__(self, name):
        value = getattr(self._target, name)
        if not callable(value) or name == "close":
            return value

        def call(*args, **kwargs):
            self._faults.strike(name)
            return _wrap(value(*args, **kwargs), self._faults)
        return call

    def __getitem__(self, key):
        self._faults.strike("get attribute")
        return self._target[key]

    def __setitem__(self, key, value):
        self._faults.strike("set attribute")
        self._target[key] = value

    def __iter__(self):
        return iter(_wrap(list(self._target), self._faults))


def _wrap(value, faults: Faults):
    if isinstance(value, pkcs11.Object):
        return Wrapped(value, faults)
    if isinstance(value, tuple):
        return tuple(_wrap(v, faults) for v in value)
    if isinstance(value, list):
        return [_wrap(v, faults) for v in value]
    if isinstance(value, types.GeneratorType) or type(value).__name__ == "SearchIter":
        return [_wrap(v, faults) for v in value]
    return value


def install(module: str, label: str) -> Faults:
    """Wrap the process's open session for (module, label); blocking: call it
    on the PKCS#11 thread. The service drops the wrapper with the session at
    the first fault and opens a real one again."""
    key = (str(module), label)
    real = token_session._SESSIONS[key]
    faults = Faults(real)
    token_session._SESSIONS[key] = Wrapped(real, faults)
    return faults


def current_session(module: str, label: str):
    return token_session._SESSIONS.get((str(module), label))
