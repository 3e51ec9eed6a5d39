"""The pure parts of /serverkeygen, one by one: the CSR attributes
(pki.keygen_request), the multipart answer (pki.multipart, read against RFC
7030 Appendix A.4), key packages, PKCS#12 and RFC 7191 returns
(pki.keypackages), and the RA's choice of key form (ra.serverkeygen)."""
from __future__ import annotations

import base64
import datetime
import os
import subprocess
from pathlib import Path

from asn1crypto import algos, cms
from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc2985, rfc2986, rfc5652, rfc7191
from twisted.trial import unittest

from estappliance.config import Label, Profile
from estappliance.errors import MalformedRequest, PolicyRefused
from estappliance.pki import csr as csrs
from estappliance.pki import envelope, keygen_request, keypackages, multipart, signeddata
from estappliance.pki.asn1 import rfc6032
from estappliance.pki.cms import certs_only, read_certs_only
from estappliance.ra.keygen_requests import check_keygen_csr, choose_form, key_type_for, pkcs12_preference

VECTORS = Path("/work/shared/spec/vectors")
NOW = datetime.datetime.now(datetime.timezone.utc)
EKP = rfc6032.OIDS["id-ct-KP-encryptedKeyPkg"]


def vector(name: str) -> bytes:
    path = VECTORS / name
    if not path.exists():
        raise unittest.SkipTest(f"{path} not present")
    return path.read_bytes()


def decode(der, spec):
    obj, rest = decoder.decode(der, asn1Spec=spec)
    assert rest == b""
    assert encoder.encode(obj) == der
    return obj


def self_signed(key, name="CN=someone"):
    subject = x509.Name.from_rfc4514_string(name)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(minutes=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


def label(**kw) -> Label:
    profile = Profile(name="p", validity_days=30, key_types=kw.pop("key_types", ("ec-p256", "rsa2048")),
                      key_usage=("digitalSignature",), extended_key_usage=(), copy_san=True,
                      required_rdns=kw.pop("required_rdns", ()))
    return Label(name="l", profile=profile, auth=("basic",), cert_anchors=("ca",), **kw)


class KeygenRequestTests(unittest.TestCase):
    def test_built_csr_decodes_independently_and_reads_back(self):
        key = ec.generate_private_key(ec.SECP256R1())
        caps = (keygen_request.capability("aes128_cbc"), keygen_request.capability("aes256_wrap"),
                keygen_request.capability("rsaes_oaep", algos.RSAESOAEPParams({
                    "hash_algorithm": {"algorithm": "sha384"},
                    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha384"}}})))
        der = keygen_request.build_csr(x509.Name.from_rfc4514_string("CN=dev,O=Example"), key,
                                       dns_names=("dev.example",), challenge_password="c2hhcmVk",
                                       decrypt_key_id=b"kek-1", content_type=EKP, capabilities=caps)
        request = decode(der, rfc2986.CertificationRequest())
        types = [str(a["type"]) for a in request["certificationRequestInfo"]["attributes"]]
        self.assertEqual(set(types), {"1.2.840.113549.1.9.7", "1.2.840.113549.1.9.14", "1.2.840.113549.1.9.16.2.37",
                                      "1.2.840.113549.1.9.3", "1.2.840.113549.1.9.15"})
        for attr in request["certificationRequestInfo"]["attributes"]:
            if attr["type"] == rfc2985.pkcs_9_at_smimeCapabilities:
                decoded = decode(bytes(attr["values"][0]), rfc2985.SMIMECapabilities())
                self.assertEqual(len(decoded), 3)
        # cryptography reads it as any CSR, and its self-signature holds
        csr = csrs.load_csr(der)
        self.assertTrue(csrs.signature_ok(csr))
        self.assertEqual(csrs.challenge_password(csr), b"c2hhcmVk")
        self.assertEqual(csrs.requested_san(csr).get_values_for_type(x509.DNSName), ["dev.example"])
        attrs = keygen_request.read(der)
        self.assertEqual((attrs.decrypt_key_id, attrs.asymmetric_decrypt_key_id), (b"kek-1", None))
        self.assertTrue(attrs.wants_encrypted_key_package)
        self.assertEqual(attrs.content_cipher(allow_gcm=False), "aes128_cbc")
        self.assertEqual(attrs.kek_wrap(32), "aes256_wrap")
        self.assertEqual(attrs.key_transport(), "sha384")
        self.assertEqual(attrs.key_agreement(), ("aes256_wrap", "sha256"))
        err = self.assertRaises(keygen_request.BadKeygenRequest, attrs.kek_wrap, 16)
        self.assertIn("aes128_wrap", str(err))

    def test_published_rfc7030_request_asks_for_no_encryption(self):
        der = base64.b64decode(vector("rfc7030_A4_serverkeygen_req.b64"))
        attrs = keygen_request.read(der)
        self.assertEqual(attrs, keygen_request.KeygenAttributes())
        csr = check_keygen_csr(der, label())
        self.assertIn("serverKeyGen req by client", csr.subject.rfc4514_string())
        self.assertEqual(choose_form(attrs, None, label()), "pkcs8")

    def test_defaults_and_refusals_of_capabilities(self):
        none = keygen_request.KeygenAttributes()
        self.assertEqual((none.content_cipher(allow_gcm=True), none.key_agreement(), none.key_transport()),
                         ("aes256_cbc", ("aes256_wrap", "sha256"), "sha256"))
        gcm_only = keygen_request.KeygenAttributes(capabilities=(keygen_request.capability("aes256_gcm"),))
        self.assertEqual(gcm_only.content_cipher(allow_gcm=True), "aes256_gcm")
        self.assertRaises(keygen_request.BadKeygenRequest, gcm_only.content_cipher, allow_gcm=False)
        v15 = keygen_request.KeygenAttributes(capabilities=(keygen_request.capability("1.2.840.113549.1.1.1"),))
        self.assertRaises(keygen_request.BadKeygenRequest, v15.key_transport)
        sha1 = keygen_request.KeygenAttributes(capabilities=(keygen_request.capability(
            "rsaes_oaep", algos.RSAESOAEPParams({})),))
        self.assertRaises(keygen_request.BadKeygenRequest, sha1.key_transport)

    def test_malformed_attributes_are_refused(self):
        key = ec.generate_private_key(ec.SECP256R1())
        good = keygen_request.build_csr(x509.Name.from_rfc4514_string("CN=x"), key, decrypt_key_id=b"abc")
        # the DecryptKeyIdentifier value as an INTEGER instead of an OCTET STRING
        bad = good.replace(b"\x04\x03abc", b"\x02\x03abc")
        self.assertNotEqual(bad, good)
        self.assertRaises(keygen_request.BadKeygenRequest, keygen_request.read, bad)
        self.assertRaises(keygen_request.BadKeygenRequest, keygen_request.read, b"\x30\x00")
        empty = keygen_request.build_csr(x509.Name.from_rfc4514_string("CN=x"), key, decrypt_key_id=b"")
        self.assertRaises(keygen_request.BadKeygenRequest, keygen_request.read, empty)


class MultipartTests(unittest.TestCase):
    def test_reads_the_rfc7030_appendix_a4_answer(self):
        pkcs8 = vector("rfc7030_A4_serverkeygen_pkcs8.b64")
        cert = vector("rfc7030_A4_serverkeygen_cert.b64")
        body = (b"This is the preamble.  It is to be ignored, though it is a handy place for estServer to include an"
                b" explanatory note, including contact or support information.\n--estServerExampleBoundary\n"
                b"Content-Type: application/pkcs8\nContent-Transfer-Encoding: base64\n\n" + pkcs8 +
                b"\n--estServerExampleBoundary\nContent-Type: application/pkcs7-mime; smime-type=certs-only\n"
                b"Content-Transfer-Encoding: base64\n\n" + cert + b"\n--estServerExampleBoundary--\n\n"
                b"This is the epilogue.  It is also to be ignored.\n")
        parts = multipart.parse("multipart/mixed ; boundary=estServerExampleBoundary", body)
        self.assertEqual([p.content_type for p in parts],
                         ["application/pkcs8", "application/pkcs7-mime; smime-type=certs-only"])
        key = serialization.load_der_private_key(parts[0].der, None)
        [certificate] = read_certs_only(parts[1].der)
        self.assertEqual(certificate.subject.rfc4514_string(), "CN=serverside key generated response")
        self.assertEqual(key.public_key(), certificate.public_key())

    def test_round_trip_and_framing(self):
        cert = self_signed(ec.generate_private_key(ec.SECP256R1()))
        ctype, body = multipart.build([multipart.Part("application/pkcs8", b"\x30\x03\x02\x01\x00"),
                                       multipart.Part("application/pkcs7-mime; smime-type=certs-only",
                                                      certs_only([cert]))], boundary="b0undary")
        self.assertEqual(ctype, b"multipart/mixed; boundary=b0undary")
        self.assertTrue(body.startswith(b"--b0undary\r\nContent-Type: application/pkcs8\r\n"
                                        b"Content-Transfer-Encoding: base64\r\n\r\nMAMCAQA=\r\n--b0undary\r\n"))
        self.assertTrue(body.endswith(b"--b0undary--\r\n"))
        parts = multipart.parse(ctype.decode(), body)
        self.assertEqual(parts[0].der, b"\x30\x03\x02\x01\x00")
        self.assertEqual(read_certs_only(parts[1].der), [cert])
        self.assertRaises(multipart.BadMultipart, multipart.parse, "application/pkcs8", body)
        self.assertRaises(multipart.BadMultipart, multipart.parse, "multipart/mixed; boundary=other", body)


class CompletePkcs8Tests(unittest.TestCase):
    def test_ec_key_gains_its_public_key_and_stays_the_same_key(self):
        key = ec.generate_private_key(ec.SECP256R1())
        full = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
        # What a token exports: the RFC 5915 ECPrivateKey without publicKey.
        info = asn1_keys.PrivateKeyInfo.load(full)
        inner = info["private_key"].parsed
        bare_inner = asn1_keys.ECPrivateKey({"version": inner["version"], "private_key": inner["private_key"]})
        bare = asn1_keys.PrivateKeyInfo({"version": 0, "private_key_algorithm": info["private_key_algorithm"],
                                         "private_key": bare_inner}).dump()
        self.assertIsNone(asn1_keys.PrivateKeyInfo.load(bare)["private_key"].parsed["public_key"].native)
        completed = keypackages.complete_pkcs8(bare)
        point = asn1_keys.PrivateKeyInfo.load(completed)["private_key"].parsed["public_key"].native
        self.assertEqual(point, key.public_key().public_bytes(serialization.Encoding.X962,
                                                              serialization.PublicFormat.UncompressedPoint))
        self.assertEqual(serialization.load_der_private_key(completed, None).private_numbers(),
                         key.private_numbers())

    def test_rsa_key_is_left_as_it_is(self):
        der = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        self.assertEqual(keypackages.complete_pkcs8(der), der)


class KeyPackageTests(unittest.TestCase):
    def setUp(self):
        self.signer_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = self_signed(self.signer_key, "CN=signing ca")
        self.device = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pkcs8 = self.device.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())

    def signed(self, receipts_to=None, pkg_id=b"p" * 16):
        der = signeddata.sign("asymmetric_key_package", keypackages.asymmetric_key_package(self.pkcs8),
                              self.signer_key, self.ca,
                              signed_attrs=[keypackages.receipt_request(pkg_id, receipts_to)])
        return cms.ContentInfo.load(der)["content"].untag().dump()

    def test_open_key_package_checks_signature_and_anchor(self):
        kek = os.urandom(32)
        recipient = [envelope.KekRecipient.with_key(b"k", kek)]
        holder = envelope.RecipientKey(kek=kek, kek_id=b"k")
        der = envelope.enveloped_data("signed_data", self.signed(self.ca.subject), recipient)
        opened = keypackages.open_key_package(der, holder, [self.ca])
        self.assertEqual(opened.keys[0].private_numbers(), self.device.private_numbers())
        self.assertEqual((opened.pkg_id, opened.receipt_requested, opened.anchor), (b"p" * 16, True, self.ca))
        other = self_signed(ec.generate_private_key(ec.SECP256R1()), "CN=other")
        err = self.assertRaises(keypackages.BadKeyPackage, keypackages.open_key_package, der, holder, [other])
        self.assertIn("not trusted", str(err))
        unsigned = envelope.enveloped_data("asymmetric_key_package", keypackages.asymmetric_key_package(
            self.pkcs8).dump(), recipient)
        err = self.assertRaises(keypackages.BadKeyPackage, keypackages.open_key_package, unsigned, holder, [self.ca])
        self.assertIn("not a signed key package", str(err))
        self.assertRaises(keypackages.BadKeyPackage, keypackages.open_key_package, der,
                          envelope.RecipientKey(kek=os.urandom(32), kek_id=b"k"), [self.ca])

    def test_pkcs12_strong_mac_checked_by_openssl_and_cryptography(self):
        cert = self_signed(self.device, "CN=device")
        pfx = keypackages.pkcs12(self.pkcs8, cert, [self.ca], b"pass phrase \xc3\xa9", iterations=25000,
                                 friendly_name=b"device")
        key, got, chain = crypto_pkcs12.load_key_and_certificates(pfx, b"pass phrase \xc3\xa9")
        self.assertEqual((got, chain), (cert, [self.ca]))
        self.assertRaises(ValueError, crypto_pkcs12.load_key_and_certificates, pfx, b"pass phrase e")
        path = Path(self.mktemp())
        path.write_bytes(pfx)
        out = subprocess.run(["openssl", "pkcs12", "-info", "-noout", "-in", str(path), "-passin",
                              "pass:pass phrase \u00e9"], capture_output=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"MAC: sha256, Iteration 25000", out.stderr)

    def test_returns_read_with_candidates(self):
        cert = self_signed(self.device, "CN=device")
        receipt = keypackages.receipt_message(b"id", cert.subject, self.device, cert)
        content = decode(bytes(decode(receipt, rfc5652.ContentInfo())["content"]), rfc5652.SignedData())
        self.assertEqual(content["encapContentInfo"]["eContentType"], rfc7191.id_ct_KP_keyPackageReceipt)
        attrs = [a["attrType"] for a in content["signerInfos"][0]["signedAttrs"]]
        self.assertIn(univ.ObjectIdentifier("1.2.840.113549.1.9.16.2.46"), attrs)  # binary-signing-time
        parsed = keypackages.read_return(receipt, [cert])
        self.assertEqual((parsed.kind, parsed.pkg_id, parsed.signer, parsed.by), ("receipt", b"id", cert, "Common Name: device"))
        # without the certificate in the message, the candidate is what verifies it
        bare = signeddata.sign("key_package_receipt", cms.ContentInfo.load(receipt)["content"]["encap_content_info"][
            "content"].parsed, self.device, cert, certificates=[])
        self.assertEqual(keypackages.read_return(bare, [cert]).signer, cert)
        self.assertRaises(keypackages.BadReturn, keypackages.read_return, bare, [])
        error = keypackages.error_message(None, cert.subject, "badKeyPackage")
        parsed = keypackages.read_return(error, [])
        self.assertEqual((parsed.kind, parsed.pkg_id, parsed.error_code, parsed.signer),
                         ("error", None, "badKeyPackage", None))
        self.assertRaises(keypackages.BadReturn, keypackages.read_return,
                          signeddata.sign("data", b"x", self.device, cert), [cert])


class FormChoiceTests(unittest.TestCase):
    def attrs(self, **kw):
        return keygen_request.KeygenAttributes(**kw)

    def test_accept_preferences(self):
        self.assertIsNone(pkcs12_preference(None))
        self.assertIsNone(pkcs12_preference("*/*"))
        self.assertTrue(pkcs12_preference("application/pkcs12"))
        self.assertTrue(pkcs12_preference("multipart/mixed;q=0.5, application/pkcs12"))
        self.assertFalse(pkcs12_preference("multipart/mixed, application/pkcs12;q=0.5"))
        self.assertFalse(pkcs12_preference("application/pkcs12;q=0"))
        self.assertFalse(pkcs12_preference("multipart/mixed"))
        self.assertIsNone(pkcs12_preference("text/plain"))

    def test_form_rules(self):
        plain = label()
        p12 = label(serverkeygen_default="pkcs12")
        self.assertEqual(choose_form(self.attrs(), None, plain), "pkcs8")
        self.assertEqual(choose_form(self.attrs(), True, plain), "pkcs12")
        self.assertEqual(choose_form(self.attrs(), None, p12), "pkcs12")
        self.assertEqual(choose_form(self.attrs(), False, p12), "pkcs8")
        self.assertEqual(choose_form(self.attrs(decrypt_key_id=b"k"), None, p12), "enveloped")
        self.assertEqual(choose_form(self.attrs(asymmetric_decrypt_key_id=b"k", content_types=(EKP,)), None, plain),
                         "encrypted-key-package")
        self.assertRaises(MalformedRequest, choose_form, self.attrs(decrypt_key_id=b"k", asymmetric_decrypt_key_id=b"k"),
                          None, plain)
        self.assertRaises(PolicyRefused, choose_form, self.attrs(decrypt_key_id=b"k"), True, plain)
        err = self.assertRaises(PolicyRefused, choose_form, self.attrs(content_types=("1.2.3",),
                                                                       decrypt_key_id=b"k"), None, plain)
        self.assertIn("1.2.3", str(err))
        only_encrypted = label(serverkeygen_forms=("enveloped",), serverkeygen_default=None)
        self.assertRaises(PolicyRefused, choose_form, self.attrs(), None, only_encrypted)
        err = self.assertRaises(PolicyRefused, choose_form, self.attrs(decrypt_key_id=b"k", content_types=(EKP,)),
                                None, only_encrypted)
        self.assertIn("'encrypted-key-package' is not allowed", str(err))

    def test_key_type_and_ignored_csr_key(self):
        ed = keygen_request.build_csr(x509.Name.from_rfc4514_string("CN=x"),
                                      rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.assertEqual(key_type_for(csrs.load_csr(ed), label()), "rsa2048")
        self.assertEqual(key_type_for(csrs.load_csr(ed), label(key_types=("ec-p384",))), "ec-p384")
        # a broken self-signature does not matter: the key and signature are ignored (RFC 7030 4.4.1)
        der = bytearray(ed)
        der[-1] ^= 1
        self.assertEqual(check_keygen_csr(bytes(der), label()).subject.rfc4514_string(), "CN=x")
        self.assertRaises(PolicyRefused, check_keygen_csr, ed, label(required_rdns=("O",)))
        self.assertRaises(MalformedRequest, check_keygen_csr, b"\x30\x00", label())
