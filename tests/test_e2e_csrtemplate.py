"""End to end over TLS: a label that offers its profile as an RFC 9908 CSR
template in /csrattrs (next to the classic list and RFC 8295 Appendix B's
form); ``est`` builds its CSR from it; the server takes CSRs that follow it
and refuses, with the reason, one that contradicts it."""
from __future__ import annotations

import base64
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyasn1.codec.der import decoder
from pyasn1_alt_modules import rfc7030, rfc9908
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import BasicAuth, EstClient, EstClientError
from estappliance.client.cli import main as est_main

from . import support
from .test_e2e_distribution import captured

PASSWORD = "correct horse"


class CsrTemplateTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(
            self,
            profiles={"devices": {"key_types": ["ec-p384"], "subject_template": "CN={CN},OU=Devices,O=Example",
                                  "required_extensions": ["subjectAltName"]}},
            labels={"tpl": {"profile": "devices", "csr_template": True, "auth": ["basic"]}})
        yield self.server.add_client("alice", PASSWORD, labels=("default", "tpl"))
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir()
        (self.tmp / "ca.pem").write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        (self.tmp / "pw").write_text(PASSWORD)

    def est(self, *argv):
        common = ["--server", self.server.url, "--anchor", str(self.tmp / "ca.pem"), "--label", "tpl",
                  "--user", "alice", "--password-file", str(self.tmp / "pw")]
        return support.in_thread(captured, est_main, [argv[0], *common, *argv[1:]])

    @defer.inlineCallbacks
    def test_csrattrs_carries_the_template_and_est_follows_it(self):
        resp = yield self.server.raw("GET", "/.well-known/est/tpl/csrattrs")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-type"), "application/csrattrs")
        attrs, rest = decoder.decode(base64.b64decode(resp.body), asn1Spec=rfc7030.CsrAttrs())
        self.assertEqual(rest, b"")
        types = [str(a["attribute"]["attrType"]) for a in attrs if a.getName() == "attribute"]
        self.assertIn("1.2.840.113549.1.9.16.2.61", types)  # RFC 9908
        self.assertIn("1.2.840.113549.1.9.25.5", types)  # RFC 8295 Appendix B
        self.assertIn("1.2.840.10045.2.1", types)  # and the classic key-type attribute for older clients
        tpl_attr = next(a["attribute"] for a in attrs if a.getName() == "attribute"
                        and a["attribute"]["attrType"] == rfc9908.id_aa_certificationRequestInfoTemplate)
        tpl, rest = decoder.decode(bytes(tpl_attr["attrValues"][0]), asn1Spec=rfc9908.CertificationRequestInfoTemplate())
        self.assertEqual(rest, b"")
        self.assertEqual(len(tpl["subject"]["rdnSequence"]), 3)

        code, out, err = yield self.est("csrattrs")
        self.assertEqual(code, 0, err)
        self.assertIn("CSR template: subject O=Example, OU=Devices, CN=?; key ec-p384; extensions"
                      " subjectAltName=?, keyUsage (critical), extendedKeyUsage", out)

        code, out, err = yield self.est("enroll", "--subject", "CN=dev-1", "--key-out", str(self.tmp / "k.pem"),
                                        "-o", str(self.tmp / "c.pem"))
        self.assertNotEqual(code, 0)
        self.assertIn("asks for a subjectAltName", err)
        code, out, err = yield self.est("enroll", "--subject", "CN=dev-1", "--dns", "dev-1.example",
                                        "--key-out", str(self.tmp / "k.pem"), "-o", str(self.tmp / "c.pem"))
        self.assertEqual(code, 0, err)
        cert = x509.load_pem_x509_certificate((self.tmp / "c.pem").read_bytes())
        self.assertEqual(cert.subject.rfc4514_string(), "CN=dev-1,OU=Devices,O=Example")
        self.assertEqual(cert.public_key().curve.name, "secp384r1")  # the template's key type

    @defer.inlineCallbacks
    def test_a_csr_contradicting_the_template_is_refused_with_the_reason(self):
        key = ec.generate_private_key(ec.SECP384R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name.from_rfc4514_string("CN=dev-2,OU=Elsewhere"))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("dev-2.example")]), False)
               .sign(key, hashes.SHA384()))

        def post():
            with EstClient(self.server.url, anchors=[self.server.ca_cert], label="tpl",
                           auth=BasicAuth("alice", PASSWORD)) as c:
                return c.simpleenroll(csr)
        e = yield self.assertFailure(support.in_thread(post), EstClientError)
        self.assertEqual(e.status, 400)
        self.assertIn("CSR subject OU='Elsewhere' contradicts the CSR template's 'Devices'", str(e))
        count = yield self.server.count_certificates()
        self.assertEqual(count, 2)  # the TLS server and content signer certificates only
