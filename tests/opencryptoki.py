"""opencryptoki's soft token ("IBM SoftTok", slot 3) as a second real PKCS#11
token for the tests: started and initialised by the tests themselves.

The daemon (``pkcsslotd``) and the token store have fixed system paths
(/var/run/pkcsslotd.*, /var/lib/opencryptoki/swtok), so there is one such
token per machine. The tests start the daemon when it is not running (and
stop it when the run ends), and (re)initialise the token with the SO PIN a
fresh install has (87654321; it is never changed here: opencryptoki 3.8
cannot re-initialise a token whose SO PIN was changed), the label
``est-test`` and their own user PIN. A token someone set up with another SO
PIN is left alone and the tests are skipped, saying so.

The test process itself never loads the library (``query`` asks a child
process): pkcsslotd will not stop while a process it serves is attached.
"""
from __future__ import annotations

import atexit
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from twisted.trial import unittest

SLOT = "3"
LABEL = "est-test"
SO_PIN = "87654321"  # opencryptoki's default, as installed
USER_PIN = "ock-test"  # the soft token takes 4 to 8 characters
PID_FILE = Path("/var/run/pkcsslotd.pid")

_lock = threading.Lock()
_ready: str | None = None  # the module path once set up
_skip: str | None = None
_started_pid: int | None = None


def module_path() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/opencryptoki/libopencryptoki.so.0")) + \
        sorted(glob.glob("/usr/lib*/opencryptoki/libopencryptoki.so.0"))
    return found[0] if found else None


def _daemon_running() -> bool:
    try:
        pid = int(PID_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return Path(f"/proc/{pid}").exists() and b"pkcsslotd" in Path(f"/proc/{pid}/cmdline").read_bytes()


def _stop_daemon() -> None:
    global _started_pid
    pid, _started_pid = _started_pid, None
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _pkcsconf(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["pkcsconf", "-c", SLOT, *args], input=input, capture_output=True, text=True, timeout=60)


def _set_up() -> str:
    global _started_pid
    module = module_path()
    if module is None or not shutil.which("pkcsslotd") or not shutil.which("pkcsconf"):
        raise unittest.SkipTest("opencryptoki is not installed (make test installs the Debian package)")
    if not _daemon_running():
        done = subprocess.run(["pkcsslotd"], capture_output=True, text=True, timeout=30)
        for _ in range(50):
            if _daemon_running():
                break
            time.sleep(0.1)
        else:
            raise unittest.SkipTest(f"pkcsslotd did not start: {done.stdout}{done.stderr}".strip())
        _started_pid = int(PID_FILE.read_text().split()[0])
        atexit.register(_stop_daemon)
    info = _pkcsconf("-t").stdout
    if "IBM SoftTok" not in info:
        raise unittest.SkipTest(f"slot {SLOT} is not opencryptoki's soft token:\n{info}")
    init = _pkcsconf("-I", "-S", SO_PIN, input=LABEL + "\n")
    if init.returncode != 0:
        said = f"{init.stdout}{init.stderr}".strip()
        if "CKR_SESSION_EXISTS" in said:  # the machine has one soft token: another test run is using it
            raise unittest.SkipTest(f"another process has a session open on the opencryptoki soft token ({said})")
        raise unittest.SkipTest("the opencryptoki soft token has an SO PIN other than the installed default;"
                                f" the tests leave it alone ({said})")
    pin = _pkcsconf("-u", "-S", SO_PIN, "-n", USER_PIN)
    if pin.returncode != 0:
        raise AssertionError(f"pkcsconf -u failed: {pin.stdout}{pin.stderr}")
    return module


_QUERY = """
import json, sys
from estappliance.token import Token
module, label, pin, method, arg = sys.argv[1:]
print(json.dumps(getattr(Token(module, label, lambda: pin), method)(arg), default=lambda b: b.hex()))
"""


def query(method: str, arg: str):
    """Blocking: ``Token(...).method(arg)`` on the soft token, in a child
    process; its JSON (bytes as hex)."""
    done = subprocess.run([sys.executable, "-c", _QUERY, soft_token(), LABEL, USER_PIN, method, arg],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"token query {method}({arg!r}) failed:\n{done.stderr}")
    return json.loads(done.stdout)


def soft_token() -> str:
    """Blocking: the opencryptoki module path, with the token freshly
    initialised (once per test run); SkipTest where that cannot be."""
    global _ready, _skip
    with _lock:
        if _skip is not None:
            raise unittest.SkipTest(_skip)
        if _ready is None:
            try:
                _ready = _set_up()
            except unittest.SkipTest as e:
                _skip = str(e)
                raise
        return _ready
