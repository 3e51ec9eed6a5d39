"""The independent decoder check: every structure the appliance emits is
decoded with pyasn1 + pyasn1-alt-modules (an implementation we do not use to
build them), must leave no trailing bytes, must re-encode to the very same
DER, and must carry the fields RFC 5280 / RFC 5652 / RFC 7030 ask for."""
from __future__ import annotations

import base64
import datetime
import hashlib
import unittest as pyunittest
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyasn1.codec.der import decoder, encoder
from pyasn1_alt_modules import rfc2985, rfc2986, rfc4055, rfc5280, rfc5480, rfc5652
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import BasicAuth, HttpsConnection, make_csr, new_key
from estappliance.pki.cms import NotCertsOnly, certs_only, read_certs_only
from estappliance.pki.encoding import decode_body

from . import support

VECTORS = Path("/work/shared/spec/vectors")
PASSWORD = "correct horse"
ID_KP_CMC_RA = rfc5280.univ.ObjectIdentifier("1.3.6.1.5.5.7.3.28")
ECDSA_ALGS = (rfc5480.ecdsa_with_SHA256, rfc5480.ecdsa_with_SHA384, rfc5480.ecdsa_with_SHA512)
RSA_PKCS1_ALGS = (rfc4055.sha256WithRSAEncryption, rfc4055.sha384WithRSAEncryption,
                  rfc4055.sha512WithRSAEncryption)


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class Asn1Mixin(support.ExactDecoding):
    """Decode with pyasn1, demand no trailing bytes and a byte-exact re-encoding."""

    def signed_data(self, der: bytes, n_certs: int):
        """A certs-only ContentInfo(SignedData) per RFC 7030 4.1.3 / RFC 5272 3.2."""
        ci = self.decode(der, rfc5652.ContentInfo())
        self.assertEqual(ci["contentType"], rfc5652.id_signedData)
        sd = self.decode(bytes(ci["content"]), rfc5652.SignedData())
        self.assertEqual(int(sd["version"]), 1)
        self.assertEqual(len(sd["digestAlgorithms"]), 0)
        self.assertEqual(sd["encapContentInfo"]["eContentType"], rfc5652.id_data)
        self.assertFalse(sd["encapContentInfo"]["eContent"].isValue, "eContent must be absent")
        self.assertTrue(sd["certificates"].isValue, "certificates must be present")
        self.assertEqual(len(sd["certificates"]), n_certs)
        self.assertFalse(sd["crls"].isValue, "no CRLs in a certs-only response")
        self.assertEqual(len(sd["signerInfos"]), 0)
        certs = []
        for choice in sd["certificates"]:
            self.assertEqual(choice.getName(), "certificate")
            certs.append(encoder.encode(choice["certificate"]))
        return certs

    def certificate(self, der: bytes):
        cert = self.decode(der, rfc5280.Certificate())
        tbs = cert["tbsCertificate"]
        self.assertEqual(int(tbs["version"]), 2)  # v3
        self.assertEqual(encoder.encode(tbs["signature"]), encoder.encode(cert["signatureAlgorithm"]))
        serial = int(tbs["serialNumber"])
        self.assertGreater(serial, 0)
        self.assertGreaterEqual(serial.bit_length(), 64)
        self.assertLessEqual(len(encoder.encode(tbs["serialNumber"])) - 2, 20)  # RFC 5280 4.1.2.2
        self.check_signature_algorithm(cert["signatureAlgorithm"], cert["signature"].asOctets())
        self.check_validity(tbs["validity"])
        return cert

    def check_signature_algorithm(self, alg, signature: bytes):
        oid = alg["algorithm"]
        if oid in ECDSA_ALGS:
            # RFC 5758 3.2: parameters absent; the value is a DER ECDSA-Sig-Value.
            self.assertFalse(alg["parameters"].isValue, "ECDSA parameters must be absent")
            sig = self.decode(signature, rfc5480.ECDSA_Sig_Value())
            self.assertGreater(int(sig["r"]), 0)
            self.assertGreater(int(sig["s"]), 0)
        elif oid in RSA_PKCS1_ALGS:
            # RFC 4055 5: parameters NULL.
            self.assertTrue(alg["parameters"].isValue)
            self.assertEqual(bytes(alg["parameters"]), b"\x05\x00")
        else:
            self.fail(f"unexpected signature algorithm {oid}")

    def check_validity(self, validity):
        for which in ("notBefore", "notAfter"):
            t = validity[which]
            dt = t[t.getName()].asDateTime
            # RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
            self.assertEqual(t.getName(), "utcTime" if dt.year < 2050 else "generalTime")
        now = datetime.datetime.now(datetime.timezone.utc)
        not_before = validity["notBefore"][validity["notBefore"].getName()].asDateTime
        not_after = validity["notAfter"][validity["notAfter"].getName()].asDateTime
        self.assertLessEqual(not_before, now)
        self.assertGreater(not_after, now)

    def extensions(self, cert) -> dict:
        """extnID -> (critical, decoded value); each extension at most once, each re-encodes exactly."""
        found = {}
        for ext in cert["tbsCertificate"]["extensions"]:
            oid = ext["extnID"]
            self.assertNotIn(oid, found, f"extension {oid} appears twice")
            spec = rfc5280.certificateExtensionsMap[oid]
            value = self.decode(bytes(ext["extnValue"]), spec)
            found[oid] = (bool(ext["critical"]), value)
        return found

    def ski_of_key(self, cert) -> bytes:
        """RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits."""
        spki = cert["tbsCertificate"]["subjectPublicKeyInfo"]
        return hashlib.sha1(spki["subjectPublicKey"].asOctets()).digest()

    def key_usage_bits(self, ku) -> set[str]:
        return {name for name, bit in ku.namedValues.items() if len(ku) > bit and ku[bit]}


class EmittedStructureTests(Asn1Mixin, unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(self)
        yield self.server.add_client("alice", PASSWORD)
        self.key = new_key("ec-p256")
        csr = make_csr(self.key, "CN=asn1-device,O=Example", dns_names=("asn1-device.example",))
        self.cacerts_resp, self.enroll_resp, self.tls_cert = yield support.in_thread(self.exchange, csr)
        self.ca_der = der_of(self.server.ca_cert)

    def exchange(self, csr):
        conn = HttpsConnection("127.0.0.1", self.server.port, anchors=[self.server.ca_cert])
        try:
            cacerts = conn.request("GET", "/.well-known/est/cacerts", {}, b"")
            enroll = conn.request(
                "POST", "/.well-known/est/simpleenroll",
                {"Authorization": BasicAuth("alice", PASSWORD).header(), "Content-Type": "application/pkcs10",
                 "Content-Transfer-Encoding": "base64"},
                base64.encodebytes(csr.public_bytes(serialization.Encoding.DER)))
            return cacerts, enroll, conn.server_certificate()
        finally:
            conn.close()

    def enrolled_der(self) -> bytes:
        self.assertEqual(self.enroll_resp.status, 200, self.enroll_resp.body)
        (cert_der,) = self.signed_data(decode_body(self.enroll_resp.body), 1)
        return cert_der

    # -- CMS ----------------------------------------------------------------------

    def test_cacerts_body(self):
        self.assertEqual(self.cacerts_resp.status, 200)
        certs = self.signed_data(decode_body(self.cacerts_resp.body), 1)
        self.assertEqual(certs, [self.ca_der])

    def test_simpleenroll_body(self):
        cert_der = self.enrolled_der()
        cert = x509.load_der_x509_certificate(cert_der)
        self.assertEqual(cert.public_key(), self.key.public_key())
        self.assertEqual(cert.subject.rfc4514_string(), "CN=asn1-device,O=Example")

    def test_certs_only_of_several_certificates(self):
        """More than one certificate: the SET OF must be in DER order, which the
        byte-exact pyasn1 re-encoding checks."""
        ee = x509.load_der_x509_certificate(self.enrolled_der())
        der = certs_only([self.server.ca_cert, ee, self.tls_cert])
        certs = self.signed_data(der, 3)
        self.assertEqual(sorted(certs), sorted([self.ca_der, der_of(ee), der_of(self.tls_cert)]))

    # -- certificates ----------------------------------------------------------------

    def test_end_entity_certificate(self):
        cert = self.certificate(self.enrolled_der())
        ca = self.decode(self.ca_der, rfc5280.Certificate())
        tbs = cert["tbsCertificate"]
        self.assertEqual(encoder.encode(tbs["issuer"]), encoder.encode(ca["tbsCertificate"]["subject"]))
        ext = self.extensions(cert)

        critical, bc = ext[rfc5280.id_ce_basicConstraints]
        self.assertTrue(critical, "basicConstraints must be critical")
        self.assertFalse(bool(bc["cA"]))
        self.assertFalse(bc["pathLenConstraint"].isValue)

        critical, ku = ext[rfc5280.id_ce_keyUsage]
        self.assertTrue(critical, "keyUsage must be critical")
        bits = self.key_usage_bits(ku)
        self.assertIn("digitalSignature", bits)
        self.assertNotIn("keyCertSign", bits)
        self.assertNotIn("cRLSign", bits)

        critical, ski = ext[rfc5280.id_ce_subjectKeyIdentifier]
        self.assertFalse(critical)
        self.assertEqual(bytes(ski), self.ski_of_key(cert))

        ca_ext = self.extensions(ca)
        critical, aki = ext[rfc5280.id_ce_authorityKeyIdentifier]
        self.assertFalse(critical)
        self.assertEqual(bytes(aki["keyIdentifier"]), bytes(ca_ext[rfc5280.id_ce_subjectKeyIdentifier][1]))

        critical, eku = ext[rfc5280.id_ce_extKeyUsage]
        self.assertIn(rfc5280.id_kp_clientAuth, list(eku))

        critical, san = ext[rfc5280.id_ce_subjectAltName]
        self.assertFalse(critical)  # the subject is not empty
        self.assertEqual([(gn.getName(), str(gn[gn.getName()])) for gn in san],
                         [("dNSName", "asn1-device.example")])

    def test_ec_end_entity_key_usage_allowed_for_ec(self):
        """RFC 5480 section 3 as updated by RFC 8813: a certificate for an
        id-ecPublicKey key MUST NOT assert keyEncipherment or dataEncipherment."""
        cert = self.certificate(self.enrolled_der())
        spki = cert["tbsCertificate"]["subjectPublicKeyInfo"]
        self.assertEqual(spki["algorithm"]["algorithm"], rfc5480.id_ecPublicKey)
        _, ku = self.extensions(cert)[rfc5280.id_ce_keyUsage]
        bits = self.key_usage_bits(ku)
        self.assertNotIn("keyEncipherment", bits)
        self.assertNotIn("dataEncipherment", bits)

    def test_ca_certificate(self):
        cert = self.certificate(self.ca_der)
        tbs = cert["tbsCertificate"]
        self.assertEqual(encoder.encode(tbs["issuer"]), encoder.encode(tbs["subject"]))
        ext = self.extensions(cert)
        critical, bc = ext[rfc5280.id_ce_basicConstraints]
        self.assertTrue(critical)
        self.assertTrue(bool(bc["cA"]))
        critical, ku = ext[rfc5280.id_ce_keyUsage]
        self.assertTrue(critical)
        self.assertTrue({"keyCertSign", "cRLSign"} <= self.key_usage_bits(ku))
        critical, ski = ext[rfc5280.id_ce_subjectKeyIdentifier]
        self.assertFalse(critical)
        self.assertEqual(bytes(ski), self.ski_of_key(cert))
        if rfc5280.id_ce_authorityKeyIdentifier in ext:
            _, aki = ext[rfc5280.id_ce_authorityKeyIdentifier]
            self.assertEqual(bytes(aki["keyIdentifier"]), bytes(ski))
        self.assertEqual(cert["signatureAlgorithm"]["algorithm"], rfc5480.ecdsa_with_SHA256)

    def test_tls_server_certificate(self):
        cert = self.certificate(der_of(self.tls_cert))
        ca = self.decode(self.ca_der, rfc5280.Certificate())
        self.assertEqual(encoder.encode(cert["tbsCertificate"]["issuer"]),
                         encoder.encode(ca["tbsCertificate"]["subject"]))
        ext = self.extensions(cert)
        critical, bc = ext[rfc5280.id_ce_basicConstraints]
        self.assertTrue(critical)
        self.assertFalse(bool(bc["cA"]))
        critical, ku = ext[rfc5280.id_ce_keyUsage]
        self.assertTrue(critical)
        self.assertIn("digitalSignature", self.key_usage_bits(ku))
        _, eku = ext[rfc5280.id_ce_extKeyUsage]
        self.assertIn(rfc5280.id_kp_serverAuth, list(eku))
        self.assertIn(ID_KP_CMC_RA, list(eku))  # RFC 7030 3.6.1
        _, san = ext[rfc5280.id_ce_subjectAltName]
        names = [(gn.getName(), bytes(gn[gn.getName()])) for gn in san]
        self.assertIn(("dNSName", b"localhost"), names)
        self.assertIn(("iPAddress", bytes([127, 0, 0, 1])), names)
        _, aki = ext[rfc5280.id_ce_authorityKeyIdentifier]
        ca_ski = self.extensions(ca)[rfc5280.id_ce_subjectKeyIdentifier][1]
        self.assertEqual(bytes(aki["keyIdentifier"]), bytes(ca_ski))

    def test_tls_certificate_file_matches_what_is_served(self):
        s = self.server.appliance.config.server
        chain = x509.load_pem_x509_certificates(s.tls_cert.read_bytes())
        self.assertEqual(chain[0], self.tls_cert)
        self.assertEqual(chain[1:], [self.server.ca_cert])
        for cert in chain:
            self.certificate(der_of(cert))

    # -- CSR ---------------------------------------------------------------------------

    def test_csr_from_make_csr(self):
        for key_type, alg in (("ec-p256", rfc5480.ecdsa_with_SHA256), ("ec-p384", rfc5480.ecdsa_with_SHA384),
                              ("rsa2048", rfc4055.sha256WithRSAEncryption)):
            key = new_key(key_type)
            der = make_csr(key, "CN=csr-device,O=Example", dns_names=("a.example", "b.example"),
                           challenge_password="s3cret+/=").public_bytes(serialization.Encoding.DER)
            req = self.decode(der, rfc2986.CertificationRequest())
            info = req["certificationRequestInfo"]
            self.assertEqual(int(info["version"]), 0)
            self.assertEqual(req["signatureAlgorithm"]["algorithm"], alg)
            self.check_signature_algorithm(req["signatureAlgorithm"], req["signature"].asOctets())
            spki = encoder.encode(info["subjectPKInfo"])
            self.assertEqual(spki, key.public_key().public_bytes(serialization.Encoding.DER,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
            attrs = {a["type"]: a["values"] for a in info["attributes"]}
            self.assertEqual(set(attrs), {rfc2985.pkcs_9_at_challengePassword, rfc2985.pkcs_9_at_extensionRequest})
            (pw,) = attrs[rfc2985.pkcs_9_at_challengePassword]
            pw = self.decode(bytes(pw), rfc2985.DirectoryString())
            self.assertEqual(str(pw[pw.getName()]), "s3cret+/=")
            (exts,) = attrs[rfc2985.pkcs_9_at_extensionRequest]
            exts = self.decode(bytes(exts), rfc5280.Extensions())
            self.assertEqual([e["extnID"] for e in exts], [rfc5280.id_ce_subjectAltName])
            san = self.decode(bytes(exts[0]["extnValue"]), rfc5280.SubjectAltName())
            self.assertEqual([str(gn["dNSName"]) for gn in san], ["a.example", "b.example"])


class RsaCaTests(Asn1Mixin, unittest.TestCase):
    """An RSA CA: PKCS#1 v1.5 signatures from the token, NULL parameters."""

    timeout = 60

    @defer.inlineCallbacks
    def test_rsa_ca_and_issued_certificate(self):
        server = yield support.start_server(self, ca={"key_type": "rsa2048"})
        yield server.add_client("alice", PASSWORD)

        def enroll():
            conn = HttpsConnection("127.0.0.1", server.port, anchors=[server.ca_cert])
            try:
                csr = make_csr(new_key("ec-p256"), "CN=rsa-issued")
                return conn.request("POST", "/.well-known/est/simpleenroll",
                                    {"Authorization": BasicAuth("alice", PASSWORD).header(),
                                     "Content-Type": "application/pkcs10"},
                                    base64.b64encode(csr.public_bytes(serialization.Encoding.DER)))
            finally:
                conn.close()
        resp = yield support.in_thread(enroll)
        self.assertEqual(resp.status, 200, resp.body)
        (ee_der,) = self.signed_data(decode_body(resp.body), 1)
        for der in (der_of(server.ca_cert), ee_der):
            cert = self.certificate(der)
            self.assertEqual(cert["signatureAlgorithm"]["algorithm"], rfc4055.sha256WithRSAEncryption)
            self.assertEqual(len(cert["signature"].asOctets()), 256)
        x509.load_der_x509_certificate(ee_der).verify_directly_issued_by(server.ca_cert)


class RFC7030VectorTests(Asn1Mixin, unittest.TestCase):
    def vector(self, name: str) -> bytes:
        if not VECTORS.is_dir():
            raise pyunittest.SkipTest(f"{VECTORS} is missing")
        return decode_body((VECTORS / name).read_bytes())

    def test_a1_cacerts(self):
        with warnings.catch_warnings():
            # The RFC's SET OF certificates is not in DER order; cryptography
            # falls back to BER for it (with a UserWarning).
            warnings.simplefilter("ignore")
            certs = read_certs_only(self.vector("rfc7030_A1_cacerts.b64"))
        self.assertEqual([c.subject.rfc4514_string() for c in certs],
                         ["CN=estExampleCA OwO", "CN=estExampleCA NwO", "CN=estExampleCA OwN",
                          "CN=estExampleCA NwN"])
        self.assertEqual([c.issuer.rfc4514_string() for c in certs],
                         ["CN=estExampleCA OwO", "CN=estExampleCA OwO", "CN=estExampleCA NwN",
                          "CN=estExampleCA NwN"])
        self.assertEqual([c.serial_number for c in certs], [0x9A58DE75193B7A9C, 1, 2, 0xE9AE9DC39A33B211])

    def test_a1_cacerts_with_pyasn1(self):
        der = self.vector("rfc7030_A1_cacerts.b64")
        sd = self.published_signed_data(der)
        self.assertEqual(int(sd["version"]), 1)
        self.assertEqual(len(sd["digestAlgorithms"]), 0)
        self.assertFalse(sd["encapContentInfo"]["eContent"].isValue)
        self.assertEqual(len(sd["certificates"]), 4)
        self.assertEqual(len(sd["signerInfos"]), 0)

    def test_a3_response(self):
        (cert,) = read_certs_only(self.vector("rfc7030_A3_simpleenroll_resp.b64"))
        self.assertEqual(cert.subject.rfc4514_string(), "CN=demostep4 1368141352")
        self.assertEqual(cert.issuer.rfc4514_string(), "CN=estExampleCA NwN")
        self.assertEqual(cert.serial_number, 21)
        csr = x509.load_der_x509_csr(self.vector("rfc7030_A3_simpleenroll_req.b64"))
        self.assertEqual(cert.public_key(), csr.public_key())
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(ku.critical)
        self.assertTrue(ku.value.digital_signature and ku.value.key_encipherment and ku.value.data_encipherment)

    def test_a3_response_with_pyasn1(self):
        der = self.vector("rfc7030_A3_simpleenroll_resp.b64")
        sd = self.published_signed_data(der)
        self.assertEqual(int(sd["version"]), 1)
        self.assertEqual(len(sd["signerInfos"]), 0)
        self.assertEqual(len(sd["certificates"]), 1)
        # The RFC's response carries an empty [1] crls, which pyasn1 would not
        # re-encode; the certificate itself is DER and round-trips.
        cert = self.certificate_without_time_checks(encoder.encode(sd["certificates"][0]["certificate"]))
        self.assertEqual(int(cert["tbsCertificate"]["serialNumber"]), 21)

    def published_signed_data(self, der: bytes):
        """The SignedData of a published ContentInfo, no trailing bytes at
        either level (not re-encoded: the RFC's samples are not all DER)."""
        ci, rest = decoder.decode(der, asn1Spec=rfc5652.ContentInfo())
        self.assertEqual(rest, b"")
        sd, rest = decoder.decode(bytes(ci["content"]), asn1Spec=rfc5652.SignedData())
        self.assertEqual(rest, b"")
        return sd

    def certificate_without_time_checks(self, der: bytes):
        cert = self.decode(der, rfc5280.Certificate())
        self.assertEqual(int(cert["tbsCertificate"]["version"]), 2)
        return cert

    def test_not_certs_only(self):
        self.assertRaises(NotCertsOnly, read_certs_only, b"\x30\x03\x02\x01\x01")
        self.assertRaises(NotCertsOnly, read_certs_only, self.vector("rfc7030_A3_simpleenroll_req.b64"))
