"""The key types the appliance makes, by the names the config uses."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeySpec:
    """A key type as the config names it (``ec-p256``, ``rsa3072`` ...)."""

    name: str
    kind: str  # "ec" or "rsa"
    curve: str | None = None
    bits: int | None = None


KEY_SPECS = {
    "ec-p256": KeySpec("ec-p256", "ec", curve="secp256r1"),
    "ec-p384": KeySpec("ec-p384", "ec", curve="secp384r1"),
    "ec-p521": KeySpec("ec-p521", "ec", curve="secp521r1"),
    "rsa2048": KeySpec("rsa2048", "rsa", bits=2048),
    "rsa3072": KeySpec("rsa3072", "rsa", bits=3072),
    "rsa4096": KeySpec("rsa4096", "rsa", bits=4096),
}
