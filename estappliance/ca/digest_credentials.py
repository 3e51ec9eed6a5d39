"""Digest H(A1) values, kept in the store sealed by the token.

H(username:realm:password) is all a Digest client needs to authenticate: a
password equivalent. ``estctl client add/passwd`` seals each one with the
token's sealing key (AES-GCM in the token, the key that also seals shared
secrets and PKCS#12 passwords; associated data ``digest-ha1:ALG:NAME``, so a
value cannot be moved to another client or algorithm), and the store keeps
``sealed:`` and the hex of what the token made. ``estctl store migrate``
seals the clear values an older version stored.

The service opens them in the token when a client first answers a Digest
challenge, and keeps what it opened in memory (keyed by the sealed value, so
a new password is picked up at once).
"""
from __future__ import annotations

from collections.abc import Mapping

from twisted.internet import defer

from ..store import Store
from ..token import Token, on_token_thread
from ..token import symmetric
from .shared_secrets import sealing_key_label

SEALED = "sealed:"


def _context(name: str, algorithm: str) -> bytes:
    return f"digest-ha1:{algorithm}:{name}".encode()


def seal_ha1s(token: Token, key_prefix: str, name: str, ha1s: Mapping[str, str]) -> dict[str, str]:
    """Blocking (PKCS#11): the values to store for ``name``'s H(A1)s."""
    label = sealing_key_label(key_prefix)
    policy = token.policy()
    policy.require(policy.sealing_problem(), "Digest credentials sealed in the store")
    symmetric.ensure_sealing_key(token, label)
    return {alg: SEALED + symmetric.seal(token, label, value.encode(), _context(name, alg)).hex()
            for alg, value in ha1s.items()}


def seal_clear_ha1s(token: Token, key_prefix: str, store: Store) -> int:
    """Blocking: seal every H(A1) an older version stored in clear; how many clients."""
    sealed = 0
    for client in store.clients.clients():
        clear = {alg: v for alg, v in client.digest_ha1.items() if not v.startswith(SEALED)}
        if clear:
            stored = {**client.digest_ha1, **seal_ha1s(token, key_prefix, client.name, clear)}
            store.clients.set_digest_ha1(client.name, stored)
            sealed += 1
    return sealed


class Ha1Opener:
    """Opens stored H(A1)s for the Digest check; remembers what it opened."""

    def __init__(self, token: Token, key_prefix: str) -> None:
        self.token = token
        self.label = sealing_key_label(key_prefix)
        self._opened: dict[tuple[str, str, str], str] = {}

    def open(self, name: str, stored: Mapping[str, str]) -> defer.Deferred[dict[str, str]]:
        """Fires with algorithm -> H(A1) in clear; a value that does not open
        (altered, or sealed by another token) is left out, so the client's
        answer is refused like a wrong password."""
        todo = {alg: v for alg, v in stored.items()
                if v.startswith(SEALED) and (name, alg, v) not in self._opened}
        if not todo:
            return defer.succeed(self._clear(name, stored))

        def unseal() -> None:
            for alg, value in todo.items():
                try:
                    opened = symmetric.unseal(self.token, self.label, bytes.fromhex(value[len(SEALED):]),
                                              _context(name, alg))
                except ValueError:
                    continue
                self._opened[(name, alg, value)] = opened.decode()
        return on_token_thread(unseal).addCallback(lambda _: self._clear(name, stored))

    def _clear(self, name: str, stored: Mapping[str, str]) -> dict[str, str]:
        out = {}
        for alg, value in stored.items():
            if not value.startswith(SEALED):
                out[alg] = value  # an older version's clear value, until 'estctl store migrate'
            elif (name, alg, value) in self._opened:
                out[alg] = self._opened[(name, alg, value)]
        return out
