"""Who is the client: TLS client certificate, HTTP Basic or HTTP Digest.

The TLS layer accepts any client certificate; it is judged here, against the
trust anchors the label accepts, so an untrusted certificate earns a clear 401
(and a chance to use a password) rather than a failed handshake. A
certificate from this appliance's own CA must also be on record here and not
revoked.

A TLS session resumed from a ticket carries the client's certificate alone,
not the intermediates it sent in the full handshake. Intermediates of every
chain that verified are kept (in the process and in the store, for every
worker and node), and a lone certificate's path is completed from them;
they are never trusted for being kept: the path must end at an anchor.
"""
from __future__ import annotations

import datetime
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, Generator

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store as TrustStore, VerificationError
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..ca.digest_credentials import Ha1Opener
from ..config import Label
from ..errors import AuthenticationRequired, EstError, NotAuthorized
from ..pki.certs import ID_KP_CMC_RA
from ..store import ClientRecord, Store, on_read_thread, on_store_thread
from ..store.nonce_claims import NonceCountClaims
from ..threads import SingleThread
from .digest import NONCE_LIFETIME, DigestVerifier, nonce_count
from .passwords import verify_password

# A verified password is remembered this long so that keep-alive clients do not
# pay for scrypt on every request; changes made with estctl apply after it.
PASSWORD_CACHE_SECONDS = 30.0
# scrypt is deliberately slow; it gets its own thread so it never starves others.
PASSWORD_THREAD = SingleThread("scrypt")
OWN_CA = "ca"
# A chain that verified is remembered this long (never past the expiry of
# any certificate in it): path validation cost a keep-alive client ~0.1 ms
# on every request. Whether the certificate is on record and not revoked is
# still read from the store each time.
CHAIN_CACHE_SECONDS = 30.0
CHAIN_CACHE_MAX = 10000
# How many CA certificates a path completed from kept intermediates may add.
INTERMEDIATE_DEPTH = 4
_log = Logger()


@dataclass(frozen=True)
class Credentials:
    """What the web layer extracted from the request; nothing checked yet."""

    username: str | None = None
    password: str | None = None
    peer_chain: tuple[x509.Certificate, ...] = ()  # leaf first
    digest: dict[str, str] | None = None  # Authorization: Digest parameters
    method: str = "GET"
    uri: str = ""
    # Other request-URIs a Digest answer may name for this same request.
    digest_uri_aliases: tuple[str, ...] = ()
    # tls-unique (TLS 1.2) or tls-exporter (TLS 1.3); a callable so that it is
    # computed only for the requests that carry a challengePassword.
    channel_binding: bytes | Callable[[], bytes | None] | None = None

    def binding(self) -> bytes | None:
        value = self.channel_binding
        return value() if callable(value) else value


@dataclass(frozen=True)
class Identity:
    name: str
    method: str  # "basic", "digest" or "cert"
    certificate: x509.Certificate | None = None
    anchor: str | None = None

    @property
    def is_ra(self) -> bool:
        """RFC 7030 3.7: a certificate from our CA with id-kp-cmcRA marks an RA."""
        if self.certificate is None or self.anchor != OWN_CA:
            return False
        try:
            eku = self.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            return False
        return ID_KP_CMC_RA in eku


class TrustAnchors:
    """Named anchors: 'ca' (this appliance's CA) plus configured outside CAs."""

    def __init__(self, anchors: dict[str, list[x509.Certificate]]) -> None:
        self._intermediates: dict[x509.Name, list[x509.Certificate]] = {}  # kept, by subject
        self._set(anchors)

    def _set(self, anchors: dict[str, list[x509.Certificate]]) -> None:
        by_cert = {}
        for name, certs in anchors.items():
            for c in certs:
                by_cert[c] = name
        self._anchors = anchors
        self._store = TrustStore(list(by_cert)) if by_cert else None
        self._by_cert = by_cert
        self._anchor_names = {c.subject for c in by_cert}
        self._verified: dict[tuple[x509.Certificate, ...], tuple[float, str, tuple[x509.Certificate, ...]]] = {}

    def set_anchor(self, name: str, certs: list[x509.Certificate]) -> None:
        """Replace one named anchor's certificates (the CA's generations after a key update)."""
        self._set({**self._anchors, name: list(certs)})

    def certificates(self) -> list[x509.Certificate]:
        return list(self._by_cert)

    def verify(self, chain: tuple[x509.Certificate, ...]) -> str | None:
        """The anchor name the chain leads to, or None if it leads nowhere we trust."""
        found = self.verify_path(chain)
        return None if found is None else found[0]

    def verify_path(self, chain: tuple[x509.Certificate, ...]
                    ) -> tuple[str, tuple[x509.Certificate, ...]] | None:
        """(the anchor name, the intermediates of the path found), or None.
        A lone certificate's path may be completed from kept intermediates."""
        if not chain or self._store is None:
            return None
        clock = time.monotonic()
        cached = self._verified.get(chain)
        if cached is not None and cached[0] > clock:
            return cached[1], cached[2]
        now = datetime.datetime.now(datetime.timezone.utc)
        verifier = (PolicyBuilder().store(self._store).time(now)
                    .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                        ee_policy=ExtensionPolicy.permit_all())
                    .build_client_verifier())
        extra = self.kept_issuers(chain[0]) if len(chain) == 1 else []
        try:
            verified = verifier.verify(chain[0], list(chain[1:]) + extra)
        except VerificationError:
            return None
        anchor = self._by_cert.get(verified.chain[-1])
        if anchor is None:
            return None
        intermediates = tuple(verified.chain[1:-1])
        valid_for = min(c.not_valid_after_utc for c in verified.chain) - now
        if len(self._verified) >= CHAIN_CACHE_MAX:
            self._verified.clear()
        self._verified[chain] = (clock + min(CHAIN_CACHE_SECONDS, valid_for.total_seconds()), anchor, intermediates)
        return anchor, intermediates

    # -- kept intermediates ---------------------------------------------------------

    def kept_issuers(self, cert: x509.Certificate) -> list[x509.Certificate]:
        """Kept intermediates that may lie on the way from ``cert`` to an anchor."""
        found: list[x509.Certificate] = []
        names = [cert.issuer]
        for _ in range(INTERMEDIATE_DEPTH):
            step = [c for name in names for c in self._intermediates.get(name, ()) if c not in found]
            found += step
            names = [c.issuer for c in step if c.issuer not in self._anchor_names and c.issuer != c.subject]
            if not names:
                break
        return found

    def missing_issuer(self, cert: x509.Certificate) -> x509.Name | None:
        """The first name on the way up from ``cert`` that is neither an
        anchor's nor a kept intermediate's (to look for in the store)."""
        name = cert.issuer
        for _ in range(INTERMEDIATE_DEPTH):
            if name in self._anchor_names:
                return None
            kept = self._intermediates.get(name)
            if not kept:
                return name
            parent = kept[0].issuer
            if parent == name:
                return None
            name = parent
        return None

    def forget(self, certs: Iterable[x509.Certificate]) -> None:
        """Drop these from memory (the store could not keep them: the next full handshake tries again)."""
        for c in certs:
            same = self._intermediates.get(c.subject, [])
            if c in same:
                same.remove(c)

    def keep(self, certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
        """Keep these intermediates; returns those that were new here."""
        new = []
        for c in certs:
            same = self._intermediates.setdefault(c.subject, [])
            if c not in same:
                same.append(c)
                new.append(c)
        return new


class Authenticator:
    def __init__(self, store: Store, anchors: TrustAnchors, realm: str, digest_secret: bytes | None = None,
                 ha1_opener: Ha1Opener | None = None) -> None:
        """``ha1_opener`` opens the sealed Digest H(A1)s (ca.digest_credentials);
        without one only clear values (an older version's) can be checked."""
        self.store = store
        self.ha1_opener = ha1_opener
        self.reads = store.reader()
        self.anchors = anchors
        self.realm = realm
        self.digest = DigestVerifier(realm, digest_secret)
        self.nonce_counts = NonceCountClaims(store, NONCE_LIFETIME)
        self._verified: dict[tuple[str, bytes], tuple[float, ClientRecord]] = {}
        self._checking: dict[tuple[str, bytes], list[defer.Deferred[ClientRecord | None]]] = {}

    def challenge(self, label: Label, stale: bool = False) -> list[str]:
        """WWW-Authenticate values for a 401 under this label.

        Bouncy Castle and libest read only the first challenge, and neither
        answers SHA-256 Digest; so the label's "compatible" order (the
        default) puts Basic first. Among Digest challenges the strongest
        algorithm always comes first (RFC 7616 3.7); "strict" puts them all
        before Basic, for clients that pick the strongest scheme offered.
        """
        digest = self.digest.challenges(label.digest_algorithms, stale) if "digest" in label.auth else []
        basic = [f'Basic realm="{self.realm}"'] if "basic" in label.auth else []
        return digest + basic if label.challenge_order == "strict" else basic + digest

    @defer.inlineCallbacks
    def authenticate(self, creds: Credentials, label: Label) -> Generator[defer.Deferred[Any], Any, Identity]:
        """Fires with an Identity allowed under ``label``, or fails with
        AuthenticationRequired (401) / NotAuthorized (403)."""
        refusal = None
        if creds.peer_chain and "cert" in label.auth:
            identity, refusal = yield self._certificate(creds.peer_chain, label)
            if identity is not None:
                return identity
        if creds.digest is not None and "digest" in label.auth:
            record = yield self._check_digest(creds, label)
            return self._authorized(record, label, "digest")
        if creds.username is not None and "basic" in label.auth:
            record = yield self._check_password(creds.username, creds.password or "")
            if record is None:
                raise AuthenticationRequired("wrong username or password")
            return self._authorized(record, label, "basic")
        raise refusal or AuthenticationRequired(AuthenticationRequired.NO_CREDENTIALS)

    @staticmethod
    def _authorized(record: ClientRecord, label: Label, method: str) -> Identity:
        if not record.may_use(label.name):
            raise NotAuthorized(f"client {record.name!r} may not use label {label.name!r}")
        return Identity(name=record.name, method=method)

    @defer.inlineCallbacks
    def _certificate(self, chain: tuple[x509.Certificate, ...], label: Label
                     ) -> Generator[defer.Deferred[Any], Any, tuple[Identity | None, EstError | None]]:
        """(Identity, None) if the chain is good for this label, else (None, refusal)."""
        found = self.anchors.verify_path(chain)
        if found is None and len(chain) == 1 and (yield self._fetch_kept_issuers(chain[0])):
            found = self.anchors.verify_path(chain)  # a session resumed from a ticket: the leaf alone
        leaf = chain[0]
        if found is None:
            return None, AuthenticationRequired("client certificate not trusted")
        anchor, intermediates = found
        new = self.anchors.keep(intermediates)
        if new:
            yield self._store_intermediates(new)
        if anchor not in label.cert_anchors:
            return None, NotAuthorized(f"certificates from anchor {anchor!r} are not accepted under this label")
        name = leaf.subject.rfc4514_string() or f"serial:{leaf.serial_number:x}"
        if anchor == OWN_CA:
            record, enroller = yield on_read_thread(self.reads.certificate_and_enroller, leaf.serial_number)
            if record is None:
                return None, AuthenticationRequired("client certificate unknown to this CA")
            if record.revoked:
                return None, AuthenticationRequired("client certificate revoked")
            # A device using the certificate acts for the client that enrolled
            # it, within that client's labels.
            if record.client:
                if enroller is not None and not enroller.may_use(label.name):
                    refusal = NotAuthorized(f"client {enroller.name!r} may not use label {label.name!r}")
                    refusal.client = enroller.name
                    return None, refusal
                name = record.client
        return Identity(name=name, method="cert", certificate=leaf, anchor=anchor), None

    @defer.inlineCallbacks
    def _fetch_kept_issuers(self, cert: x509.Certificate) -> Generator[defer.Deferred[Any], Any, bool]:
        """Intermediates another worker or node kept, on the way up from
        ``cert``, read into this process; True if any was found."""
        found_any = False
        for _ in range(INTERMEDIATE_DEPTH):
            name = self.anchors.missing_issuer(cert)
            if name is None:
                break
            ders: list[bytes] = yield on_read_thread(self.reads.intermediates.intermediates_named, name.public_bytes())
            if not self.anchors.keep(x509.load_der_x509_certificate(der) for der in ders):
                break
            found_any = True
        return found_any

    @defer.inlineCallbacks
    def _store_intermediates(self, certs: list[x509.Certificate]) -> Generator[defer.Deferred[Any], Any, None]:
        """Keep newly seen intermediates for every worker and node. The
        request does not depend on it: a store that cannot take them now is
        logged, and the next full handshake with them tries again."""
        rows = [(c.subject.public_bytes(), c.public_bytes(Encoding.DER)) for c in certs]
        try:
            yield on_store_thread(self.store.intermediates.remember_intermediates, rows)
        except Exception as e:
            self.anchors.forget(certs)
            _log.warn("client intermediates not kept in the store: {error}", error=e)

    @defer.inlineCallbacks
    def _check_digest(self, creds: Credentials, label: Label) -> Generator[defer.Deferred[Any], Any, ClientRecord]:
        params = creds.digest
        assert params is not None  # only called with Digest credentials
        username = params.get("username", "")
        record = yield on_read_thread(self.reads.clients.client, username)
        stored = record.digest_ha1 if record else {}
        if self.ha1_opener is not None and record is not None:
            stored = yield self.ha1_opener.open(record.name, stored)
        verdict = self.digest.check(params, creds.method, creds.uri, stored,
                                    algorithms=label.digest_algorithms, uri_aliases=creds.digest_uri_aliases)
        if verdict == "stale":
            raise AuthenticationRequired("digest nonce expired; retry", stale=True)
        if verdict != "ok" or record is None:
            raise AuthenticationRequired("wrong username or password")
        # Counts are claimed in the store, shared by every worker: a replayed
        # header (same nonce, same or lower nc) is refused everywhere.
        if not (yield self.nonce_counts.claim(*nonce_count(params))):
            raise AuthenticationRequired("digest nonce expired or reused (its count was seen: a replay); retry",
                                         stale=True)
        return record

    @defer.inlineCallbacks
    def _check_password(self, username: str, password: str) -> Generator[defer.Deferred[Any], Any, ClientRecord | None]:
        key = (username, hashlib.sha256(password.encode()).digest())
        hit = self._verified.get(key)
        if hit is not None and time.monotonic() - hit[0] < PASSWORD_CACHE_SECONDS:
            return hit[1]
        # Many connections of one client arriving together share one scrypt
        # run instead of queueing one each on the password thread.
        waiting = self._checking.get(key)
        if waiting is not None:
            mine: defer.Deferred[ClientRecord | None] = defer.Deferred()
            waiting.append(mine)
            return (yield mine)
        self._checking[key] = waiting = []
        try:
            record = yield self._verify(key, username, password)
        except Exception:
            failure = Failure()
            for d in waiting:
                d.errback(failure)
            raise
        finally:
            del self._checking[key]
        for d in waiting:
            d.callback(record)
        return record

    @defer.inlineCallbacks
    def _verify(self, key: tuple[str, bytes], username: str, password: str
                ) -> Generator[defer.Deferred[Any], Any, ClientRecord | None]:
        record = yield on_read_thread(self.reads.clients.client, username)
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
