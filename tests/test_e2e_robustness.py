"""Robustness through TLS on 127.0.0.1: every route the site serves (read
from the site itself, so new routes are covered without editing this file),
every method, every kind of bad request. The answer is never a 5xx; a 4xx
is a one-line text/plain reason (a Full PKI Response on /fullcmc; a 401 and
a 202 have an empty body, for Bouncy Castle's client); and the
bad requests change nothing: the store's tables (but the audit trail) and
the token's keys are the same before and after. Meanwhile no PKCS#11 or
SQLite call may run on the reactor thread."""
from __future__ import annotations

import base64
import datetime
import hashlib
import random
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import BasicAuth, EstClient, HttpsConnection, make_csr, new_key
from estappliance.client.http import TLSError
from estappliance.client import keygen_commands
from estappliance.pki import cmc, key_package_returns, keygen_request
from estappliance.pki.encoding import decode_body
from estappliance.http_digest import ha1_all
from estappliance.ra.passwords import hash_password
from estappliance.store import Store, on_store_thread
from estappliance.token import on_token_thread
from estappliance.token.session import Token

from . import support
from .distribution_support import certificate, vector

PASSWORD = "correct horse"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}
EST = "/.well-known/est"
MAX_BODY = 16384  # support.config's [server] max_body
# Labels that switch every option on somewhere: all auth modes, manual
# approval, PoP linking, escrow, receipts, PKCS#12 by default, unsigned
# Full PKI Requests, CMC RAs that may revoke.
LABELS = {
    "default": {"profile": "enc", "fullcmc_unsigned": True},
    "strict": {"profile": "enc", "approval": "manual", "pop_linking": True, "escrow": True,
               "serverkeygen_receipts": True, "serverkeygen_default": "pkcs12", "pkcs12_iterations": 10000,
               "cmc_ra_subjects": ["CN=robust RA"], "cmc_ra_revoke": True, "cmc_ra_approval": "auto",
               "cert_anchors": ["ca", "vendor"]},
}
OTHER_METHODS = ("HEAD", "PUT", "DELETE", "PATCH", "OPTIONS")
REALM = "estappliance"  # config.py's default [server] realm


def digest(method: str, path: str, nonce: str, password: str = PASSWORD, response: str | None = None) -> str:
    """A Digest Authorization for dora (RFC 7616, SHA-256, qop=auth)."""
    h = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    if response is None:
        ha1 = h(f"dora:{REALM}:{password}")
        response = h(f"{ha1}:{nonce}:00000001:c0ffee:auth:{h(f'{method}:{path}')}")
    return (f'Digest username="dora", realm="{REALM}", nonce="{nonce}", uri="{path}", algorithm=SHA-256,'
            f' qop=auth, nc=00000001, cnonce="c0ffee", response="{response}"')


@dataclass
class Probe:
    what: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # None: no Content-Length at all
    content_length: int | None = None  # a declared length other than len(body)
    chunked: bool = False  # send the body with Transfer-Encoding: chunked
    identity: str = "anonymous"  # the TLS client: "anonymous", "device" (alice's certificate), or a bad one
    expect: tuple[int, ...] = ()  # the statuses allowed, if it matters which
    cmc: bool = False  # a 4xx may be a Full PKI Response
    raw: bytes | None = None  # the whole request as sent, for HTTP that does not parse

    def wire(self, host: str) -> bytes:
        if self.raw is not None:
            return self.raw
        lines = [f"{self.method} {self.path} HTTP/1.1", *([] if "Host" in self.headers else [f"Host: {host}"]),
                 "User-Agent: robustness"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        body = self.body or b""
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
            body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096])
                            for i in range(0, len(body), 4096)) + b"0\r\n\r\n"
        elif self.content_length is not None:
            lines.append(f"Content-Length: {self.content_length}")
        elif self.body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ProbeConnection(HttpsConnection):
    """Sends a probe's bytes as they are (no header added or fixed)."""

    def __init__(self, *args, der_certificate: bytes | None = None, der_key=None, **kwargs):
        super().__init__(*args, **kwargs)
        if der_certificate is not None:  # one cryptography could not hand to pyOpenSSL
            self._ctx.use_certificate(crypto.load_certificate(crypto.FILETYPE_ASN1, der_certificate))
            self._ctx.use_privatekey(crypto.PKey.from_cryptography_key(der_key))

    def send(self, probe: Probe):
        for attempt in (1, 2):
            self.connect()
            try:
                self._conn.sendall(probe.wire(self._host_header()))
                return self._read_response(probe.method)
            except (TLSError, SSL.Error, OSError):
                self.close()  # the server closed a kept-alive connection: once more on a new one
                if attempt == 2:
                    raise


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 128 else (b"\x81" + bytes([n]) if n < 256 else b"\x82" + n.to_bytes(2, "big"))
    return bytes([tag]) + length + content


def odd_certificate(key, value_tag: int, value: bytes) -> bytes:
    """A self-signed DER certificate (P-256) named CN=<value> with the string
    type and bytes given as they are: OpenSSL takes such names (a
    PrintableString with '@', a TeletexString with 'é'), cryptography cannot
    read them."""
    name = _der(0x30, _der(0x31, _der(0x30, b"\x06\x03\x55\x04\x03" + _der(value_tag, value))))
    now = datetime.datetime.now(datetime.timezone.utc)
    validity = asn1_x509.Validity({"not_before": asn1_x509.Time(name="utc_time", value=now - datetime.timedelta(1)),
                                   "not_after": asn1_x509.Time(name="utc_time", value=now + datetime.timedelta(1))})
    algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}).dump()
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    tbs = _der(0x30, b"\xa0\x03\x02\x01\x02\x02\x01\x07" + algorithm + name + validity.dump() + name + spki)
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _der(0x30, tbs + algorithm + _der(0x03, b"\x00" + signature))


def mutations(der: bytes, seed: int) -> list[bytes]:
    """Truncated and bit-flipped copies of a real message: none is valid DER."""
    rnd = random.Random(seed)
    half = der[:len(der) // 2]
    flipped = bytearray(half)
    for _ in range(3):
        i = rnd.randrange(len(flipped))
        flipped[i] ^= 1 << rnd.randrange(8)
    longer = bytearray(der)
    longer[1] ^= 0x01  # the outer length no longer matches
    return [half, bytes(flipped), der[:-1], bytes(longer)]


class RobustnessTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def setUp(self):
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        self.tmp = tmp
        vendor = certificate("CN=Vendor Root", ca=True)
        (tmp / "vendor.pem").write_bytes(vendor[1].public_bytes(serialization.Encoding.PEM))
        self.server = yield support.start_server(
            self, labels=LABELS, trust_anchors={"vendor": str(tmp / "vendor.pem")},
            profiles={"enc": {"key_usage": ["digitalSignature", "keyEncipherment", "keyAgreement"]}},
            distribution={"firmware_anchors": ["vendor"]})
        yield self.server.add_client("alice", PASSWORD, labels=("*",))
        yield on_store_thread(self.server.store.clients.add_client, "dora", hash_password(PASSWORD), ("*",),
                              digest_ha1=ha1_all("dora", REALM, PASSWORD))
        self.device = yield self.enroll("alice")
        self.stranger = certificate("CN=stranger")  # self-signed: no label trusts it
        self.odd_key = new_key()
        self.unreadable = odd_certificate(self.odd_key, 0x13, b"a@b_c")  # cryptography does not load it
        self.odd_name = odd_certificate(self.odd_key, 0x14, b"\xe9t\xe9")  # loads; its names do not
        # Something of every kind for alice, so that each route has state it could break.
        for argv in (("publish", "symmetric-key", "--client", "alice", "--algorithm", "aes256"),
                     ("publish", "tamp", "status-query", "--client", "alice"),
                     ("publish", "eecert", str(self.pem_file("peer", certificate("CN=peer")[1])), "--client",
                      "alice")):
            code, out = yield self.estctl(*argv)
            self.assertEqual(code, 0, out)
        (tmp / "image.bin").write_bytes(b"firmware image" * 50)
        code, out = yield self.estctl("publish", "firmware", str(tmp / "image.bin"), "--sign", "--client", "alice",
                                      "--package-id", "1.3.6.1.4.1.99999.1.7", "--version", "1", "--hardware",
                                      "1.3.6.1.4.1.99999.2.1")
        self.assertEqual(code, 0, out)
        yield support.in_thread(self.pending_request)
        yield support.in_thread(self.look_around)

    # -- set-up helpers -------------------------------------------------------------------

    def pem_file(self, name, cert) -> Path:
        path = self.tmp / f"{name}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def estctl(self, *argv):
        return self.server.estctl(*argv)

    def enroll(self, name):
        key = new_key()

        def go():
            with EstClient(self.server.url, anchors=[self.server.ca_cert], auth=BasicAuth(name, PASSWORD)) as c:
                return key, c.enroll(key, f"CN={name}-device", link=False)
        return support.in_thread(go)

    def pending_request(self):
        """A request waiting for an operator under the manual label."""
        with EstClient(self.server.url, anchors=[self.server.ca_cert], label="strict",
                       auth=BasicAuth("alice", PASSWORD)) as c:
            csr = make_csr(new_key(), "CN=waiting", challenge_password=c.channel_binding())
            resp = c.request("POST", "simpleenroll", base64.encodebytes(csr.public_bytes(
                serialization.Encoding.DER)), "application/pkcs10", authenticate=True)
        assert resp.status == 202, (resp.status, resp.body)

    def look_around(self):
        """What a device does first: a server-made key (a key package a
        return could name), its PAL (which offers the packages) and the CRLs
        (issued on first demand)."""
        with EstClient(self.server.url, anchors=[self.server.ca_cert], auth=BasicAuth("alice", PASSWORD)) as c:
            keygen_commands.request_key(c, keygen_request.build_csr(x509.Name.from_rfc4514_string("CN=k"), new_key()))
        for label in (None, "strict"):
            with EstClient(self.server.url, anchors=[self.server.ca_cert], label=label,
                           auth=BasicAuth("alice", PASSWORD)) as c:
                for op in ("pal", "crls"):
                    resp = c.request("GET", op, authenticate=True)
                    assert resp.status == 200, (op, resp.status, resp.body)

    # -- what the server holds ------------------------------------------------------------

    def state(self):
        store = self.server.store
        token = self.server.appliance.token

        def tables():
            db = store.db
            names = sorted(db.tables() - {"audit"})
            return {n: sorted(db.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}

        d = on_store_thread(tables)

        def with_keys(rows):
            k = on_token_thread(token.key_labels, "")
            k.addCallback(lambda labels: {**rows, "token keys": sorted(labels)})
            return k
        return d.addCallback(with_keys)

    def watch_threads(self) -> list[str]:
        """Record every Store or Token call made on the reactor thread."""
        seen: list[str] = []
        main = threading.main_thread()

        def guard(cls, name, fn):
            def guarded(*args, **kwargs):
                if threading.current_thread() is main:
                    seen.append(f"{cls.__name__}.{name}")
                return fn(*args, **kwargs)
            self.patch(cls, name, guarded)

        for cls in Store.__mro__:
            if cls.__module__.startswith("estappliance.store"):
                for name, fn in list(vars(cls).items()):
                    if callable(fn) and not name.startswith("__"):
                        guard(cls, name, fn)
        guard(Token, "run", Token.run)
        guard(Token, "_open", Token._open)
        return seen

    # -- the probes ------------------------------------------------------------------------

    def samples(self) -> dict[str, bytes]:
        """A real message of each kind a route takes."""
        key = new_key()
        csr = make_csr(key, "CN=robust").public_bytes(serialization.Encoding.DER)
        pki = cmc.pki_data([cmc.control(1001, "transaction_id", 7), cmc.control(1002, "sender_nonce", b"n" * 16)],
                           [cmc.pkcs10_request(1, csr)])
        return {
            "application/pkcs10": csr,
            "application/pkcs7-mime": cmc.sign_request(pki, key),
            "serverkeygen/return": vector("rfc7191_message1_pem_text.b64"),
            "symmetrickeys/return": vector("rfc7191_message2_pem_text.b64"),
            "firmware/return": vector("rfc4108_pem_text.b64"),
            "tamp/return": vector("rfc5934_tsr_pem_text.b64"),
        }

    def signed_by_odd_name(self) -> dict[str, bytes]:
        """Messages that verify, signed with a certificate whose names cryptography cannot read."""
        cert = x509.load_der_x509_certificate(self.odd_name)
        csr = make_csr(self.odd_key, "CN=robust").public_bytes(serialization.Encoding.DER)
        pki = cmc.pki_data([cmc.control(1001, "transaction_id", 8), cmc.control(1002, "sender_nonce", b"m" * 16)],
                           [cmc.pkcs10_request(1, csr)])
        receipt = key_package_returns.sign("key_package_receipt", key_package_returns.receipt(
            b"\x01" * 16, x509.Name.from_rfc4514_string("CN=alice")), self.odd_key, cert)
        return {"application/pkcs7-mime": cmc.sign_request(pki, self.odd_key, cert), "application/cms": receipt}

    def nonce(self) -> str:
        """A Digest nonce from a 401 challenge."""
        with EstClient(self.server.url, anchors=[self.server.ca_cert]) as c:
            resp = c.request("GET", "pal")
        challenge = next(v for v in resp.header_values("www-authenticate") if v.startswith("Digest"))
        return challenge.split('nonce="', 1)[1].split('"', 1)[0]

    def probes(self, nonce: str) -> list[Probe]:
        site = self.server.listener.factory.wrappedFactory.resource
        samples = self.samples()
        odd_signed = self.signed_by_odd_name()
        basic = BASIC
        wrong = [
            ("wrong password", {"Authorization": "Basic " + base64.b64encode(b"alice:nope").decode()}, "anonymous"),
            ("unknown user", {"Authorization": "Basic " + base64.b64encode(b"mallory:nope").decode()}, "anonymous"),
            ("Basic not base64", {"Authorization": "Basic %%%"}, "anonymous"),
            ("Basic without colon", {"Authorization": "Basic " + base64.b64encode(b"alice").decode()}, "anonymous"),
            ("Digest garbage", {"Authorization": 'Digest username="alice", nonce=, response="x'}, "anonymous"),
            ("unknown scheme", {"Authorization": "Bearer abc"}, "anonymous"),
            ("untrusted certificate", {}, "stranger"),
            ("certificate cryptography cannot load", {}, "unreadable"),
            ("certificate with names cryptography cannot read", {}, "odd name"),
            # Digest for dora, who has Digest credentials: checked all the way to the response.
            ("Digest, wrong password", lambda m, path: {"Authorization": digest(m, path, nonce, "nope")},
             "anonymous"),
            ("Digest, response not ASCII", lambda m, path: {"Authorization": digest(
                m, path, nonce, response="\xe9" * 64)}, "anonymous"),
            ("Digest, forged nonce", lambda m, path: {"Authorization": digest(
                m, path, "MTA6YWFhYTqqqqqqqqqqqqqqqqqqqqqqqq")}, "anonymous"),
        ]
        out: list[Probe] = []
        for segments, op in sorted(site.operations.items()):
            route = "/".join(segments)
            accepts = op.accepts[0] if op.accepts else "application/octet-stream"
            sample = samples.get(route) or samples.get(accepts) or samples["application/pkcs10"]
            b64 = base64.encodebytes(sample)
            ctype = {"Content-Type": accepts}
            is_cmc = route == "fullcmc"
            methods = sorted({m.decode() for m in op.handlers} | set(OTHER_METHODS))
            for label in ("", "strict/"):
                path = f"{EST}/{label}{route}"
                for method in methods:
                    served = method.encode() in op.handlers
                    if not served:
                        out.append(Probe("method not served", method, path, {**basic, **ctype}, b64,
                                         expect=(405,)))
                        continue
                    posting = method == "POST"
                    p = dict(method=method, path=path, cmc=is_cmc)
                    out += [
                        Probe("no body", headers={**basic, **ctype}, **p),
                        Probe("empty body", headers={**basic, **ctype}, body=b"", **p),
                        Probe("garbage", headers={**basic, **ctype}, body=bytes(range(256)) * 3, **p),
                        Probe("garbage base64", headers={**basic, **ctype}, body=b"AAAA!!==\n" * 9, **p),
                        Probe("over the size limit", headers={**basic, **ctype}, body=b"A" * (MAX_BODY + 1),
                              expect=(413,), **p),
                        Probe("over the size limit, chunked", headers={**basic, **ctype}, chunked=True,
                              body=b"A" * (MAX_BODY + 1), expect=(413,), **p),
                        # Answered at once: the client never sends the rest.
                        Probe("declared length far over the limit", headers={**basic, **ctype}, body=b"AAAA",
                              content_length=10 ** 12, expect=(413,), **p),
                        Probe("over the limit with Expect: 100-continue", content_length=10 ** 9, body=b"",
                              headers={**basic, **ctype, "Expect": "100-continue"}, expect=(413,), **p),
                        Probe("wrong Content-Type", headers={**basic, "Content-Type": "text/html"}, body=b64,
                              expect=(415,) if posting else (), **p),
                        Probe("unknown label", headers={**basic, **ctype}, body=b64,
                              expect=(404,), **{**p, "path": f"{EST}/no-such-label/{route}"}),
                        Probe("no credentials", headers=ctype, body=b64, **p),
                    ]
                    if accepts in odd_signed:
                        out.append(Probe("signed with an unreadable name", headers={**basic, **ctype},
                                         body=base64.encodebytes(odd_signed[accepts]), **p))
                    for n, bad in enumerate(mutations(sample, zlib.crc32(route.encode()))):
                        out.append(Probe(f"damaged message {n} (DER)", headers={**basic, **ctype}, body=bad, **p))
                        out.append(Probe(f"damaged message {n} (base64)", headers={**basic, **ctype},
                                         body=base64.encodebytes(bad), **p))
                        out.append(Probe(f"damaged message {n} (client certificate)", headers=ctype,
                                         body=base64.encodebytes(bad), identity="device", **p))
                    if label == "":  # wrong credentials cost a password hash each: one label is enough
                        for what, headers, identity in wrong:
                            headers = headers(method, path) if callable(headers) else headers
                            out.append(Probe(what, headers={**headers, **ctype}, body=b64, identity=identity, **p))
        return out + self.site_probes()

    def site_probes(self) -> list[Probe]:
        """HTTP that does not parse, and paths and headers no route expects."""
        auth = f"Authorization: {BASIC['Authorization']}\r\n"
        post = f"POST {EST}/simpleenroll HTTP/1.1\r\nHost: x\r\n{auth}"
        malformed = {
            "request line too long": f"GET {EST}/{'a' * 20000} HTTP/1.1\r\nHost: x\r\n\r\n",
            "header too long": f"GET {EST}/cacerts HTTP/1.1\r\nHost: x\r\nX: {'a' * 20000}\r\n\r\n",
            "too many headers": f"GET {EST}/cacerts HTTP/1.1\r\nHost: x\r\n" + "X: a\r\n" * 600 + "\r\n",
            "header without colon": f"GET {EST}/cacerts HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n",
            "Content-Length not a number": post + "Content-Length: abc\r\n\r\n",
            "negative Content-Length": post + "Content-Length: -5\r\n\r\n",
            "two Content-Lengths": post + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "Content-Length and chunked": post + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "bad chunk size": post + "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            "unknown Transfer-Encoding": post + "Transfer-Encoding: gzip\r\n\r\n",
            "unknown HTTP version": f"GET {EST}/cacerts HTTP/9.9\r\nHost: x\r\n\r\n",
            "no request line": "GARBAGE\r\n\r\n",
            "path not ASCII": f"GET {EST}/\xe9/cacerts HTTP/1.1\r\nHost: x\r\n\r\n",
        }
        out = [Probe(what, "GET", "(malformed)", raw=raw.encode("latin-1"), expect=(400,))
               for what, raw in malformed.items()]
        for what, path, headers in [
                ("label not UTF-8", f"{EST}/%ff/cacerts", {}),
                ("label NUL", f"{EST}/%00/cacerts", {}),
                ("empty label", f"{EST}//pal", BASIC),
                ("label twice", f"{EST}/strict/strict/cacerts", {}),
                ("dot segments", f"{EST}/strict/../cacerts", {}),
                ("not EST", "/index.html", {}),
                ("EST root", f"{EST}/", {}),
                ("page not a number", f"{EST}/pal?page=abc", BASIC),
                ("page too big", f"{EST}/pal?page=999999999999999999999999", BASIC),
                ("page not UTF-8", f"{EST}/pal?page=%ff%00", BASIC),
                ("Host not a host", f"{EST}/pal", {**BASIC, "Host": "\xe9\xe9:99999999"}),
                ("Accept junk", f"{EST}/pal", {**BASIC, "Accept": "application/json;q=nan, text/xml;q=inf, ;;;,"}),
                ("Basic not UTF-8", f"{EST}/pal",
                 {"Authorization": "Basic " + base64.b64encode(b"al\xffice:pw\xfe").decode()}),
                ("Digest not ASCII", f"{EST}/pal", {"Authorization": 'Digest username="\xe9", nonce="\xe9"'})]:
            out.append(Probe(what, "GET", path, headers))
        for what, headers in [("Content-Type junk", {"Content-Type": ";;;"}),
                              ("Content-Type not ASCII", {"Content-Type": "\xe9/\xe9"}),
                              ("Accept junk", {"Accept": "application/pkcs12;q=zz;;"})]:
            out.append(Probe(what, "POST", f"{EST}/serverkeygen", {**BASIC, **headers}, b""))
        return out

    def send_all(self, probes: list[Probe], lanes: int = 4):
        """Send the probes over a few kept-alive connections per identity;
        fires with [(probe, response)]."""
        identities = {
            "anonymous": {},
            "device": {"client_cert": [self.device[1]], "client_key": self.device[0]},
            "stranger": {"client_cert": [self.stranger[1]], "client_key": self.stranger[0]},
            "unreadable": {"der_certificate": self.unreadable, "der_key": self.odd_key},
            "odd name": {"der_certificate": self.odd_name, "der_key": self.odd_key},
        }

        def lane(batch):
            conns = {}
            results = []
            try:
                for probe in batch:
                    conn = conns.get(probe.identity)
                    if conn is None:
                        conn = conns[probe.identity] = ProbeConnection(
                            "127.0.0.1", self.server.port, anchors=[self.server.ca_cert], timeout=5,
                            **identities[probe.identity])
                    try:
                        results.append((probe, conn.send(probe)))
                    except (TLSError, SSL.Error, OSError) as e:  # no answer in time, or the connection dropped
                        conn.close()
                        results.append((probe, e))
            finally:
                for conn in conns.values():
                    conn.close()
            return results

        d = defer.gatherResults([support.in_thread(lane, probes[i::lanes]) for i in range(lanes)],
                                consumeErrors=True)
        return d.addCallback(lambda parts: [pair for part in parts for pair in part])

    def judge(self, probe: Probe, resp) -> str | None:
        """What is wrong with the answer to a probe, or None."""
        if isinstance(resp, Exception):
            return f"{probe.method} {probe.path} [{probe.what}]: no answer ({resp})"
        where = f"{probe.method} {probe.path} [{probe.what}]: {resp.status}"
        ctype = resp.header("content-type") or ""
        if resp.status >= 500:
            return f"{where} {resp.body[:120]!r}"
        if probe.expect and resp.status not in probe.expect:
            return f"{where}, expected {probe.expect}: {resp.body[:120]!r}"
        if resp.status == 401 and not resp.header_values("www-authenticate"):
            return f"{where} without WWW-Authenticate"
        if resp.status == 405 and not resp.header("allow"):
            return f"{where} without Allow"
        if resp.status == 202 and not resp.header("retry-after"):
            return f"{where} without Retry-After"
        if resp.status in (401, 202) and not probe.cmc:
            # Empty: Bouncy Castle's client closes these unread, and its
            # stream throws if more than a byte of the body is left.
            if resp.body or resp.header("content-length") != "0":
                return f"{where} with a body: {resp.body[:120]!r}"
            return None
        if 400 <= resp.status < 500:
            if probe.cmc and ctype.startswith("application/pkcs7-mime; smime-type=CMC-response"):
                try:
                    info = cms.ContentInfo.load(decode_body(resp.body))
                    info.native  # noqa: B018 - parse it all
                except Exception as e:  # noqa: BLE001 - any failure is the finding
                    return f"{where} with an unreadable CMC response: {e}"
                if info["content_type"].native != "signed_data":
                    return f"{where} with a CMC response that is not SignedData"
                return None
            if ctype != "text/plain; charset=utf-8":
                return f"{where} with Content-Type {ctype!r}"
            if probe.method != "HEAD" and (not resp.body.endswith(b"\n") or resp.body.count(b"\n") != 1
                                           or len(resp.body.strip()) == 0):
                return f"{where} with a body that is not one line: {resp.body[:200]!r}"
        return None

    @defer.inlineCallbacks
    def test_every_route_survives_bad_requests(self):
        nonce = yield support.in_thread(self.nonce)
        probes = self.probes(nonce)
        routes = {p.path.rsplit("/est/", 1)[1] for p in probes if "/est/" in p.path}
        # Every route of RFC 7030 and RFC 8295 is there, under both labels.
        for route in ("cacerts", "simpleenroll", "simplereenroll", "csrattrs", "serverkeygen", "serverkeygen/return",
                      "fullcmc", "pal", "eecerts", "crls", "symmetrickeys", "symmetrickeys/return", "firmware",
                      "firmware/return", "tamp", "tamp/return"):
            self.assertIn(route, routes)
            self.assertIn(f"strict/{route}", routes)
        # Requests that may legitimately change state (an authenticated GET
        # serves and records) go last; everything else must change nothing.
        serving = [p for p in probes if p.method == "GET" and p.what != "unknown label"
                   and (p.identity == "device" or p.headers.get("Authorization") == BASIC["Authorization"])]
        harmless = [p for p in probes if p not in serving]
        reactor_calls = self.watch_threads()
        before = yield self.state()
        answers = yield self.send_all(harmless)
        after = yield self.state()
        answers += (yield self.send_all(serving))
        problems = [f for f in (self.judge(p, r) for p, r in answers) if f]
        self.assertEqual(problems, [], f"{len(problems)} of {len(answers)} answers wrong:\n" + "\n".join(problems))
        changed = {t: (before[t], after.get(t)) for t in before if before[t] != after.get(t)}
        self.assertEqual(changed, {}, "bad requests changed the server's state")
        self.assertEqual(sorted(set(reactor_calls)), [], "store or token used on the reactor thread")
        self.assertGreater(len(answers), 1000)
