"""The appliance on a second real PKCS#11 token: opencryptoki's soft token
("IBM SoftTok": RSA, RSA-OAEP, AES-CBC-PAD, HMAC; no EC, no AES key wrap, no
GCM, and no CKM_SHA256_RSA_PKCS either), with an RSA CA, through the real
``twistd est``, ``estctl`` and ``est``. Every token-facing feature either
works or is refused exactly as ``estctl token check`` says; one server serves
the whole module (tests/opencryptoki.py starts pkcsslotd and initialises the
token)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import pkcs12
from twisted.trial import unittest

from . import opencryptoki
from .test_e2e_interop import BIN, CA_SUBJECT, REALM, USER, EstServer, SharedServer, _toml_str, free_port

HW_TYPE = "1.3.6.1.4.1.99999.7.1"
FW_ID = "1.3.6.1.4.1.99999.7.2"


class OckServer(EstServer):
    """An EstServer whose token is opencryptoki's soft token, with an RSA-2048 CA."""

    def __init__(self, base: Path, module: str):
        super().__init__(base, ca_key_type="rsa2048", auth=("basic", "cert"))
        self.module = module

    def config_text(self, key_type: str, key_label: str, ca_dir: Path) -> str:
        s = self.state
        return f"""\
[server]
host = "127.0.0.1"
port = {self.port}
server_names = ["localhost", "127.0.0.1"]
tls_key = {_toml_str(s / "tls" / "server.key")}
tls_cert = {_toml_str(s / "tls" / "server.pem")}
realm = {_toml_str(REALM)}
retry_after = 10

[token]
module = {_toml_str(self.module)}
label = {_toml_str(opencryptoki.LABEL)}
pin_file = {_toml_str(s / "token.pin")}

[ca]
key_label = {_toml_str(key_label)}
key_type = {_toml_str(key_type)}
subject = {_toml_str(CA_SUBJECT)}
cert_file = {_toml_str(ca_dir / "ca.pem")}
chain_file = {_toml_str(ca_dir / "chain.pem")}

[store]
path = {_toml_str(s / "est.sqlite")}

[profiles.default]
validity_days = 365
key_types = ["rsa2048", "rsa3072", "ec-p256"]
key_usage = ["digitalSignature", "keyEncipherment"]
extended_key_usage = ["clientAuth"]
copy_san = true

[labels.default]
profile = "default"
auth = ["basic", "cert"]
cert_anchors = ["ca"]
serverkeygen_forms = ["pkcs8", "enveloped", "encrypted-key-package", "pkcs12"]
"""

    def prepare(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "token.pin").write_text(opencryptoki.USER_PIN + "\n")
        self.port = free_port()
        self.config.write_text(self.config_text("rsa2048", "est-ca", self.state / "ca"))
        self.estctl("init")
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        self.estctl("client", "add", USER, "--password-file", self.password_file, "--labels", "*")


_server = SharedServer(lambda: OckServer(Path(tempfile.mkdtemp(prefix="ock-", dir=os.getcwd())),
                                         opencryptoki.soft_token()))


class OpencryptokiTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        opencryptoki.soft_token()  # skips where opencryptoki cannot run
        self.server = _server.get()
        self.dir = Path(self.mktemp()).resolve()
        self.dir.mkdir(parents=True)
        self.ca = x509.load_pem_x509_certificate(self.server.ca_pem.read_bytes())

    def est(self, *args, check: bool = True, words: int = 1):
        """``est`` with this server; ``words``: how many leading args name the command."""
        return self.server.run(BIN / "est", *args[:words], "--server", self.server.url, "--anchor",
                               self.server.ca_pem, *args[words:], check=check)

    def password(self) -> tuple[str, ...]:
        return ("--user", USER, "--password-file", str(self.server.password_file))

    def assertIssuedByCa(self, path: Path) -> x509.Certificate:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        # An RSA CA on a token without CKM_SHA256_RSA_PKCS: CKM_RSA_PKCS over a
        # DigestInfo made on the host must give the very same signature.
        self.ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
        return cert

    def enroll(self, name: str, key_type: str = "rsa2048") -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        self.est("enroll", *self.password(), "--subject", f"CN={name}", "--key-type", key_type,
                 "--key-out", key, "-o", cert)
        return cert, key

    # -- what token check says --------------------------------------------------------

    def test_token_check_names_what_the_soft_token_can_and_cannot_serve(self):
        out = self.server.estctl("token", "check").stdout.decode()
        self.assertIn("IBM SoftTok", out)
        for line in ("yes  CA key rsa2048: enrollment", "NO   CA key ec-p256 (estctl init): the token has no "
                     "CKM_EC_KEY_PAIR_GEN", "yes  /serverkeygen (", "wrapped out with CKM_AES_CBC_PAD",
                     "NO   /serverkeygen and /symmetrickeys to a KEK", "CKM_AES_KEY_WRAP",
                     "yes  /symmetrickeys", "NO   operator-set PKCS#12 passwords", "CKM_AES_GCM",
                     "yes  /fullcmc shared secrets", "CKM_RSA_PKCS over a DigestInfo",
                     "ok    non-extractable rsa2048 key: wrapping it out is refused",
                     "ok    key type rsa2048: generated, signs (verified on the host), sensitive and non-extractable"):
            self.assertIn(line, out)

    def test_init_refuses_an_ec_ca_with_the_reason(self):
        config = self.dir / "ec.toml"
        config.write_text(self.server.config_text("ec-p256", "est-ec-ca", self.dir / "ec-ca"))
        done = self.server.run(BIN / "estctl", "-c", config, "init", check=False)
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        self.assertIn(b"[ca] key_type 'ec-p256': the token has no CKM_EC_KEY_PAIR_GEN", done.stderr)
        self.assertFalse((self.dir / "ec-ca" / "ca.pem").exists())

    def test_ca_key_is_sensitive_and_never_extractable(self):
        attributes = opencryptoki.query("private_key_attributes", "est-ca")
        self.assertEqual(attributes, {"sensitive": True, "extractable": False, "always_sensitive": True,
                                      "never_extractable": True})
        spki = bytes.fromhex(opencryptoki.query("public_key_der", "est-ca"))
        self.assertEqual(spki, self.ca.public_key().public_bytes(serialization.Encoding.DER,
                                                                  serialization.PublicFormat.SubjectPublicKeyInfo))

    # -- enrollment, re-enrollment, CRLs ----------------------------------------------------

    def test_enroll_and_reenroll(self):
        for key_type in ("rsa2048", "ec-p256"):  # the device's key: any type the profile allows
            cert, key = self.enroll(f"ock-{key_type}", key_type)
            self.assertIssuedByCa(cert)
        renewed = self.dir / "renewed.pem"
        self.est("reenroll", "--cert", cert, "--key", key, "-o", renewed)
        self.assertEqual(self.assertIssuedByCa(renewed).subject, x509.Name.from_rfc4514_string("CN=ock-ec-p256"))

    def test_crls_signed_by_the_rsa_ca(self):
        cert, _ = self.enroll("ock-revoked")
        serial = format(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number, "x")
        self.server.estctl("cert", "revoke", serial, "--reason", "keyCompromise")
        self.server.estctl("crl", "issue", "--both")
        out = self.dir / "crls.pem"
        self.est("crls", "-o", out)  # checked against --anchor by est
        crls = [x509.load_pem_x509_crl(b"-----BEGIN X509 CRL-----" + part)
                for part in out.read_bytes().split(b"-----BEGIN X509 CRL-----")[1:]]
        self.assertEqual(len(crls), 2)
        for crl in crls:
            self.assertTrue(crl.is_signature_valid(self.ca.public_key()))
        revoked = {r.serial_number for crl in crls for r in crl}
        self.assertIn(int(serial, 16), revoked)

    # -- /fullcmc --------------------------------------------------------------------------

    def test_fullcmc_enroll(self):
        cert, key = self.dir / "cmc.pem", self.dir / "cmc.key"
        self.est("fullcmc", "enroll", *self.password(), "--subject", "CN=ock-cmc", "--key-type", "rsa2048",
                 "--key-out", key, "-o", cert, words=2)
        self.assertIssuedByCa(cert)

    # -- /serverkeygen ----------------------------------------------------------------------

    def test_serverkeygen_pkcs8_with_rsa_wrapped_out_by_aes_cbc_pad(self):
        cert, key = self.dir / "skg.pem", self.dir / "skg.key"
        self.est("serverkeygen", *self.password(), "--subject", "CN=ock-skg", "--key-type", "rsa2048",
                 "--key-out", key, "-o", cert)
        issued = self.assertIssuedByCa(cert)
        private = serialization.load_pem_private_key(key.read_bytes(), None)
        self.assertEqual(private.public_key(), issued.public_key())

    def test_serverkeygen_pkcs12(self):
        p12 = self.dir / "skg.p12"
        cert = self.dir / "p12.pem"
        self.est("serverkeygen", *self.password(), "--subject", "CN=ock-p12", "--key-type", "rsa2048",
                 "--pkcs12", "--p12-password-file", self.server.password_file, "--p12-out", p12, "-o", cert)
        key, leaf, _ = pkcs12.load_key_and_certificates(p12.read_bytes(), self.server.password.encode())
        self.assertEqual(key.public_key(), leaf.public_key())
        self.assertIssuedByCa(cert)

    def test_serverkeygen_of_a_key_type_the_token_lacks_is_refused_and_service_goes_on(self):
        done = self.est("serverkeygen", *self.password(), "--subject", "CN=ock-ec", "--key-type", "ec-p256",
                        "-o", self.dir / "ec.pem", check=False)
        self.assertNotEqual(done.returncode, 0)
        said = (done.stdout + done.stderr).decode()
        self.assertIn("400", said)
        self.assertIn("cannot make ec-p256 keys (the token has no CKM_EC_KEY_PAIR_GEN", said)
        self.assertIn("token cannot serve this request: /serverkeygen", self.server.log())
        self.assertNotIn("internal error", said)
        self.enroll("ock-after-refusal")  # the rest keeps working

    def test_kek_and_sealed_pkcs12_password_are_refused_by_estctl(self):
        done = self.server.estctl("serverkeygen", "kek", "add", USER, "--generate", "--out", self.dir / "kek.hex",
                                  check=False)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn(b"cannot hold a KEK: the token has no CKM_AES_KEY_WRAP", done.stderr)
        self.assertFalse((self.dir / "kek.hex").exists())
        done = self.server.estctl("serverkeygen", "pkcs12-password", USER, "--password-file",
                                  self.server.password_file, check=False)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn(b"the token has no CKM_AES_GCM", done.stderr)

    # -- /symmetrickeys, firmware, TAMP: one device syncs them all -----------------------------

    def test_symmetric_key_firmware_and_tamp_packages(self):
        cert, key = self.enroll("ock-device")  # RSA with keyEncipherment: symmetric keys are encrypted to it
        image = self.dir / "image.bin"
        image.write_bytes(os.urandom(3000))
        for argv in (("publish", "symmetric-key", "--client", USER, "--key-id", "ock-key"),
                     ("publish", "firmware", image, "--sign", "--client", USER, "--package-id", FW_ID, "--version",
                      "2", "--hardware", HW_TYPE),
                     ("publish", "tamp", "status-query", "--client", USER)):
            self.server.estctl(*argv)
        state = self.dir / "device"
        done = self.est("sync", "--cert", cert, "--key", key, "--state", state, "--hw-type", HW_TYPE,
                        "--hw-serial", "SN-1")
        out = done.stdout.decode()
        self.assertIn("3 package(s) handled", out)
        self.assertIn("0 refused", out)
        self.assertIn("symmetric key ock-key stored", done.stderr.decode())
        self.assertEqual(len((state / "keys" / "ock-key.key").read_bytes()), 32)
        self.assertEqual((state / "firmware" / f"{FW_ID}_version_2.bin").read_bytes(), image.read_bytes())
        # No symmetric key is left in the token: made, wrapped out (AES-CBC-PAD), destroyed.
        self.assertEqual(opencryptoki.query("key_labels", "symkey-"), [])
