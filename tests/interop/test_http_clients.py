"""Plain HTTP clients against the sample configuration: curl with Basic,
Digest and ``--anyauth``, and Python requests with HTTPDigestAuth, each
posting an ``openssl req`` CSR as the README shows and checking the answer
with ``openssl``."""
from __future__ import annotations

import re

import requests
from requests.auth import HTTPDigestAuth
from twisted.internet import defer

from .. import support
from ..test_e2e_interop import EST, USER
from .server import SampleServerCase

P256 = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")


def enroll_path(label: str | None) -> str:
    return f"{EST}/{label}/simpleenroll" if label else f"{EST}/simpleenroll"


class HttpClientTests(SampleServerCase):

    @defer.inlineCallbacks
    def curl_enroll_verbose(self, cn: str, *auth: str, label: str | None = None):
        """An openssl CSR for ``cn`` posted with curl -v; checks the certificate; fires with curl's -v output."""
        key, csr = yield self.openssl_csr(cn, P256, san=f"DNS:{cn}.example")
        answer = yield self.curl(enroll_path(label), *auth, "-H", "Content-Type: application/pkcs10",
                                 "--data-binary", f"@{csr}", verbose=True)
        self.assertCertsOnly(answer)
        cert, _ = yield self.certs_from_body(answer.body, cn)
        self.assertEqual(cert.read_text().count("-----BEGIN CERTIFICATE-----"), 1)
        yield self.assertIssued(cert, key, cn, f"{cn}.example")
        row = yield self.issued_row(cert)
        self.assertEqual((row[1], row[3], row[4]), ("valid", label or "default", USER))
        return answer.stderr

    def sent_authorization(self, verbose: str) -> list[str]:
        """The Authorization headers curl -v shows it sent, in order."""
        return re.findall(r"(?m)^> Authorization: (.*?)\r?$", verbose)

    def password(self) -> tuple[str, str]:
        return ("-u", f"{USER}:{self.server.password}")

    @defer.inlineCallbacks
    def test_curl_basic(self):
        verbose = yield self.curl_enroll_verbose("curl-basic", *self.password())
        sent = self.sent_authorization(verbose)
        self.assertEqual(len(sent), 1, verbose)  # -u alone: Basic at once, no challenge first
        self.assertTrue(sent[0].startswith("Basic "), sent)

    @defer.inlineCallbacks
    def test_curl_digest_default_label_sha256(self):
        """curl --digest answers the first Digest challenge: SHA-256 on the default label."""
        verbose = yield self.curl_enroll_verbose("curl-digest", "--digest", *self.password())
        self.assertRegex(verbose, r"< HTTP/1\.1 401")
        sent = self.sent_authorization(verbose)
        self.assertEqual(len(sent), 1, verbose)
        self.assertTrue(sent[0].startswith("Digest "), sent)
        self.assertIn('algorithm=SHA-256', sent[0])

    @defer.inlineCallbacks
    def test_curl_digest_legacy_label_md5(self):
        verbose = yield self.curl_enroll_verbose("curl-digest-legacy", "--digest", *self.password(), label="legacy")
        sent = self.sent_authorization(verbose)
        self.assertEqual(len(sent), 1, verbose)
        self.assertTrue(sent[0].startswith("Digest "), sent)
        self.assertNotIn("SHA-256", sent[0])  # MD5: named MD5 or, as RFC 2617 allows, not named

    @defer.inlineCallbacks
    def test_curl_anyauth_picks_digest(self):
        """curl --anyauth asks without credentials, then picks the strongest scheme offered: Digest."""
        verbose = yield self.curl_enroll_verbose("curl-anyauth", "--anyauth", *self.password())
        self.assertRegex(verbose, r"< HTTP/1\.1 401")
        sent = self.sent_authorization(verbose)
        self.assertEqual(len(sent), 1, verbose)
        self.assertTrue(sent[0].startswith("Digest "), sent)

    # -- Python requests ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def requests_enroll(self, cn: str, label: str | None = None):
        """requests.post with HTTPDigestAuth (in a thread); checks the certificate; fires with the response."""
        key, csr = yield self.openssl_csr(cn, P256)
        response = yield support.in_thread(
            requests.post, self.server.url + enroll_path(label), data=csr.read_bytes(),
            headers={"Content-Type": "application/pkcs10"}, auth=HTTPDigestAuth(USER, self.server.password),
            verify=str(self.server.ca_pem), timeout=30)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.headers["Content-Type"], "application/pkcs7-mime; smime-type=certs-only")
        self.assertEqual([r.status_code for r in response.history], [401])
        self.assertEqual(response.history[0].content, b"")  # a challenge has an empty body
        cert, _ = yield self.certs_from_body(response.content, cn)
        yield self.assertIssued(cert, key, cn)
        row = yield self.issued_row(cert)
        self.assertEqual((row[1], row[3], row[4]), ("valid", label or "default", USER))
        authorization = response.request.headers["Authorization"]
        self.assertTrue(authorization.startswith("Digest "), authorization)
        return response

    def test_requests_digest_default_label(self):
        return self.requests_enroll("requests-digest")

    @defer.inlineCallbacks
    def test_requests_digest_legacy_label(self):
        response = yield self.requests_enroll("requests-digest-legacy", label="legacy")
        self.assertNotIn("SHA-256", response.request.headers["Authorization"])
