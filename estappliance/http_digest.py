"""HTTP Digest (RFC 7616) arithmetic that the server and our client share:
the algorithms, H(A1), and reading the parameters of a ``Digest ...``
header. Pure; the server's nonces and checks are in ``ra.digest``."""
from __future__ import annotations

import hashlib
import re

ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}

_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)\s*(?:,|$)')


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    return ALGORITHMS[algorithm](f"{username}:{realm}:{password}".encode()).hexdigest()


def ha1_all(username: str, realm: str, password: str) -> dict[str, str]:
    return {alg: ha1(alg, username, realm, password) for alg in ALGORITHMS}


def parse_authorization(value: str) -> dict[str, str] | None:
    """The parameters of a ``Digest ...`` Authorization header, or None."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None or m.end() == pos:
            return None
        value = m.group(3) if m.group(3) is not None else m.group(2)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return params


__all__ = ["ALGORITHMS", "ha1", "ha1_all", "parse_authorization"]
