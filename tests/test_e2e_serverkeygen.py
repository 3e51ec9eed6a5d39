"""/serverkeygen and /serverkeygen/return end to end over TLS on 127.0.0.1,
with a real SoftHSM2 token: every key form, the keys that protect them,
receipts and errors, and every refusal. What we emit is decoded with
pyasn1-alt-modules (no trailing bytes, byte-exact re-encoding) and opened
with ``openssl cms -decrypt`` / ``openssl pkcs12`` where OpenSSL can."""
from __future__ import annotations

import base64
import datetime
import os
import re
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc3565, rfc4055, rfc5084, rfc5652, rfc5915, rfc5958, rfc6032, rfc7191, rfc7292, \
    rfc8018
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import BasicAuth, EstClient, EstClientError, make_csr, new_key
from estappliance.client import keygen_commands as skg
from estappliance.errors import TokenUnavailable
from estappliance.pki import envelope, keygen_request, keypackages, multipart
from estappliance.pki.asn1 import rfc6032 as our_rfc6032
from estappliance.pki.cms import read_certs_only
from estappliance.pki.encoding import decode_body
from estappliance.token import on_token_thread, symmetric

from . import support

PASSWORD = "correct horse battery"
EKP = our_rfc6032.OIDS["id-ct-KP-encryptedKeyPkg"]
P12_ITERATIONS = 20000


def decode(der: bytes, spec):
    """pyasn1: no trailing bytes, and the very same DER when re-encoded."""
    obj, rest = decoder.decode(der, asn1Spec=spec)
    assert rest == b"", f"{type(spec).__name__}: {len(rest)} trailing bytes"
    assert encoder.encode(obj) == der, f"{type(spec).__name__}: re-encoding differs"
    return obj


def spki(key_or_cert) -> bytes:
    public = key_or_cert.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def keygen_csr(subject="CN=device-1", **kw) -> bytes:
    return keygen_request.build_csr(x509.Name.from_rfc4514_string(subject), new_key(), **kw)


class ServerKeygenBase(unittest.TestCase):
    timeout = 120
    labels = {
        "default": {"profile": "enc"},
        "plain": {"profile": "default"},  # EC certificates without keyAgreement
        "p12": {"profile": "enc", "serverkeygen_default": "pkcs12", "pkcs12_iterations": P12_ITERATIONS},
        "escrow": {"profile": "enc", "escrow": True, "serverkeygen_receipts": True},
        "strict": {"profile": "enc", "serverkeygen_forms": ["enveloped", "encrypted-key-package"]},
        "certs": {"profile": "enc", "auth": ["cert"], "serverkeygen_default": "pkcs12",
                  "pkcs12_iterations": P12_ITERATIONS},
        "manual": {"profile": "enc", "approval": "manual"},
    }

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(
            self, profiles={"enc": {"key_usage": ["digitalSignature", "keyEncipherment", "keyAgreement"]}},
            labels=self.labels)
        yield self.server.add_client("alice", PASSWORD, labels=("*",))
        yield self.server.add_client("bob", PASSWORD, labels=("*",))
        self.generator = self.server.appliance.keygen.generator
        self.token = self.generator.token

    # -- helpers ----------------------------------------------------------------------

    def client(self, user="alice", **kw) -> EstClient:
        if user is not None:
            kw.setdefault("auth", BasicAuth(user, PASSWORD))
        return self.server.client(**kw)

    def keygen(self, csr: bytes, *, user="alice", label=None, pkcs12=None, recipient=None, password=None,
               **kw):
        """request_key + open_answer in a client thread; fires with (answer, ServerKey)."""
        def go():
            with self.client(user, label=label, **kw) as c:
                answer = skg.request_key(c, csr, pkcs12=pkcs12)
                return answer, skg.open_answer(answer, anchors=[self.server.ca_cert], recipient=recipient,
                                               pkcs12_password=password)
        return support.in_thread(go)

    def raw(self, method, path, headers=None, body=b""):
        return self.server.raw(method, path, headers, body)

    def post_csr(self, csr: bytes, path="/.well-known/est/serverkeygen", user="alice", **headers):
        return self.raw("POST", path, {"Authorization": BasicAuth(user, PASSWORD).header(),
                                       "Content-Type": "application/pkcs10", **headers}, base64.encodebytes(csr))

    @defer.inlineCallbacks
    def register_kek(self, client="alice", key_id=b"kek-alice-1", value=None):
        value = value or os.urandom(32)
        label = self.generator.kek_label(key_id)
        size = yield on_token_thread(symmetric.create_kek, self.token, label, value)
        yield on_store_thread_call(self.server.store.keygen.add_kek, key_id, client, label, size)
        return value

    @defer.inlineCallbacks
    def enroll(self, key, subject="CN=alice-encryption", user="alice", label=None):
        def go():
            with self.client(user, label=label) as c:
                return c.simpleenroll(make_csr(key, subject))
        return (yield support.in_thread(go))

    def token_keys(self):
        """Labels of the device keys in the token (the appliance's sealing key is not one)."""
        d = on_token_thread(self.token.key_labels, f"{self.generator.key_prefix}-skg-")
        return d.addCallback(lambda labels: [label for label in labels
                                             if label != self.generator.sealing_key_label])

    def packages(self, client=None):
        return on_store_thread_call(self.server.store.keygen.key_packages, client)

    def openssl(self, *argv, input=None):
        return support.run_tool("openssl", *argv, input=input)

    def tmp(self) -> Path:
        path = Path(self.mktemp())
        path.mkdir(parents=True)
        return path

    @defer.inlineCallbacks
    def openssl_decrypt(self, der: bytes, cert: x509.Certificate, key):
        """``openssl cms -decrypt`` of a ContentInfo(EnvelopedData) for cert/key; fires with the plaintext."""
        tmp = self.tmp()
        (tmp / "m.der").write_bytes(der)
        (tmp / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
        out = yield self.openssl("cms", "-decrypt", "-inform", "DER", "-in", str(tmp / "m.der"), "-binary",
                                 "-recip", str(tmp / "c.pem"), "-inkey", str(tmp / "k.pem"))
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    @defer.inlineCallbacks
    def assert_nothing_delivered(self, before_packages: int, before_certs: int):
        packages = yield self.packages()
        self.assertEqual(len(packages), before_packages)
        self.assertEqual((yield self.server.count_certificates()), before_certs)
        self.assertEqual((yield self.token_keys()), [])

    @defer.inlineCallbacks
    def counts(self):
        return len((yield self.packages())), (yield self.server.count_certificates())

    def signed_key_package(self, signed_data_der: bytes, pkg_id: bytes):
        """pyasn1 checks of the SignedData(AsymmetricKeyPackage) inside the encryption layer."""
        sd = decode(signed_data_der, rfc5652.SignedData())
        self.assertEqual(int(sd["version"]), 3)
        encap = sd["encapContentInfo"]
        self.assertEqual(encap["eContentType"], rfc5958.id_ct_KP_aKeyPackage)
        package = decode(bytes(encap["eContent"]), rfc5958.AsymmetricKeyPackage())
        self.assertEqual(len(package), 1)
        attrs = {a["attrType"]: a["attrValues"] for a in sd["signerInfos"][0]["signedAttrs"]}
        self.assertIn(rfc7191.id_aa_KP_keyPkgIdAndReceiptReq, attrs)
        values = attrs[rfc7191.id_aa_KP_keyPkgIdAndReceiptReq]
        self.assertEqual(len(values), 1)
        request = decode(bytes(values[0]), rfc7191.KeyPkgIdentifierAndReceiptReq())
        self.assertEqual(bytes(request["pkgID"]), pkg_id)
        return package, request


def on_store_thread_call(fn, *args, **kwargs):
    from estappliance.store import on_store_thread
    return on_store_thread(fn, *args, **kwargs)


class KeyFormTests(ServerKeygenBase):
    @defer.inlineCallbacks
    def test_pkcs8_wire_format_as_rfc7030_a4(self):
        csr_key = new_key()
        csr = keygen_request.build_csr(x509.Name.from_rfc4514_string("CN=device-1"), csr_key,
                                       dns_names=("device-1.example",))
        resp = yield self.post_csr(csr)
        self.assertEqual(resp.status, 200, resp.body)
        ctype = resp.header("content-type")
        self.assertRegex(ctype, r"^multipart/mixed; boundary=[0-9A-Za-z]+$")
        self.assertIsNone(resp.header("content-transfer-encoding"))
        self.assertEqual(int(resp.header("content-length")), len(resp.body))  # part headers counted
        boundary = ctype.split("boundary=")[1]
        chunks = resp.body.split(f"--{boundary}".encode())
        self.assertEqual(chunks[-1], b"--\r\n")
        heads = [c.split(b"\r\n\r\n", 1)[0].strip().decode() for c in chunks[1:-1]]
        self.assertEqual(heads, ["Content-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64",
                                 "Content-Type: application/pkcs7-mime; smime-type=certs-only\r\n"
                                 "Content-Transfer-Encoding: base64"])
        parts = multipart.parse(ctype, resp.body)
        one = decode(parts[0].der, rfc5958.OneAsymmetricKey())
        self.assertEqual(int(one["version"]), 0)
        # The EC key carries its optional RFC 5915 publicKey, as OpenSSL writes it.
        ec_private_key = decode(bytes(one["privateKey"]), rfc5915.ECPrivateKey())
        self.assertTrue(ec_private_key["publicKey"].isValue)
        key = serialization.load_der_private_key(parts[0].der, None)
        [cert] = read_certs_only(parts[1].der)
        cert.verify_directly_issued_by(self.server.ca_cert)
        self.assertEqual(spki(key), spki(cert))
        self.assertNotEqual(spki(cert), spki(csr_key))  # RFC 7030 4.4.1: the CSR's key is ignored
        self.assertIsInstance(key, ec.EllipticCurvePrivateKey)  # the CSR's key type, allowed by the profile
        self.assertEqual(cert.subject.rfc4514_string(), "CN=device-1")
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["device-1.example"])
        tmp = self.tmp()
        (tmp / "k.der").write_bytes(parts[0].der)
        out = yield self.openssl("pkey", "-inform", "DER", "-in", str(tmp / "k.der"), "-pubout", "-outform", "DER")
        self.assertEqual(out.stdout, spki(cert), out.stderr)
        # recorded as delivered before the answer; the key is gone from the token
        [record] = yield self.packages("alice")
        self.assertEqual((record.state, record.form, record.serial, record.key_destroyed),
                         ("delivered", "pkcs8", cert.serial_number, True))
        self.assertEqual((yield self.token_keys()), [])
        certificate = yield on_store_thread_call(self.server.store.certificates.certificate, cert.serial_number)
        self.assertEqual((certificate.client, certificate.revoked), ("alice", False))

    @defer.inlineCallbacks
    def test_key_type_follows_the_csr_when_the_profile_allows_it(self):
        csr = keygen_request.build_csr(x509.Name.from_rfc4514_string("CN=rsa-device"),
                                       rsa.generate_private_key(public_exponent=65537, key_size=2048))
        _, delivered = yield self.keygen(csr)
        self.assertIsInstance(delivered.key, rsa.RSAPrivateKey)
        self.assertEqual(delivered.key.key_size, 2048)

    @defer.inlineCallbacks
    def test_enveloped_to_a_kek_in_the_token(self):
        kek = yield self.register_kek()
        csr = keygen_csr(decrypt_key_id=b"kek-alice-1")
        answer, delivered = yield self.keygen(csr, recipient=envelope.RecipientKey(kek=kek, kek_id=b"kek-alice-1"))
        self.assertEqual(answer.form, "enveloped")
        self.assertEqual(answer.key_media_type, "application/pkcs7-mime; smime-type=server-generated-key")
        self.assertEqual(spki(delivered.key), spki(delivered.certificate))
        [record] = yield self.packages("alice")
        self.assertEqual((delivered.pkg_id, delivered.receipt_requested), (record.pkg_id, False))
        self.assertEqual(delivered.signer, self.server.appliance.content_signer.certificate)
        # independent decoding of every layer
        ci = decode(answer.key_der, rfc5652.ContentInfo())
        self.assertEqual(ci["contentType"], rfc5652.id_envelopedData)
        env = decode(bytes(ci["content"]), rfc5652.EnvelopedData())
        kekri = env["recipientInfos"][0]["kekri"]
        self.assertEqual((int(env["version"]), int(kekri["version"])), (2, 4))
        self.assertEqual(bytes(kekri["kekid"]["keyIdentifier"]), b"kek-alice-1")
        self.assertEqual(kekri["keyEncryptionAlgorithm"]["algorithm"], rfc3565.id_aes256_wrap)
        self.assertEqual(env["encryptedContentInfo"]["contentType"], rfc5652.id_signedData)
        # OpenSSL opens it with the shared KEK, and what is inside is our signed key package
        tmp = self.tmp()
        (tmp / "m.der").write_bytes(answer.key_der)
        out = yield self.openssl("cms", "-decrypt", "-inform", "DER", "-in", str(tmp / "m.der"), "-binary",
                                 "-secretkey", kek.hex(), "-secretkeyid", b"kek-alice-1".hex())
        self.assertEqual(out.returncode, 0, out.stderr)
        package, request = self.signed_key_package(out.stdout, record.pkg_id)
        self.assertFalse(request["receiptReq"].isValue)
        inside = serialization.load_der_private_key(encoder.encode(package[0]), None)
        self.assertEqual(inside.private_numbers(), delivered.key.private_numbers())
        # and verifies its signature up to our CA
        (tmp / "sd.der").write_bytes(cms.ContentInfo({"content_type": "signed_data",
                                                      "content": cms.SignedData.load(out.stdout)}).dump())
        (tmp / "ca.pem").write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        out = yield self.openssl("cms", "-verify", "-inform", "DER", "-in", str(tmp / "sd.der"), "-CAfile",
                                 str(tmp / "ca.pem"), "-binary", "-purpose", "any")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, encoder.encode(package))
        self.assertEqual((yield self.token_keys()), [])

    @defer.inlineCallbacks
    def test_enveloped_to_an_rsa_certificate_rsaes_oaep(self):
        enc_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        enc_cert = yield self.enroll(enc_key)
        ski = enc_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        csr = keygen_csr(asymmetric_decrypt_key_id=ski)
        answer, delivered = yield self.keygen(csr, recipient=envelope.RecipientKey.for_certificate(enc_key, enc_cert))
        self.assertEqual(spki(delivered.key), spki(delivered.certificate))
        env = decode(bytes(decode(answer.key_der, rfc5652.ContentInfo())["content"]), rfc5652.EnvelopedData())
        ktri = env["recipientInfos"][0]["ktri"]
        self.assertEqual(int(ktri["version"]), 2)
        self.assertEqual(bytes(ktri["rid"]["subjectKeyIdentifier"]), ski)  # copied from the attribute
        self.assertEqual(ktri["keyEncryptionAlgorithm"]["algorithm"], rfc4055.id_RSAES_OAEP)
        params = decode(bytes(ktri["keyEncryptionAlgorithm"]["parameters"]), rfc4055.RSAES_OAEP_params())
        self.assertEqual(params["hashFunc"]["algorithm"], rfc4055.id_sha256)
        self.assertEqual(env["encryptedContentInfo"]["contentEncryptionAlgorithm"]["algorithm"],
                         rfc3565.id_aes256_CBC)
        plain = yield self.openssl_decrypt(answer.key_der, enc_cert, enc_key)
        self.signed_key_package(plain, delivered.pkg_id)

    @defer.inlineCallbacks
    def test_enveloped_to_an_ec_certificate_ecdh_with_the_clients_algorithms(self):
        enc_key = ec.generate_private_key(ec.SECP384R1())
        enc_cert = yield self.enroll(enc_key)
        ski = enc_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        caps = (keygen_request.capability("aes256_gcm"), keygen_request.capability("aes128_cbc"),
                keygen_request.capability(envelope.ECDH_SCHEMES["sha384"],
                                          cms.KeyEncryptionAlgorithm({"algorithm": "aes128_wrap"})))
        csr = keygen_csr(asymmetric_decrypt_key_id=ski, capabilities=caps)
        answer, delivered = yield self.keygen(csr, recipient=envelope.RecipientKey.for_certificate(enc_key, enc_cert))
        env = decode(bytes(decode(answer.key_der, rfc5652.ContentInfo())["content"]), rfc5652.EnvelopedData())
        kari = env["recipientInfos"][0]["kari"]
        self.assertEqual(int(kari["version"]), 3)
        self.assertEqual(str(kari["keyEncryptionAlgorithm"]["algorithm"]), envelope.ECDH_SCHEMES["sha384"])
        wrap = decode(bytes(kari["keyEncryptionAlgorithm"]["parameters"]), rfc5652.KeyEncryptionAlgorithmIdentifier())
        self.assertEqual(wrap["algorithm"], rfc3565.id_aes128_wrap)
        # AES-GCM cannot be EnvelopedData's: the next algorithm the client offered is used
        self.assertEqual(env["encryptedContentInfo"]["contentEncryptionAlgorithm"]["algorithm"],
                         rfc3565.id_aes128_CBC)
        plain = yield self.openssl_decrypt(answer.key_der, enc_cert, enc_key)
        self.signed_key_package(plain, delivered.pkg_id)

    @defer.inlineCallbacks
    def test_registered_encryption_certificate(self):
        """A certificate this CA did not issue, registered by the operator."""
        enc_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name.from_rfc4514_string("CN=alice vault")
        enc_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(enc_key.public_key())
                    .serial_number(9).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(enc_key.public_key()), False)
                    .sign(enc_key, hashes.SHA256()))
        ski = enc_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        yield on_store_thread_call(self.server.store.keygen.add_recipient, ski, "alice",
                                   enc_cert.public_bytes(serialization.Encoding.DER), "CN=alice vault",
                                   enc_cert.not_valid_after_utc.isoformat())
        csr = keygen_csr(asymmetric_decrypt_key_id=ski)
        _, delivered = yield self.keygen(csr, recipient=envelope.RecipientKey.for_certificate(enc_key, enc_cert))
        self.assertEqual(spki(delivered.key), spki(delivered.certificate))
        # the same identifier is unknown to bob
        before = yield self.counts()
        resp = yield self.post_csr(csr, user="bob")
        self.assertEqual(resp.status, 400)
        self.assertIn(f"unknown AsymmetricDecryptKeyIdentifier {ski.hex()}", resp.body.decode())
        self.assertEqual((yield self.counts()), before)

    @defer.inlineCallbacks
    def test_encrypted_key_package_rfc8295(self):
        kek = yield self.register_kek()
        caps = (keygen_request.capability("aes256_gcm"), keygen_request.capability("aes256_wrap"))
        csr = keygen_csr(decrypt_key_id=b"kek-alice-1", content_type=EKP, capabilities=caps)
        resp = yield self.post_csr(csr)
        self.assertEqual(resp.status, 200, resp.body)
        parts = multipart.parse(resp.header("content-type"), resp.body)
        self.assertEqual(parts[0].content_type, 'application/cms; encapsulatingContent="encryptedKeyPkg,'
                                                ' signedData"; innerContent=aKeyPackage')
        ci = decode(parts[0].der, rfc5652.ContentInfo())
        self.assertEqual(ci["contentType"], rfc6032.id_ct_KP_encryptedKeyPkg)
        ekp = decode(bytes(ci["content"]), rfc6032.EncryptedKeyPackage())
        # the client offered AES-GCM first: an EncryptedKeyPackage may carry AuthEnvelopedData
        self.assertEqual(ekp.getName(), "authEnveloped")
        aed = ekp["authEnveloped"]
        alg = aed["authEncryptedContentInfo"]["contentEncryptionAlgorithm"]
        self.assertEqual(alg["algorithm"], rfc5084.id_aes256_GCM)
        self.assertEqual(aed["authEncryptedContentInfo"]["contentType"], rfc5652.id_signedData)
        opened = envelope.open_content_info(parts[0].der, envelope.RecipientKey(kek=kek, kek_id=b"kek-alice-1"))
        [record] = yield self.packages("alice")
        self.signed_key_package(opened.content, record.pkg_id)
        self.assertEqual(record.form, "encrypted-key-package")
        answer = skg.KeygenAnswer("encrypted-key-package", parts[0].content_type, parts[0].der,
                                  read_certs_only(parts[1].der)[0])
        delivered = skg.open_answer(answer, anchors=[self.server.ca_cert],
                                    recipient=envelope.RecipientKey(kek=kek, kek_id=b"kek-alice-1"))
        self.assertEqual(spki(delivered.key), spki(answer.certificate))

    @defer.inlineCallbacks
    def test_encrypted_key_package_to_an_ec_certificate_opened_by_openssl(self):
        enc_key = ec.generate_private_key(ec.SECP256R1())
        enc_cert = yield self.enroll(enc_key)
        ski = enc_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        csr = keygen_csr(asymmetric_decrypt_key_id=ski, content_type=EKP)
        answer, delivered = yield self.keygen(csr, recipient=envelope.RecipientKey.for_certificate(enc_key, enc_cert))
        self.assertEqual(answer.form, "encrypted-key-package")
        ekp = decode(bytes(decode(answer.key_der, rfc5652.ContentInfo())["content"]), rfc6032.EncryptedKeyPackage())
        self.assertEqual(ekp.getName(), "enveloped")
        # OpenSSL has no EncryptedKeyPackage: it opens the EnvelopedData inside
        tagged = encoder.encode(ekp["enveloped"])
        self.assertEqual(tagged[0], 0xA0)  # [0] IMPLICIT EnvelopedData
        inner = cms.ContentInfo({"content_type": "enveloped_data",
                                 "content": cms.EnvelopedData.load(b"\x30" + tagged[1:])}).dump()
        plain = yield self.openssl_decrypt(inner, enc_cert, enc_key)
        self.signed_key_package(plain, delivered.pkg_id)

    def pfx_checks(self, pfx: bytes, iterations: int):
        """pyasn1: PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, HMAC-SHA256 MAC."""
        decoded = decode(pfx, rfc7292.PFX())
        self.assertEqual(int(decoded["version"]), 3)
        mac = decoded["macData"]
        self.assertEqual(mac["mac"]["digestAlgorithm"]["algorithm"], rfc4055.id_sha256)
        self.assertEqual(int(mac["iterations"]), iterations)
        auth_safe = decode(bytes(decode(bytes(decoded["authSafe"]["content"]), univ.OctetString())),
                           rfc7292.AuthenticatedSafe())
        schemes = []
        for info in auth_safe:
            if info["contentType"] == rfc5652.id_data:
                bags = decode(bytes(decode(bytes(info["content"]), univ.OctetString())), rfc7292.SafeContents())
                for bag in bags:
                    self.assertEqual(bag["bagId"], rfc7292.id_pkcs8ShroudedKeyBag)
                    epki = decode(bytes(bag["bagValue"]), rfc5958.EncryptedPrivateKeyInfo())
                    schemes.append(epki["encryptionAlgorithm"])
            else:
                self.assertEqual(info["contentType"], rfc5652.id_encryptedData)
                ed = decode(bytes(info["content"]), rfc5652.EncryptedData())
                schemes.append(ed["encryptedContentInfo"]["contentEncryptionAlgorithm"])
        self.assertEqual(len(schemes), 2)  # the key, and the certificates
        for scheme in schemes:
            self.assertEqual(scheme["algorithm"], rfc8018.id_PBES2)
            params = decode(bytes(scheme["parameters"]), rfc8018.PBES2_params())
            kdf = decode(bytes(params["keyDerivationFunc"]["parameters"]), rfc8018.PBKDF2_params())
            self.assertEqual(int(kdf["iterationCount"]), iterations)
            self.assertEqual(kdf["prf"]["algorithm"], rfc8018.id_hmacWithSHA256)
            self.assertEqual(params["encryptionScheme"]["algorithm"], rfc3565.id_aes256_CBC)

    @defer.inlineCallbacks
    def test_pkcs12_asked_for_with_accept_protected_by_the_http_password(self):
        csr = keygen_csr("CN=p12-device")
        resp = yield self.post_csr(csr, Accept="application/pkcs12")
        self.assertEqual(resp.status, 200, resp.body)
        self.assertEqual(resp.header("content-type"), "application/pkcs12")
        self.assertEqual(resp.header("content-transfer-encoding"), "base64")
        pfx = decode_body(resp.body)
        self.pfx_checks(pfx, 600_000)  # the default label's iterations
        from cryptography.hazmat.primitives.serialization import pkcs12
        key, cert, chain = pkcs12.load_key_and_certificates(pfx, PASSWORD.encode())
        self.assertEqual(spki(key), spki(cert))
        self.assertEqual(chain, [self.server.ca_cert])
        tmp = self.tmp()
        (tmp / "p.p12").write_bytes(pfx)
        (tmp / "pw").write_text(PASSWORD)
        out = yield self.openssl("pkcs12", "-in", str(tmp / "p.p12"), "-passin", f"file:{tmp / 'pw'}", "-nodes",
                                 "-info")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"PBES2, PBKDF2, AES-256-CBC, Iteration 600000, PRF hmacWithSHA256", out.stderr)
        self.assertIn(b"MAC: sha256, Iteration 600000", out.stderr)
        self.assertIn(b"BEGIN PRIVATE KEY", out.stdout)
        self.assertIn(b"subject=CN = p12-device", out.stdout)
        out = yield self.openssl("pkcs12", "-in", str(tmp / "p.p12"), "-passin", "pass:wrong", "-nodes")
        self.assertNotEqual(out.returncode, 0)
        [record] = yield self.packages("alice")
        self.assertEqual((record.form, record.state), ("pkcs12", "delivered"))
        self.assertEqual((yield self.token_keys()), [])

    @defer.inlineCallbacks
    def test_pkcs12_by_label_policy_with_the_operators_password_for_a_certificate_client(self):
        device_key = new_key()
        device_cert = yield self.enroll(device_key, "CN=device-cert")
        secret = b"operator-agreed-1"
        # no password agreed yet, and no HTTP password on a certificate login: refused, nothing made
        before = yield self.counts()
        err = yield self.assertFailure(self.keygen(keygen_csr(), user=None, label="certs",
                                                   client_cert=[device_cert], client_key=device_key,
                                                   password=secret), EstClientError)
        self.assertEqual(err.status, 400)
        self.assertIn("no PKCS#12 password is agreed for client 'alice'", str(err))
        self.assertEqual((yield self.counts()), before)
        yield on_token_thread(self.generator.set_pkcs12_password_blocking, "alice", secret)
        sealed = yield on_store_thread_call(self.server.store.keygen.pkcs12_password, "alice")
        self.assertNotIn(secret, sealed)
        answer, delivered = yield self.keygen(keygen_csr(), user=None, label="certs", client_cert=[device_cert],
                                              client_key=device_key, password=secret)
        self.assertEqual(answer.form, "pkcs12")
        self.pfx_checks(answer.key_der, P12_ITERATIONS)
        self.assertEqual(spki(delivered.key), spki(delivered.certificate))
        # a client that prefers multipart/mixed gets PKCS#8 under that label
        answer, _ = yield self.keygen(keygen_csr(), user="alice", label="p12", pkcs12=False)
        self.assertEqual(answer.form, "pkcs8")

    @defer.inlineCallbacks
    def test_escrow_keeps_the_key_sealed_and_a_receipt_confirms_it(self):
        kek = yield self.register_kek()
        csr = keygen_csr(decrypt_key_id=b"kek-alice-1")
        answer, delivered = yield self.keygen(csr, label="escrow",
                                              recipient=envelope.RecipientKey(kek=kek, kek_id=b"kek-alice-1"))
        self.assertTrue(delivered.receipt_requested)
        [record] = yield self.packages("alice")
        self.assertEqual((record.state, record.escrowed, record.key_destroyed, record.receipt_requested),
                         ("delivered", True, False, True))
        self.assertEqual((yield self.token_keys()), [record.key_label])
        attrs = yield on_token_thread(self.token.private_key_attributes, record.key_label)
        self.assertEqual((attrs["sensitive"], attrs["extractable"]), (True, False))
        escrowed = yield on_token_thread(self.token.public_key_der, record.key_label)
        self.assertEqual(escrowed, spki(delivered.certificate))
        self.addCleanup(on_token_thread, self.token.destroy_keypair, record.key_label)
        # the receipt request names where receipts go: our content signer
        opened = envelope.open_content_info(answer.key_der, envelope.RecipientKey(kek=kek, kek_id=b"kek-alice-1"))
        _, request = self.signed_key_package(opened.content, record.pkg_id)
        receipts_to = request["receiptReq"]["receiptsTo"]
        self.assertEqual(receipts_to[0]["sirenType"], rfc7191.id_dn)
        self.assertEqual(bytes(receipts_to[0]["sirenValue"]),
                         self.server.appliance.content_signer.certificate.subject.public_bytes())
        # the client acknowledges, signing with the key it just received
        def acknowledge():
            with self.client(label="escrow") as c:
                skg.send_return(c, skg.receipt_for(delivered))
        yield support.in_thread(acknowledge)
        record = yield on_store_thread_call(self.server.store.keygen.key_package, record.pkg_id)
        self.assertEqual(record.state, "confirmed")
        [row] = yield on_store_thread_call(self.server.store.keygen.key_package_returns, record.pkg_id)
        self.assertEqual(row[1:5], ("alice", "receipt", None, delivered.certificate.subject.rfc4514_string()))


class ApprovalTests(ServerKeygenBase):
    @defer.inlineCallbacks
    def test_manual_approval_then_one_delivery(self):
        csr = keygen_csr("CN=waiting-device")
        path = "/.well-known/est/manual/serverkeygen"
        resp = yield self.post_csr(csr, path=path)
        self.assertEqual(resp.status, 202, resp.body)
        self.assertEqual(resp.header("retry-after"), "7")
        self.assertEqual((yield self.packages()), [])  # nothing made while it waits
        self.assertEqual((yield self.token_keys()), [])
        [waiting] = yield on_store_thread_call(self.server.store.certificates.pending_requests)
        self.assertEqual((waiting.operation, waiting.subject), ("serverkeygen", "CN=waiting-device"))
        resp = yield self.post_csr(csr, path=path)
        self.assertEqual(resp.status, 202)
        yield on_store_thread_call(self.server.store.certificates.decide_pending, waiting.id, True)
        resp = yield self.post_csr(csr, path=path)
        self.assertEqual(resp.status, 200, resp.body)
        parts = multipart.parse(resp.header("content-type"), resp.body)
        [cert] = read_certs_only(parts[1].der)
        self.assertEqual(cert.subject.rfc4514_string(), "CN=waiting-device")
        done = yield on_store_thread_call(self.server.store.certificates.pending, waiting.id)
        self.assertEqual((done.state, done.serial), ("issued", cert.serial_number))
        # the same request again: a key is delivered once
        resp = yield self.post_csr(csr, path=path)
        self.assertEqual(resp.status, 400)
        self.assertIn("delivered once", resp.body.decode())
        self.assertEqual(len((yield self.packages())), 1)


class KeyAttributeTests(ServerKeygenBase):
    @defer.inlineCallbacks
    def test_ca_key_never_extractable_device_key_extractable_only_until_delivered(self):
        ca_label = self.server.appliance.config.ca.key_label
        attrs = yield on_token_thread(self.token.private_key_attributes, ca_label)
        self.assertEqual(attrs, {"sensitive": True, "extractable": False, "always_sensitive": True,
                                 "never_extractable": True})
        seen = {}
        original = self.token.export_private_key

        def export(label):
            seen[label] = self.token.private_key_attributes(label)
            return original(label)
        self.patch(self.token, "export_private_key", export)
        _, delivered = yield self.keygen(keygen_csr())
        [(label, device)] = seen.items()
        self.assertEqual(device, {"sensitive": True, "extractable": True, "always_sensitive": True,
                                  "never_extractable": False})
        self.assertEqual((yield self.token_keys()), [])
        has = yield on_token_thread(self.token.has_key, label)
        self.assertFalse(has)


class ReturnTests(ServerKeygenBase):
    @defer.inlineCallbacks
    def delivered_key(self, user="alice"):
        _, delivered = yield self.keygen(keygen_csr(decrypt_key_id=f"kek-{user}".encode()), user=user,
                                         recipient=self.recipients[user])
        return delivered

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.recipients = {}
        for user in ("alice", "bob"):
            kek = yield self.register_kek(user, f"kek-{user}".encode())
            self.recipients[user] = envelope.RecipientKey(kek=kek, kek_id=f"kek-{user}".encode())

    def post_return(self, der, user="alice", content_type="application/cms", encode=True):
        headers = {"Content-Type": content_type}
        if user:
            headers["Authorization"] = BasicAuth(user, PASSWORD).header()
        return self.raw("POST", "/.well-known/est/serverkeygen/return", headers,
                        base64.encodebytes(der) if encode else der)

    @defer.inlineCallbacks
    def test_receipt_204_and_recorded(self):
        delivered = yield self.delivered_key()
        resp = yield self.post_return(skg.receipt_for(delivered))
        self.assertEqual((resp.status, resp.body), (204, b""))
        self.assertIsNone(resp.header("content-length"))
        record = yield on_store_thread_call(self.server.store.keygen.key_package, delivered.pkg_id)
        self.assertEqual(record.state, "confirmed")
        self.assertIsNotNone(record.returned_at)

    @defer.inlineCallbacks
    def test_errors_signed_or_not_are_recorded_against_the_key(self):
        delivered = yield self.delivered_key()
        unsigned = keypackages.error_message(delivered.pkg_id, x509.Name.from_rfc4514_string("CN=device-1"),
                                             "decryptFailure")
        decoded = decode(bytes(decode(unsigned, rfc5652.ContentInfo())["content"]), rfc7191.KeyPackageError())
        self.assertEqual(int(decoded["errorCode"]["enum"]), 71)
        resp = yield self.post_return(unsigned)
        self.assertEqual(resp.status, 204, resp.body)
        record = yield on_store_thread_call(self.server.store.keygen.key_package, delivered.pkg_id)
        self.assertEqual((record.state, record.error_code), ("error", "decryptFailure"))
        signed = keypackages.error_message(delivered.pkg_id, delivered.certificate.subject, 84, delivered.key,
                                           delivered.certificate)
        resp = yield self.post_return(signed)
        self.assertEqual(resp.status, 204, resp.body)
        rows = yield on_store_thread_call(self.server.store.keygen.key_package_returns, delivered.pkg_id)
        self.assertEqual([(r[2], r[3]) for r in rows], [("error", "decryptFailure"), ("error", "badKeyPackage")])
        self.assertEqual(rows[1][4], delivered.certificate.subject.rfc4514_string())

    @defer.inlineCallbacks
    def test_refusals_record_nothing(self):
        delivered = yield self.delivered_key()
        bobs = yield self.delivered_key("bob")
        stranger_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name.from_rfc4514_string("CN=stranger")
        stranger = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                    .public_key(stranger_key.public_key()).serial_number(3).not_valid_before(now)
                    .not_valid_after(now + datetime.timedelta(days=1))
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(stranger_key.public_key()), False)
                    .sign(stranger_key, hashes.SHA256()))
        unsigned_receipt = cms.ContentInfo({"content_type": "key_package_receipt", "content": cms.ContentInfo.load(
            skg.receipt_for(delivered))["content"]["encap_content_info"]["content"].parsed}).dump()
        receipt = skg.receipt_for(delivered)
        cases = [
            # (body, user, status, text in the reason)
            (keypackages.receipt_message(os.urandom(16), delivered.certificate.subject, delivered.key,
                                         delivered.certificate), "alice", 400, "no key package"),
            (keypackages.receipt_message(bobs.pkg_id, delivered.certificate.subject, delivered.key,
                                         delivered.certificate), "alice", 403, "not delivered to this client"),
            (skg.receipt_for(bobs), "alice", 403, "signed by someone other than this client"),
            (receipt, "bob", 403, "signed by someone other than this client"),
            (keypackages.receipt_message(delivered.pkg_id, name, stranger_key, stranger), "alice", 403,
             "signed by someone other than this client"),
            (unsigned_receipt, "alice", 400, "must be signed"),
            (b"\x30\x03\x02\x01\x00", "alice", 400, "unreadable"),
            (b"\x00not base64 at all!", "alice", 400, "not base64"),
            (receipt[:-7], "alice", 400, ""),
            (receipt, None, 401, "authentication required"),
        ]
        for body, user, status, text in cases:
            resp = yield self.post_return(body, user=user, encode=not body.startswith(b"\x00"))
            self.assertEqual(resp.status, status, (text, resp.body))
            if status == 401:  # a challenge, with an empty body
                self.assertEqual((resp.body, resp.header("content-length")), (b"", "0"))
                continue
            self.assertEqual(resp.header("content-type"), "text/plain; charset=utf-8")
            self.assertIn(text, resp.body.decode())
            self.assertEqual(resp.body.count(b"\n"), 1)
        resp = yield self.post_return(receipt, content_type="application/pkcs10")
        self.assertEqual(resp.status, 415)
        # tampered: one bit of the signature (the last octets of the SignedData) flipped
        tampered = bytearray(receipt)
        tampered[-1] ^= 1
        resp = yield self.post_return(bytes(tampered))
        self.assertEqual(resp.status, 400)
        rows = yield on_store_thread_call(self.server.store.keygen.key_package_returns)
        self.assertEqual(rows, [])
        for pkg in (delivered.pkg_id, bobs.pkg_id):
            record = yield on_store_thread_call(self.server.store.keygen.key_package, pkg)
            self.assertEqual(record.state, "delivered")

    @defer.inlineCallbacks
    def test_an_error_naming_no_package_needs_a_delivered_key(self):
        """A package that was never sent (still being made, or none at all):
        the client cannot report on it; 400 and nothing recorded."""
        unnamed = keypackages.error_message(None, x509.Name.from_rfc4514_string("CN=device-1"), "decryptFailure")
        resp = yield self.post_return(unnamed, user="bob")
        self.assertEqual(resp.status, 400, resp.body)
        self.assertIn(b"none was delivered to this client", resp.body)
        pkg_id = os.urandom(16)
        yield on_store_thread_call(self.server.store.keygen.key_package_started, pkg_id=pkg_id, client="bob",
                                   label="default", key_label="never-made", form="enveloped",
                                   receipt_requested=True)
        for body in (unnamed, keypackages.error_message(pkg_id, x509.Name.from_rfc4514_string("CN=device-1"), 71)):
            resp = yield self.post_return(body, user="bob")
            self.assertEqual(resp.status, 400, resp.body)
        rows = yield on_store_thread_call(self.server.store.keygen.key_package_returns)
        self.assertEqual(rows, [])
        record = yield on_store_thread_call(self.server.store.keygen.key_package, pkg_id)
        self.assertEqual((record.state, record.returned_at), ("generating", None))
        delivered = yield self.delivered_key("bob")
        resp = yield self.post_return(unnamed, user="bob")
        self.assertEqual(resp.status, 204, resp.body)
        self.assertTrue(delivered.pkg_id)

    @defer.inlineCallbacks
    def test_published_rfc7191_receipt_is_read_and_refused_as_not_ours(self):
        path = Path("/work/shared/spec/vectors/pyasn1alt/rfc7191_message2_pem_text.b64")
        if not path.exists():
            raise unittest.SkipTest(f"{path} not present")
        sample = base64.b64decode(path.read_text())
        # our parser reads it (signature checked against the certificate it carries) ...
        parsed = keypackages.read_return(sample, [])
        self.assertEqual((parsed.kind, parsed.pkg_id.hex()), ("receipt", "27b89c563b1622519d17871c79bfac886ddff83d"))
        self.assertIn("Alice", parsed.by)
        # ... and the server refuses it: Alice of Example is not our client
        resp = yield self.post_return(sample)
        self.assertEqual(resp.status, 403, resp.body)
        error = keypackages.read_return(base64.b64decode(path.with_name("rfc7191_message3_pem_text.b64").read_text()),
                                        [])
        self.assertEqual((error.kind, error.error_code), ("error", "noTrustAnchor"))


class RefusalTests(ServerKeygenBase):
    @defer.inlineCallbacks
    def refused(self, csr, status, text, **kw):
        before = yield self.counts()
        resp = yield self.post_csr(csr, **kw)
        self.assertEqual(resp.status, status, resp.body)
        self.assertEqual(resp.header("content-type"), "text/plain; charset=utf-8")
        self.assertIn(text, resp.body.decode())
        self.assertEqual(resp.body.count(b"\n"), 1)
        self.assertEqual((yield self.counts()), before)
        self.assertEqual((yield self.token_keys()), [])

    @defer.inlineCallbacks
    def test_unknown_or_unsupported_key_forms_are_named(self):
        yield self.register_kek()
        yield self.refused(keygen_csr(decrypt_key_id=b"kek-alice-1", content_type="1.2.840.113549.1.7.2"), 400,
                           "key form 1.2.840.113549.1.7.2 (CSR contentType) is not supported")
        yield self.refused(keygen_csr(decrypt_key_id=b"kek-alice-1"), 400, "PKCS#12 cannot be combined",
                           Accept="application/pkcs12")
        yield self.refused(keygen_csr(content_type=EKP), 400, "Encrypted Key Package needs DecryptKeyIdentifier")
        yield self.refused(keygen_csr(), 400, "label 'strict' delivers keys only encrypted",
                           path="/.well-known/est/strict/serverkeygen")
        yield self.refused(keygen_csr(), 400, "key form 'pkcs12' is not allowed under label 'strict'",
                           path="/.well-known/est/strict/serverkeygen", Accept="application/pkcs12")
        yield self.refused(keygen_csr(decrypt_key_id=b"kek-alice-1", capabilities=(
            keygen_request.capability("aes256_gcm"),)), 400, "offer only AES-GCM")

    @defer.inlineCallbacks
    def test_unknown_keys_are_refused(self):
        yield self.register_kek(client="bob", key_id=b"kek-bob")
        yield self.refused(keygen_csr(decrypt_key_id=b"nobody"), 400, "unknown DecryptKeyIdentifier 6e6f626f6479")
        yield self.refused(keygen_csr(decrypt_key_id=b"kek-bob"), 400, "unknown DecryptKeyIdentifier")
        yield self.refused(keygen_csr(asymmetric_decrypt_key_id=b"\x01" * 20), 400,
                           "unknown AsymmetricDecryptKeyIdentifier")
        yield self.refused(keygen_csr(decrypt_key_id=b"kek-bob", asymmetric_decrypt_key_id=b"x"), 400, "not both")
        # an EC certificate without keyAgreement (RFC 7030 4.4.1.2)
        enc_key = ec.generate_private_key(ec.SECP256R1())
        enc_cert = yield self.enroll(enc_key, label="plain")
        ski = enc_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        yield self.refused(keygen_csr(asymmetric_decrypt_key_id=ski), 400, "does not allow key transport or key"
                                                                            " agreement")
        # RSA with PKCS#1 v1.5 only
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rsa_cert = yield self.enroll(rsa_key)
        ski = rsa_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        yield self.refused(keygen_csr(asymmetric_decrypt_key_id=ski, capabilities=(
            keygen_request.capability("1.2.840.113549.1.1.1"),)), 400, "PKCS#1 v1.5")

    @defer.inlineCallbacks
    def test_malformed_and_unauthenticated(self):
        yield self.refused(b"\x30\x03\x02\x01\x00", 400, "not a PKCS#10 request")
        resp = yield self.raw("POST", "/.well-known/est/serverkeygen", {"Content-Type": "application/pkcs10"},
                              base64.encodebytes(keygen_csr()))
        self.assertEqual(resp.status, 401)
        self.assertEqual(resp.header_values("www-authenticate")[0][:6], "Basic ")
        resp = yield self.post_csr(keygen_csr(), **{"Content-Type": "application/json"})
        self.assertEqual(resp.status, 415)
        resp = yield self.raw("GET", "/.well-known/est/serverkeygen")
        self.assertEqual(resp.status, 405)
        self.assertEqual((yield self.packages()), [])

    @defer.inlineCallbacks
    def test_accepts_raw_der_and_wrapped_base64(self):
        csr = keygen_csr()
        for body, cte in ((csr, "binary"), (base64.b64encode(csr), None), (base64.encodebytes(csr), "base64")):
            headers = {"Authorization": BasicAuth("alice", PASSWORD).header(), "Content-Type": "application/pkcs10"}
            if cte:
                headers["Content-Transfer-Encoding"] = cte
            resp = yield self.raw("POST", "/.well-known/est/serverkeygen", headers, body)
            self.assertEqual(resp.status, 200, resp.body)


class FailureTests(ServerKeygenBase):
    @defer.inlineCallbacks
    def assert_cleaned_up(self, status_text):
        [record] = yield self.packages("alice")
        self.assertEqual((record.state, record.key_destroyed), ("failed", True))
        self.assertIn(status_text, record.detail)
        self.assertEqual((yield self.token_keys()), [])
        has = yield on_token_thread(self.token.has_key, record.key_label)
        self.assertFalse(has)
        if record.serial is not None:
            cert = yield on_store_thread_call(self.server.store.certificates.certificate, record.serial)
            self.assertTrue(cert.revoked)
            self.assertEqual(cert.revocation_reason, "cessationOfOperation")
        return record

    @defer.inlineCallbacks
    def test_token_failure_after_generation_leaves_no_key_and_nothing_delivered(self):
        def broken(label):
            raise TokenUnavailable("token 'est-test' unavailable")
        self.patch(self.token, "export_private_key", broken)
        resp = yield self.post_csr(keygen_csr())
        self.assertEqual(resp.status, 503, resp.body)
        self.assertEqual(resp.header("retry-after"), "7")
        record = yield self.assert_cleaned_up("unavailable")
        self.assertIsNotNone(record.serial)  # issued, then revoked

    @defer.inlineCallbacks
    def test_signing_failure_leaves_no_key_and_nothing_delivered(self):
        kek = yield self.register_kek()
        del kek

        def broken(*args, **kwargs):
            return defer.fail(TokenUnavailable("token 'est-test' unavailable"))
        self.patch(self.server.appliance.content_signer, "sign", broken)
        resp = yield self.post_csr(keygen_csr(decrypt_key_id=b"kek-alice-1"))
        self.assertEqual(resp.status, 503, resp.body)
        yield self.assert_cleaned_up("unavailable")

    @defer.inlineCallbacks
    def test_a_crash_mid_request_is_swept(self):
        from estappliance.token import KEY_SPECS
        pkg_id = os.urandom(16)
        label = f"{self.generator.key_prefix}-skg-{pkg_id.hex()}"
        yield on_store_thread_call(self.server.store.keygen.key_package_started, pkg_id=pkg_id, client="alice",
                                   label="default", key_label=label, form="pkcs8", receipt_requested=False)
        yield on_token_thread(self.token.generate_keypair, label, KEY_SPECS["ec-p256"], extractable=True)
        # young: an in-flight request, left alone
        self.assertEqual((yield self.generator.sweep()), 0)
        self.assertEqual((yield self.token_keys()), [label])
        old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).isoformat(
            timespec="seconds")
        yield on_store_thread_call(self.server.store.db.execute,
                                   "UPDATE skg_packages SET created_at=? WHERE pkg_id=?", (old, pkg_id.hex()))
        self.assertEqual((yield self.generator.sweep()), 1)
        self.assertEqual((yield self.token_keys()), [])
        record = yield on_store_thread_call(self.server.store.keygen.key_package, pkg_id)
        self.assertEqual((record.state, record.key_destroyed), ("failed", True))


class CommandLineTests(ServerKeygenBase):
    """``est serverkeygen`` / ``est return`` as the installed command, and
    ``estctl serverkeygen`` in-process (its PKCS#11 calls on the one thread)."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        from .test_admin import write_toml
        self.dir = self.tmp().resolve()
        self.conf = self.dir / "estappliance.toml"
        write_toml(self.server.appliance.config, self.conf)
        self.ca_pem = self.dir / "ca.pem"
        self.ca_pem.write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        self.password_file = self.dir / "password"
        self.password_file.write_text(PASSWORD + "\n")

    @defer.inlineCallbacks
    def estctl(self, *argv):
        import io
        import sys
        from estappliance.admin.cli import main
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err

        def run():
            try:
                return main(["-c", str(self.conf), *argv])
            except SystemExit as e:
                print(e.code, file=sys.stderr)
                return 1
        try:
            code = yield on_token_thread(run)
        finally:
            sys.stdout, sys.stderr = saved
        return code, out.getvalue(), err.getvalue()

    def est(self, *argv):
        import sys
        est = Path(sys.executable).parent / "est"
        return support.run_tool(str(est), *[str(a) for a in argv], "--server", self.server.url, "--anchor",
                                str(self.ca_pem), "--user", "alice", "--password-file", str(self.password_file))

    @defer.inlineCallbacks
    def same_key(self, key_pem: Path, cert_pem: Path):
        ours = yield self.openssl("pkey", "-in", str(key_pem), "-pubout")
        theirs = yield self.openssl("x509", "-in", str(cert_pem), "-noout", "-pubkey")
        self.assertEqual(ours.returncode, 0, ours.stderr)
        self.assertEqual(ours.stdout, theirs.stdout)

    @defer.inlineCallbacks
    def test_kek_made_by_estctl_used_by_est_then_an_error_returned(self):
        kek_file = self.dir / "kek.hex"
        code, out, err = yield self.estctl("serverkeygen", "kek", "add", "alice", "--id", "0a0b0c", "--generate",
                                           "--out", str(kek_file))
        self.assertEqual(code, 0, err)
        self.assertIn("KEK 0a0b0c (256 bits) for client 'alice' is in the token", out)
        self.assertEqual(len(bytes.fromhex(kek_file.read_text().strip())), 32)
        self.assertEqual(kek_file.stat().st_mode & 0o777, 0o600)
        code, out, _ = yield self.estctl("serverkeygen", "kek", "list")
        self.assertRegex(out, r"^0a0b0c\talice\t256 bits\t")
        key, cert = self.dir / "dev.key", self.dir / "dev.pem"
        proc = yield self.est("serverkeygen", "--subject", "CN=cli-device", "--kek-id", "0a0b0c", "--kek-file",
                              kek_file, "--key-out", key, "-o", cert)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(b"server-generated key (enveloped) for CN=cli-device", proc.stderr)
        self.assertEqual(key.stat().st_mode & 0o777, 0o600)
        yield self.same_key(key, cert)
        verify = yield self.openssl("verify", "-CAfile", str(self.ca_pem), str(cert))
        self.assertEqual(verify.returncode, 0, verify.stderr)
        pkg_id = re.search(rb"key package ([0-9a-f]{32})", proc.stderr).group(1).decode()
        proc = yield self.est("return", "--pkg-id", pkg_id, "--error", "badKeyPackage", "--by", "CN=cli-device")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        code, out, _ = yield self.estctl("serverkeygen", "list", "--client", "alice")
        self.assertRegex(out, rf"^{pkg_id}\terror\tenveloped\talice\tdefault\t[0-9a-f]+\t.*\tbadKeyPackage$")
        # an unknown identifier: a one-line reason, exit 1, nothing written
        proc = yield self.est("serverkeygen", "--subject", "CN=x", "--kek-id", "ffff", "--kek-file", kek_file,
                              "--key-out", self.dir / "none.key", "-o", self.dir / "none.pem")
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stderr, b"est: serverkeygen: HTTP 400 unknown DecryptKeyIdentifier ffff\n")
        self.assertFalse((self.dir / "none.key").exists())
        code, out, _ = yield self.estctl("serverkeygen", "kek", "remove", "0a0b0c")
        self.assertEqual(code, 0)
        self.assertEqual((yield on_token_thread(self.token.key_labels, f"{self.generator.key_prefix}-kek-")), [])

    @defer.inlineCallbacks
    def test_pkcs12_and_receipt_from_the_command_line(self):
        p12 = self.dir / "dev.p12"
        key, cert = self.dir / "dev.key", self.dir / "dev.pem"
        proc = yield self.est("serverkeygen", "--subject", "CN=cli-p12", "--pkcs12", "--p12-password-file",
                              self.password_file, "--p12-out", p12, "--key-out", key, "-o", cert)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        yield self.same_key(key, cert)
        out = yield self.openssl("pkcs12", "-in", str(p12), "-passin", f"file:{self.password_file}", "-nokeys")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(b"subject=CN = cli-p12", out.stdout)
        # an encrypted key to the client's own RSA certificate, and an automatic receipt when asked
        enc_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        enc_cert = yield self.enroll(enc_key, label="escrow")
        (self.dir / "enc.key").write_bytes(enc_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (self.dir / "enc.pem").write_bytes(enc_cert.public_bytes(serialization.Encoding.PEM))
        proc = yield self.est("serverkeygen", "--label", "escrow", "--subject", "CN=cli-ekp", "--recipient-cert",
                              self.dir / "enc.pem", "--recipient-key", self.dir / "enc.key",
                              "--encrypted-key-package", "--cipher", "aes128_gcm", "--key-out", key, "-o", cert)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(b"receipt sent for key package", proc.stderr)
        yield self.same_key(key, cert)
        packages = yield self.packages("alice")
        self.assertEqual([(p.form, p.state) for p in packages],
                         [("pkcs12", "delivered"), ("encrypted-key-package", "confirmed")])
        for p in packages:
            if p.escrowed:
                self.addCleanup(on_token_thread, self.token.destroy_keypair, p.key_label)

    @defer.inlineCallbacks
    def test_estctl_recipients_passwords_and_sweep(self):
        enc_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name.from_rfc4514_string("CN=registered")
        enc_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(enc_key.public_key())
                    .serial_number(5).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(enc_key.public_key()), False)
                    .sign(enc_key, hashes.SHA256()))
        (self.dir / "enc.pem").write_bytes(enc_cert.public_bytes(serialization.Encoding.PEM))
        code, out, err = yield self.estctl("serverkeygen", "recipient", "add", "alice", str(self.dir / "enc.pem"))
        self.assertEqual(code, 0, err)
        ski = enc_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
        code, out, _ = yield self.estctl("serverkeygen", "recipient", "list")
        self.assertIn(f"{ski}\talice\t", out)
        _, delivered = yield self.keygen(keygen_csr(asymmetric_decrypt_key_id=bytes.fromhex(ski)),
                                         recipient=envelope.RecipientKey.for_certificate(enc_key, enc_cert))
        self.assertEqual(spki(delivered.key), spki(delivered.certificate))
        (self.dir / "short").write_text("short\n")
        code, _, err = yield self.estctl("serverkeygen", "pkcs12-password", "bob", "--password-file",
                                         str(self.dir / "short"))
        self.assertEqual(code, 1)
        self.assertIn("at least 8 characters", err)
        code, out, err = yield self.estctl("serverkeygen", "pkcs12-password", "bob", "--password-file",
                                           str(self.password_file))
        self.assertEqual(code, 0, err)
        password = yield self.generator.pkcs12_password("bob")
        self.assertEqual(password, PASSWORD.encode())
        code, out, _ = yield self.estctl("serverkeygen", "sweep")
        self.assertEqual((code, out), (0, "0 abandoned key(s) destroyed\n"))
