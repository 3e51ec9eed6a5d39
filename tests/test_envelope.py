"""pki.envelope: EnvelopedData / AuthEnvelopedData / EncryptedKeyPackage for
KEK, RSA-OAEP and ECDH recipients. Ours are decoded by pyasn1-alt-modules
(no trailing bytes, byte-exact re-encoding, RFC 5652 versions) and opened by
``openssl cms -decrypt``; the published RFC 6032 sample is read by ours."""
from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from pyasn1_alt_modules import rfc3565, rfc4055, rfc5083, rfc5084, rfc5280, rfc5652, rfc5753, rfc6032
from twisted.trial import unittest

from estappliance.pki import envelope
from estappliance.pki.envelope import (EnvelopeError, KekRecipient, KeyAgreeRecipient, KeyTransRecipient,
                                       RecipientId, RecipientKey)

from .support import ExactDecoding, pyasn1alt_vector

NOW = datetime.datetime.now(datetime.timezone.utc)
MESSAGE = b"a key package, say " * 9
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_P256 = ec.generate_private_key(ec.SECP256R1())
_P384 = ec.generate_private_key(ec.SECP384R1())


def recipient_cert(key, name="CN=recipient", serial=0x51):
    subject = x509.Name.from_rfc4514_string(name)
    ec_key = isinstance(key, ec.EllipticCurvePrivateKey)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(serial).not_valid_before(NOW).not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=not ec_key, data_encipherment=False,
                                         key_agreement=ec_key, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))


def pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class EnvelopeTests(ExactDecoding, unittest.TestCase):
    def openssl_decrypt(self, der, *args):
        tmp = Path(self.mktemp())
        tmp.mkdir()
        (tmp / "m.der").write_bytes(der)
        argv = ["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(tmp / "m.der"), "-binary"]
        for a in args:
            if isinstance(a, (x509.Certificate, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
                path = tmp / f"{len(list(tmp.iterdir()))}.pem"
                path.write_bytes(pem(a))
                a = str(path)
            argv.append(a)
        out = subprocess.run(argv, capture_output=True)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        return out.stdout

    def enveloped(self, der):
        ci = self.decode(der, rfc5652.ContentInfo())
        self.assertEqual(ci["contentType"], rfc5652.id_envelopedData)
        return self.decode(bytes(ci["content"]), rfc5652.EnvelopedData())

    def test_ktri_rsa_oaep_sha256_by_ski_and_by_issuer_serial(self):
        cert = recipient_cert(_RSA)
        for use_ski, ktri_version, env_version in ((True, 2, 2), (False, 0, 0)):
            rid = RecipientId.from_certificate(cert, use_ski=use_ski)
            der = envelope.enveloped_data("data", MESSAGE, [KeyTransRecipient(_RSA.public_key(), rid)])
            env = self.enveloped(der)
            self.assertEqual(int(env["version"]), env_version)  # RFC 5652 6.1
            ktri = env["recipientInfos"][0]["ktri"]
            self.assertEqual(int(ktri["version"]), ktri_version)
            self.assertEqual(ktri["rid"].getName(), "subjectKeyIdentifier" if use_ski else "issuerAndSerialNumber")
            alg = ktri["keyEncryptionAlgorithm"]
            self.assertEqual(alg["algorithm"], rfc4055.id_RSAES_OAEP)
            params = self.decode(bytes(alg["parameters"]), rfc4055.RSAES_OAEP_params())
            self.assertEqual(params["hashFunc"]["algorithm"], rfc4055.id_sha256)
            self.assertEqual(params["maskGenFunc"]["algorithm"], rfc4055.id_mgf1)
            eci = env["encryptedContentInfo"]
            self.assertEqual(eci["contentType"], rfc5652.id_data)
            self.assertEqual(eci["contentEncryptionAlgorithm"]["algorithm"], rfc3565.id_aes256_CBC)
            opened = envelope.open_content_info(der, RecipientKey.for_certificate(_RSA, cert))
            self.assertEqual((opened.content, opened.recipient_type, opened.key_encryption),
                             (MESSAGE, "ktri", "rsaes_oaep"))
            self.assertEqual(self.openssl_decrypt(der, "-recip", cert, "-inkey", _RSA), MESSAGE)

    def test_kari_ecdh_x963_kdf_and_aes_wrap(self):
        for key, wrap, kdf in ((_P256, "aes256_wrap", "sha256"), (_P384, "aes128_wrap", "sha384")):
            cert = recipient_cert(key)
            recipient = envelope.recipient_for_certificate(cert, wrap_algorithm=wrap, kdf_hash=kdf)
            self.assertIsInstance(recipient, KeyAgreeRecipient)
            der = envelope.enveloped_data("data", MESSAGE, [recipient], cipher="aes128_cbc")
            env = self.enveloped(der)
            self.assertEqual(int(env["version"]), 2)
            kari = env["recipientInfos"][0]["kari"]
            self.assertEqual(int(kari["version"]), 3)
            self.assertEqual(kari["originator"].getName(), "originatorKey")
            self.assertEqual(str(kari["keyEncryptionAlgorithm"]["algorithm"]), envelope.ECDH_SCHEMES[kdf])
            wrap_alg = self.decode(bytes(kari["keyEncryptionAlgorithm"]["parameters"]), rfc5280.AlgorithmIdentifier())
            self.assertEqual(wrap_alg["algorithm"], {"aes256_wrap": rfc3565.id_aes256_wrap,
                                                     "aes128_wrap": rfc3565.id_aes128_wrap}[wrap])
            self.assertFalse(wrap_alg["parameters"].isValue)  # RFC 3565: absent
            rek = kari["recipientEncryptedKeys"][0]
            self.assertEqual(bytes(rek["rid"]["rKeyId"]["subjectKeyIdentifier"]),
                             cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
            opened = envelope.open_content_info(der, RecipientKey.for_certificate(key, cert))
            self.assertEqual((opened.content, opened.recipient_type), (MESSAGE, "kari"))
            self.assertEqual(self.openssl_decrypt(der, "-recip", cert, "-inkey", key), MESSAGE)

    def test_kari_shared_info_is_rfc5753(self):
        info = envelope.EccCmsSharedInfo({"key_info": {"algorithm": "aes256_wrap"}, "supp_pub_info": b"\0\0\1\0",
                                          "entity_u_info": b"ukm"}).dump()
        decoded = self.decode(info, rfc5753.ECC_CMS_SharedInfo())
        self.assertEqual(bytes(decoded["suppPubInfo"]), b"\0\0\1\0")
        self.assertEqual(bytes(decoded["entityUInfo"]), b"ukm")

    def test_kekri_with_a_host_key_and_a_token_style_wrap_callable(self):
        kek = os.urandom(32)
        calls = []

        def wrap_elsewhere(cek):  # what a token does with CKM_AES_KEY_WRAP
            calls.append(cek)
            return aes_key_wrap(kek, cek)

        for recipient in (KekRecipient.with_key(b"kek-7", kek), KekRecipient(b"kek-7", wrap_elsewhere, 32)):
            der = envelope.enveloped_data("data", MESSAGE, [recipient])
            env = self.enveloped(der)
            self.assertEqual(int(env["version"]), 2)
            kekri = env["recipientInfos"][0]["kekri"]
            self.assertEqual(int(kekri["version"]), 4)
            self.assertEqual(bytes(kekri["kekid"]["keyIdentifier"]), b"kek-7")
            self.assertEqual(kekri["keyEncryptionAlgorithm"]["algorithm"], rfc3565.id_aes256_wrap)
            opened = envelope.open_content_info(der, RecipientKey(kek=kek, kek_id=b"kek-7"))
            self.assertEqual((opened.content, opened.key_encryption), (MESSAGE, "aes256_wrap"))
            self.assertEqual(self.openssl_decrypt(der, "-secretkey", kek.hex(), "-secretkeyid", b"kek-7".hex()),
                             MESSAGE)
        self.assertEqual(len(calls), 1)
        self.assertEqual(KekRecipient.with_key(b"x", os.urandom(16)).wrap_algorithm, "aes128_wrap")

    def test_gcm_makes_auth_enveloped_data(self):
        cert = recipient_cert(_P256)
        der = envelope.enveloped_data("data", MESSAGE, [envelope.recipient_for_certificate(cert)],
                                      cipher="aes256_gcm")
        ci = self.decode(der, rfc5652.ContentInfo())
        self.assertEqual(ci["contentType"], rfc5083.id_ct_authEnvelopedData)
        aed = self.decode(bytes(ci["content"]), rfc5083.AuthEnvelopedData())
        self.assertEqual(int(aed["version"]), 0)
        alg = aed["authEncryptedContentInfo"]["contentEncryptionAlgorithm"]
        self.assertEqual(alg["algorithm"], rfc5084.id_aes256_GCM)
        params = self.decode(bytes(alg["parameters"]), rfc5084.GCMParameters())
        self.assertEqual((len(params["aes-nonce"]), int(params["aes-ICVlen"])), (12, 16))
        self.assertEqual(len(aed["mac"]), 16)
        self.assertEqual(envelope.open_content_info(der, RecipientKey.for_certificate(_P256, cert)).content, MESSAGE)
        self.assertEqual(self.openssl_decrypt(der, "-recip", cert, "-inkey", _P256), MESSAGE)
        # flip one ciphertext bit: the tag refuses it
        tampered = bytearray(der)
        tampered[-40] ^= 1
        self.assertRaises(EnvelopeError, envelope.open_content_info, bytes(tampered),
                          RecipientKey.for_certificate(_P256, cert))

    def test_wrong_keys_and_garbage_are_refused(self):
        cert = recipient_cert(_RSA)
        der = envelope.enveloped_data("data", MESSAGE, [envelope.recipient_for_certificate(cert)])
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        err = self.assertRaises(EnvelopeError, envelope.open_content_info, der,
                                RecipientKey.for_certificate(other, recipient_cert(other)))
        self.assertIn("no RecipientInfo", str(err))
        # right identifier, wrong key: OAEP decryption fails
        self.assertRaises(EnvelopeError, envelope.open_content_info, der,
                          RecipientKey(private_key=other, rid=RecipientId.from_certificate(cert)))
        kek_der = envelope.enveloped_data("data", MESSAGE, [KekRecipient.with_key(b"k", os.urandom(32))])
        self.assertRaises(EnvelopeError, envelope.open_content_info, kek_der,
                          RecipientKey(kek=os.urandom(32), kek_id=b"k"))
        for junk in (b"", b"\x30\x03\x02\x01\x00", MESSAGE, der[:-5]):
            self.assertRaises(EnvelopeError, envelope.open_content_info, junk, RecipientKey(kek=b"0" * 32))
        self.assertRaises(EnvelopeError, envelope.enveloped_data, "data", MESSAGE, [])
        self.assertRaises(EnvelopeError, envelope.enveloped_data, "data", MESSAGE,
                          [KekRecipient.with_key(b"k", os.urandom(32))], cipher="des")
        self.assertRaises(EnvelopeError, KekRecipient.with_key, b"k", b"short")


class EncryptedKeyPackageTests(ExactDecoding, unittest.TestCase):
    def ekp(self, der):
        ci = self.decode(der, rfc5652.ContentInfo())
        self.assertEqual(ci["contentType"], rfc6032.id_ct_KP_encryptedKeyPkg)
        return self.decode(bytes(ci["content"]), rfc6032.EncryptedKeyPackage())

    def test_enveloped_choice(self):
        kek = os.urandom(32)
        der = envelope.encrypted_key_package("signed_data", MESSAGE, [KekRecipient.with_key(b"id", kek)])
        ekp = self.ekp(der)
        self.assertEqual(ekp.getName(), "enveloped")
        self.assertEqual(ekp["enveloped"]["encryptedContentInfo"]["contentType"], rfc5652.id_signedData)
        opened = envelope.open_content_info(der, RecipientKey(kek=kek, kek_id=b"id"))
        self.assertEqual((opened.layer, opened.content_type, opened.content), ("enveloped", "signed_data", MESSAGE))

    def test_auth_enveloped_choice(self):
        cert = recipient_cert(_RSA)
        der = envelope.encrypted_key_package("data", MESSAGE, [envelope.recipient_for_certificate(cert)],
                                             cipher="aes128_gcm")
        self.assertEqual(self.ekp(der).getName(), "authEnveloped")
        opened = envelope.open_content_info(der, RecipientKey.for_certificate(_RSA, cert))
        self.assertEqual((opened.layer, opened.content_encryption), ("auth_enveloped", "aes128_gcm"))

    def test_encrypted_choice_names_its_key(self):
        key = os.urandom(16)
        der = envelope.encrypted_key_package("data", MESSAGE, key=key, key_id=b"ptf-kdc-1")
        ekp = self.ekp(der)
        self.assertEqual(ekp.getName(), "encrypted")
        self.assertEqual(int(ekp["encrypted"]["version"]), 2)
        attr = ekp["encrypted"]["unprotectedAttrs"][0]
        self.assertEqual(attr["attrType"], rfc6032.id_aa_KP_contentDecryptKeyID)
        self.assertEqual(envelope.open_content_info(der, RecipientKey(kek=key)).content, MESSAGE)
        self.assertRaises(EnvelopeError, envelope.encrypted_key_package, "data", MESSAGE,
                          [KekRecipient.with_key(b"k", key)], key=key)

    def test_published_rfc6032_sample_is_read(self):
        from asn1crypto import cms
        from estappliance.pki.asn1 import rfc6032 as ours
        der = pyasn1alt_vector("rfc6032_encrypted_key_pkg_pem_text.b64")
        info = cms.ContentInfo.load(der)
        self.assertEqual(info["content_type"].native, ours.CONTENT_TYPE)
        choice = info["content"]
        self.assertEqual(choice.name, "encrypted")
        attrs = choice.chosen["unprotected_attrs"].native
        self.assertEqual(attrs[0]["type"], ours.CONTENT_DECRYPT_KEY_ID)
        self.assertEqual(attrs[0]["values"], [b"ptf-kdc-812374"])
        self.assertEqual(choice.chosen["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native,
                         "aes256_cbc")
        self.assertEqual(info.dump(force=True), der)
        # no key was published: opening it with a guess fails cleanly
        self.assertRaises(EnvelopeError, envelope.open_content_info, der, RecipientKey(kek=bytes(32)))
