"""HTTP Digest access authentication (RFC 7616), qop=auth, SHA-256 and MD5.

MD5 stays because the EST clients in the field (libest and its derivatives,
RFC 7030 Appendix A.3) speak only MD5 Digest. The server keeps
H(username:realm:password) per algorithm, so a realm change needs new
passwords. Nonces are stateless (a time stamp and its HMAC, with a key every
worker shares), so a client may answer a challenge on a new connection that
another worker takes. Nonce counts must grow: ``check`` only says an answer is
genuine and fresh; the caller then claims its count in the store
(``store.nonce_claims``), which every worker sees, so a captured
Authorization header is refused on any worker and after a restart.
The arithmetic both ends share (H(A1), parsing the header) is in
``estappliance.http_digest``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from typing import Iterable

from ..http_digest import ALGORITHMS

NONCE_LIFETIME = 300  # seconds


class DigestVerifier:
    def __init__(self, realm: str, secret: bytes | None = None):
        self.realm = realm
        self._secret = secret or os.urandom(32)

    def use_secret(self, secret: bytes) -> None:
        """The key every process shares, once had (ca/shared_secrets.py): nonces
        made with the process's own key until then come back stale."""
        self._secret = secret

    def nonce(self, now: float | None = None) -> str:
        """time stamp, 8 random bytes (so no two challenges share a nonce), MAC."""
        body = str(int(now if now is not None else time.time())).encode() + b":" + os.urandom(8).hex().encode()
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(body + b":" + mac).decode().rstrip("=")

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
            # The MAC is raw bytes and may hold ':'; it is the last 16 bytes.
            body, sep, mac = raw[:-17], raw[-17:-16], raw[-16:]
            if sep != b":":
                return None
            issued = int(body.split(b":", 1)[0])
        except (ValueError, TypeError):
            return None
        good = hmac.new(self._secret, body, hashlib.sha256).digest()[:16]
        return now - issued if hmac.compare_digest(mac, good) else None

    def challenges(self, algorithms: Iterable[str] = tuple(ALGORITHMS), stale: bool = False) -> list[str]:
        """WWW-Authenticate values, one per algorithm in the order given
        (strongest first, RFC 7616 3.7), all with one nonce.

        The MD5 challenge leaves ``algorithm`` out (RFC 7616 3.3: absent means
        MD5): clients whose parser wants every value quoted (Bouncy Castle)
        read it, while a present ``algorithm`` must not be quoted.
        """
        nonce = self.nonce()
        extra = ", stale=true" if stale else ""
        return [f'Digest realm="{self.realm}", qop="auth", '
                + ("" if alg == "MD5" else f"algorithm={alg}, ") + f'nonce="{nonce}"{extra}'
                for alg in algorithms]

    def check(self, params: dict[str, str], method: str, uri: str, stored_ha1: dict[str, str],
              now: float | None = None, algorithms: Iterable[str] = tuple(ALGORITHMS),
              uri_aliases: Iterable[str] = ()) -> str:
        """'ok', 'stale' (retry with a fresh nonce) or 'bad'. 'ok' means genuine
        and within the nonce's lifetime: its count must still be claimed
        (``nonce_count``), or a replay passes. An answer with
        an algorithm outside ``algorithms`` (those the label offers) is bad;
        its digest-uri must be ``uri`` or one of ``uri_aliases``."""
        now = time.time() if now is None else now
        algorithm = params.get("algorithm", "MD5").upper().replace("SHA256", "SHA-256")
        if algorithm not in ALGORITHMS or algorithm not in algorithms or algorithm not in stored_ha1:
            return "bad"
        if params.get("realm") != self.realm or params.get("qop") != "auth":
            return "bad"
        given_uri = params.get("uri")
        if given_uri != uri and (given_uri is None or given_uri not in uri_aliases):
            return "bad"
        nonce, nc, cnonce = params.get("nonce", ""), params.get("nc", ""), params.get("cnonce", "")
        age = self._nonce_age(nonce, now)
        if age is None or not cnonce or not re.fullmatch(r"[0-9a-fA-F]{8}", nc):
            return "bad"
        h = ALGORITHMS[algorithm]
        ha2 = h(f"{method}:{params['uri']}".encode()).hexdigest()
        expected = h(f"{stored_ha1[algorithm]}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        if not hmac.compare_digest(expected.encode(), params.get("response", "").lower().encode()):  # bytes: any text
            return "bad"
        if age > NONCE_LIFETIME or age < -60:
            return "stale"
        return "ok"


def nonce_count(params: dict[str, str]) -> tuple[str, int]:
    """(nonce, nc as a number) of an answer ``check`` found good: the count to
    claim before the request is served."""
    return params["nonce"], int(params["nc"], 16)
