"""TLS session-ticket keys that every worker and every node shares.

OpenSSL gives each SSL_CTX a random ticket key of its own. Each worker
process builds its own context, so a ticket issued by one worker (or node)
cannot be opened by another and a client reconnecting elsewhere makes a full
handshake. Here every process derives the same key from the shared secret
``tls-ticket`` (sealed in the store, ``ca/shared_secrets.py``) and the
number of the current period (``PERIOD`` seconds since the epoch), so all of
them agree without talking to each other, and the key changes every period.

Setting the key needs ``SSL_CTX_set_tlsext_ticket_keys``, a macro for
``SSL_CTX_ctrl(ctx, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, 80, keys)``. pyOpenSSL
does not bind ``SSL_CTX_ctrl``, and cryptography's wheel links OpenSSL
statically into ``_rust.abi3.so`` without exporting it; its symbol table
still lists it as a local function. So its address is the module's load base
(an exported symbol's address, from ctypes, minus that symbol's offset) plus
its offset, both read from the ELF symbol table (pyelftools); /proc/self/maps
must show that file mapped at that base. The call goes to the very OpenSSL
that pyOpenSSL's contexts live in. Every key set is read
back (``SSL_CTRL_GET_TLSEXT_TICKET_KEYS``); if the symbol is missing or the
read-back differs, one warning is logged and OpenSSL's own per-context keys
stay (resumption then works only on the same worker).

Constants and layout (OpenSSL 3, include/openssl/ssl.h and ssl/s3_lib.c,
``ssl3_ctx_ctrl``): SSL_CTRL_GET_TLSEXT_TICKET_KEYS = 58,
SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59; the 80 bytes are the key name (16,
TLSEXT_KEYNAME_LENGTH), the HMAC key (32) and the AES key (32,
TLSEXT_TICK_KEY_LENGTH); with a NULL buffer the call returns that length.

OpenSSL holds one key per context: tickets made in the previous period are
not opened after the switch (those clients make one full handshake).
"""
from __future__ import annotations

import ctypes
import functools
import os
import struct
import time
from pathlib import Path
from typing import Callable, cast

from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from OpenSSL import SSL
from twisted.application import service
from twisted.internet import reactor
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()

PERIOD = 12 * 3600  # seconds a ticket key is used
SSL_CTRL_GET_TLSEXT_TICKET_KEYS = 58
SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59
KEY_NAME_LENGTH, HMAC_KEY_LENGTH, AES_KEY_LENGTH = 16, 32, 32
TICKET_KEYS_LENGTH = KEY_NAME_LENGTH + HMAC_KEY_LENGTH + AES_KEY_LENGTH  # 80
_EXPORTED = "PyInit__rust"  # a symbol of the module that ctypes can see
_HKDF_INFO = b"estappliance tls session ticket keys, period "

_SslCtxCtrl = Callable[[int, int, int, "ctypes.Array[ctypes.c_char] | None"], int]


class TicketKeysUnavailable(Exception):
    """This process cannot set the ticket keys of its contexts (the reason is the message)."""


def _openssl_module() -> Path:
    from cryptography.hazmat.bindings import _rust
    return Path(_rust.__file__)


_STT_FUNC = 2
_ELF64_SYM = struct.Struct("<IBBHQQ")  # st_name, st_info, st_other, st_shndx, st_value, st_size


def _function_offsets(path: Path, names: tuple[str, ...]) -> tuple[dict[str, int], int]:
    """The offsets of the functions ``names`` in the symbol table of ``path``
    (each must be there exactly once), and the file's inode. pyelftools finds
    the sections; the symbols are scanned with struct, since pyelftools'
    per-symbol parsing took seconds for the module's 36,000 symbols."""
    try:
        with open(path, "rb") as f:
            inode = os.fstat(f.fileno()).st_ino
            elf = ELFFile(f)
            symbols = elf.get_section_by_name(".symtab")
            if not isinstance(symbols, SymbolTableSection):
                raise TicketKeysUnavailable(f"{path} has no symbol table (stripped)")
            if elf.elfclass != 64 or not elf.little_endian or symbols["sh_entsize"] != _ELF64_SYM.size:
                raise TicketKeysUnavailable(f"{path} is not a little-endian 64-bit ELF file")
            strings = elf.get_section(symbols["sh_link"]).data()
            table = symbols.data()
    except (OSError, ELFError) as e:
        raise TicketKeysUnavailable(f"cannot read the symbols of {path}: {e}") from None
    wanted: dict[int, str] = {}  # string table offset -> name (a name may be stored more than once)
    for name in names:
        at = strings.find(name.encode() + b"\0")
        while at >= 0:
            wanted[at] = name
            at = strings.find(name.encode() + b"\0", at + 1)
    found: dict[str, list[int]] = {name: [] for name in names}
    for st_name, st_info, _, _, st_value, _ in _ELF64_SYM.iter_unpack(table):
        hit = wanted.get(st_name)
        if hit is not None and st_info & 0xF == _STT_FUNC and st_value:
            found[hit].append(st_value)
    for name, values in found.items():
        if len(values) != 1:
            raise TicketKeysUnavailable(f"{path} has {len(values)} functions named {name}, not one")
    return {name: values[0] for name, values in found.items()}, inode


def _loaded_from(path: Path, base: int, inode: int) -> bool:
    """Whether this process has the start of the file ``inode`` mapped at
    ``base``: the module in memory is the file whose symbols were read (not
    one replaced on disk since), and the base is right."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if (len(fields) == 6 and fields[5] == str(path) and int(fields[2], 16) == 0
                and int(fields[4]) == inode and int(fields[0].partition("-")[0], 16) == base):
            return True
    return False


@functools.cache
def _ssl_ctx_ctrl() -> _SslCtxCtrl:
    """``SSL_CTX_ctrl`` of the OpenSSL inside cryptography's module; found once."""
    path = _openssl_module().resolve()
    offsets, inode = _function_offsets(path, ("SSL_CTX_ctrl", _EXPORTED))
    try:  # the module already loaded (never a second copy of it)
        module = ctypes.PyDLL(str(path), mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError as e:
        raise TicketKeysUnavailable(f"{path} is not loaded in this process: {e}") from None
    exported = ctypes.cast(getattr(module, _EXPORTED), ctypes.c_void_p).value
    if exported is None:
        raise TicketKeysUnavailable(f"{_EXPORTED} has no address")
    base = exported - offsets[_EXPORTED]
    if not _loaded_from(path, base, inode):
        raise TicketKeysUnavailable(f"{path} on disk is not the module mapped in this process")
    prototype = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p)
    ctrl: _SslCtxCtrl = prototype(base + offsets["SSL_CTX_ctrl"])
    return ctrl


def _pointer(ctx: SSL.Context) -> int:
    return int(Binding.ffi.cast("uintptr_t", ctx._context))


def ticket_keys(ctx: SSL.Context) -> bytes:
    """The 80 bytes of the context's current ticket key (name, HMAC, AES)."""
    ctrl = _ssl_ctx_ctrl()
    if ctrl(_pointer(ctx), SSL_CTRL_GET_TLSEXT_TICKET_KEYS, 0, None) != TICKET_KEYS_LENGTH:
        raise TicketKeysUnavailable(f"this OpenSSL's ticket keys are not {TICKET_KEYS_LENGTH} bytes")
    out = ctypes.create_string_buffer(TICKET_KEYS_LENGTH)
    if ctrl(_pointer(ctx), SSL_CTRL_GET_TLSEXT_TICKET_KEYS, TICKET_KEYS_LENGTH, out) != 1:
        raise TicketKeysUnavailable("OpenSSL refused to read the ticket keys")
    return out.raw


def set_ticket_keys(ctx: SSL.Context, keys: bytes) -> None:
    """Make ``keys`` (80 bytes) the context's ticket key, checked by reading it back."""
    if len(keys) != TICKET_KEYS_LENGTH:
        raise ValueError(f"ticket keys are {TICKET_KEYS_LENGTH} bytes")
    ctrl = _ssl_ctx_ctrl()
    if ctrl(_pointer(ctx), SSL_CTRL_GET_TLSEXT_TICKET_KEYS, 0, None) != TICKET_KEYS_LENGTH:
        raise TicketKeysUnavailable(f"this OpenSSL's ticket keys are not {TICKET_KEYS_LENGTH} bytes")
    buffer = ctypes.create_string_buffer(keys, TICKET_KEYS_LENGTH)
    if ctrl(_pointer(ctx), SSL_CTRL_SET_TLSEXT_TICKET_KEYS, TICKET_KEYS_LENGTH, buffer) != 1:
        raise TicketKeysUnavailable("OpenSSL refused the ticket keys")
    if ticket_keys(ctx) != keys:
        raise TicketKeysUnavailable("the ticket keys read back differ from those set")


def period_keys(secret: bytes, period: int) -> bytes:
    """The ticket key (name, HMAC, AES) of ``period``, from the shared secret."""
    return HKDF(hashes.SHA256(), TICKET_KEYS_LENGTH, salt=None,
                info=_HKDF_INFO + period.to_bytes(8, "big")).derive(secret)


class SessionTicketKeys:
    """The current period's key, for every context this process serves with.

    ``apply`` sets it on a context (a new one: at start, after a reload or a
    CA switch); ``rotate`` (each period boundary) and ``use_secret`` (the
    shared secret had only after start) re-apply it to the contexts in use,
    through the ``listeners`` (each a context factory)."""

    _warned = False  # one warning per process, however many contexts

    def __init__(self, secret: bytes | None, period: int = PERIOD,
                 clock: Callable[[], float] = time.time) -> None:
        """``secret`` None: not had yet; contexts keep OpenSSL's own keys meanwhile."""
        self.secret = secret
        self.period = period
        self.clock = clock
        self.listeners: list[Callable[[], object]] = []

    def period_number(self) -> int:
        return int(self.clock() // self.period)

    def seconds_left(self) -> float:
        """Until the next period begins."""
        return (self.period_number() + 1) * self.period - self.clock()

    def current(self) -> bytes | None:
        return None if self.secret is None else period_keys(self.secret, self.period_number())

    def apply(self, ctx: SSL.Context) -> bool:
        """Set the current key on ``ctx``; False (one warning logged per
        process) if it cannot be, and the context keeps OpenSSL's own."""
        keys = self.current()
        if keys is None:
            return False
        try:
            set_ticket_keys(ctx, keys)
        except TicketKeysUnavailable as e:
            if not SessionTicketKeys._warned:
                SessionTicketKeys._warned = True
                log.warn("TLS session tickets stay per worker ({reason}): a client resumes its session only"
                         " on the worker that made it", reason=str(e))
            return False
        return True

    def rotate(self) -> None:
        for listener in list(self.listeners):
            listener()

    def use_secret(self, secret: bytes) -> None:
        self.secret = secret
        self.rotate()


class TicketKeyRotation(service.Service):
    """Re-applies the ticket key at each period boundary (a reactor timer)."""

    def __init__(self, keys: SessionTicketKeys, clock: IReactorTime | None = None) -> None:
        self.keys = keys
        self.clock = clock if clock is not None else cast(IReactorTime, reactor)
        self._call: IDelayedCall | None = None

    def startService(self) -> None:
        super().startService()
        self._schedule()

    def stopService(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        super().stopService()

    def _schedule(self) -> None:
        # A second past the boundary: the clock read then is surely in the new period.
        self._call = self.clock.callLater(self.keys.seconds_left() + 1, self._boundary)

    def _boundary(self) -> None:
        self.keys.rotate()
        self._schedule()


__all__ = ["PERIOD", "SessionTicketKeys", "TicketKeyRotation", "TicketKeysUnavailable", "period_keys",
           "set_ticket_keys", "ticket_keys"]
