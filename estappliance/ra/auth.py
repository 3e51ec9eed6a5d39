"""Who is the client: TLS client certificate or HTTP Basic.

The TLS layer accepts any client certificate; it is judged here, against the
trust anchors the label accepts, so an untrusted certificate earns a clear 401
(and a chance to use a password) rather than a failed handshake.
"""
from __future__ import annotations

import datetime
import hashlib
import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store as TrustStore, VerificationError
from twisted.internet import defer

from ..config import Label
from ..errors import AuthenticationRequired, NotAuthorized
from ..store import ClientRecord, Store, on_store_thread
from ..threads import SingleThread
from .passwords import verify_password

# A verified password is remembered this long so that keep-alive clients do not
# pay for scrypt on every request; changes made with estctl apply after it.
PASSWORD_CACHE_SECONDS = 30.0
# scrypt is deliberately slow; it gets its own thread so it never starves others.
PASSWORD_THREAD = SingleThread("scrypt")


@dataclass(frozen=True)
class Credentials:
    """What the web layer extracted from the request; nothing checked yet."""

    username: str | None = None
    password: str | None = None
    peer_chain: tuple[x509.Certificate, ...] = ()  # leaf first


@dataclass(frozen=True)
class Identity:
    name: str
    method: str  # "basic" or "cert"
    certificate: x509.Certificate | None = None
    anchor: str | None = None
    labels: tuple[str, ...] = field(default=())


class TrustAnchors:
    """Named anchors: 'ca' (this appliance's CA) plus configured outside CAs."""

    def __init__(self, anchors: dict[str, list[x509.Certificate]]):
        self._by_cert = {}
        for name, certs in anchors.items():
            for c in certs:
                self._by_cert[c] = name
        self._store = TrustStore(list(self._by_cert)) if self._by_cert else None

    def certificates(self) -> list[x509.Certificate]:
        return list(self._by_cert)

    def verify(self, chain: tuple[x509.Certificate, ...]) -> str | None:
        """The anchor name the chain leads to, or None if it leads nowhere we trust."""
        if not chain or self._store is None:
            return None
        verifier = (PolicyBuilder().store(self._store).time(datetime.datetime.now(datetime.timezone.utc))
                    .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                        ee_policy=ExtensionPolicy.permit_all())
                    .build_client_verifier())
        try:
            verified = verifier.verify(chain[0], list(chain[1:]))
        except VerificationError:
            return None
        return self._by_cert.get(verified.chain[-1])


class Authenticator:
    def __init__(self, store: Store, anchors: TrustAnchors, realm: str):
        self.store = store
        self.anchors = anchors
        self.realm = realm
        self._verified: dict[tuple[str, bytes], tuple[float, ClientRecord]] = {}

    @defer.inlineCallbacks
    def authenticate(self, creds: Credentials, label: Label):
        """Fires with an Identity allowed under ``label``, or fails with
        AuthenticationRequired (401) / NotAuthorized (403)."""
        refusal = None
        if creds.peer_chain and "cert" in label.auth:
            anchor = self.anchors.verify(creds.peer_chain)
            leaf = creds.peer_chain[0]
            if anchor is None:
                refusal = AuthenticationRequired("client certificate not trusted")
            elif anchor not in label.cert_anchors:
                refusal = NotAuthorized(f"certificates from anchor {anchor!r} are not accepted under this label")
            else:
                return Identity(name=leaf.subject.rfc4514_string() or f"serial:{leaf.serial_number:x}",
                                method="cert", certificate=leaf, anchor=anchor)
        if creds.username is not None and "basic" in label.auth:
            record = yield self._check_password(creds.username, creds.password or "")
            if record is None:
                raise AuthenticationRequired("wrong username or password")
            if not record.may_use(label.name):
                raise NotAuthorized(f"client {record.name!r} may not use label {label.name!r}")
            return Identity(name=record.name, method="basic", labels=record.labels)
        raise refusal or AuthenticationRequired("authentication required")

    @defer.inlineCallbacks
    def _check_password(self, username: str, password: str):
        key = (username, hashlib.sha256(password.encode()).digest())
        hit = self._verified.get(key)
        if hit is not None and time.monotonic() - hit[0] < PASSWORD_CACHE_SECONDS:
            return hit[1]
        record = yield on_store_thread(self.store.client, username)
        if record is None:
            # Spend the same time as a real check so names cannot be probed.
            yield PASSWORD_THREAD.run(verify_password, password, _DUMMY_HASH)
            return None
        ok = yield PASSWORD_THREAD.run(verify_password, password, record.password_hash)
        if not ok:
            self._verified.pop(key, None)
            return None
        if len(self._verified) > 10000:
            self._verified.clear()
        self._verified[key] = (time.monotonic(), record)
        return record


_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
