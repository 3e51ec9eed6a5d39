"""estctl (estappliance.admin.cli.main) run in-process against a real TOML
file and the test SoftHSM2 token: init, clients, subordinate CA import,
certificate list and audit.

Every PKCS#11 call in this process must run on the one PKCS#11 thread, so
main() runs there (``on_token_thread``)."""
from __future__ import annotations

import datetime
import io
import json
import os
import stat
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.admin.cli import main
from estappliance.ra.passwords import verify_password
from estappliance.store import Store
from estappliance.token import on_token_thread

from . import support


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


def write_toml(cfg, path: Path) -> None:
    """The test config (support.config) as an estappliance.toml with absolute paths."""
    hsm = support.hsm_dir().resolve()
    tables = {
        "server": {"host": cfg.server.host, "port": cfg.server.port, "server_names": list(cfg.server.server_names),
                   "tls_key": cfg.server.tls_key, "tls_cert": cfg.server.tls_cert,
                   "max_body": cfg.server.max_body, "retry_after": cfg.server.retry_after},
        "token": {"module": support.SOFTHSM_LIB, "label": support.TOKEN_LABEL, "pin_file": hsm / "pin",
                  "softhsm2_conf": hsm / "softhsm2.conf"},
        "ca": {"key_label": cfg.ca.key_label, "key_type": cfg.ca.key_type, "subject": cfg.ca.subject,
               "validity_days": cfg.ca.validity_days, "cert_file": cfg.ca.cert_file,
               "chain_file": cfg.ca.chain_file},
        "store": {k: v for k, v in vars(cfg.store).items() if v is not None},
    }
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_value(v)}" for k, v in table.items())
    for name, label in cfg.labels.items():
        lines.append(f"[labels.{json.dumps(name)}]")
        lines.append(f"auth = {_value(label.auth)}")
    path.write_text("\n".join(lines) + "\n")


def _run_main(argv):
    """main() as the `estctl` process would end: SystemExit(text) is exit 1 with text on stderr."""
    try:
        return main(argv)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 1
        return e.code or 0


def now():
    return datetime.datetime.now(datetime.timezone.utc)


class ParentCA:
    """An outside parent CA, made with cryptography, for subordinate set-up."""

    def __init__(self, name="CN=Parent Root CA,O=Elsewhere"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name.from_rfc4514_string(name)
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now() - datetime.timedelta(minutes=5))
                     .not_valid_after(now() + datetime.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .add_extension(ski, critical=False)
                     .sign(self.key, hashes.SHA256()))

    def issue(self, subject: x509.Name, public_key, *, ca=True, basic_constraints=True, days=1825):
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
             .public_key(public_key).serial_number(x509.random_serial_number())
             .not_valid_before(now() - datetime.timedelta(minutes=5))
             .not_valid_after(now() + datetime.timedelta(days=days))
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False))
        if basic_constraints:
            b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        if ca:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                critical=True)
        else:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                critical=True)
        return b.sign(self.key, hashes.SHA256())


def pem(*certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


class EstctlTestCase(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.state = Path(self.mktemp()).resolve()
        self.cfg = support.config(self.state, labels={"iot": {"auth": ["basic"]}})
        self.conf = self.state / "estappliance.toml"
        write_toml(self.cfg, self.conf)

    @defer.inlineCallbacks
    def estctl(self, *argv):
        """Fires with (exit code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            code = yield on_token_thread(_run_main, ["-c", str(self.conf), *argv])
        except Exception as e:  # noqa: BLE001 - estctl must end with a message, not a traceback
            self.fail(f"estctl {' '.join(argv)} crashed with {type(e).__module__}.{type(e).__name__}: {e!r}"
                      f" instead of exiting with a message")
        finally:
            sys.stdout, sys.stderr = saved
        return code, out.getvalue(), err.getvalue()

    def token_call(self, method, *args):
        return on_token_thread(lambda: getattr(support.token(), method)(*args))

    def open_store(self) -> Store:
        store = Store(self.cfg.store)
        self.addCleanup(store.close)
        return store

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.state / name
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
        return path


class InitTests(EstctlTestCase):
    @defer.inlineCallbacks
    def test_init_creates_ca_and_tls_server_files(self):
        code, out, err = yield self.estctl("init")
        self.assertEqual((code, err), (0, ""))
        ca = x509.load_pem_x509_certificate(self.cfg.ca.cert_file.read_bytes())
        self.assertEqual(ca.subject.rfc4514_string(), "CN=Test EST CA,O=estappliance tests")
        self.assertEqual(ca.issuer, ca.subject)
        self.assertTrue(ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        ca.verify_directly_issued_by(ca)
        self.assertIn("CA: CN=Test EST CA,O=estappliance tests", out)
        self.assertIn(ca.fingerprint(hashes.SHA256()).hex(":"), out)

        spki = yield self.token_call("public_key_der", self.cfg.ca.key_label)
        self.assertEqual(spki, ca.public_key().public_bytes(serialization.Encoding.DER,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))

        key_file = self.cfg.server.tls_key
        self.assertEqual(stat.S_IMODE(os.stat(key_file).st_mode), 0o600)
        tls_key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        chain = x509.load_pem_x509_certificates(self.cfg.server.tls_cert.read_bytes())
        self.assertEqual(chain[1:], [ca])
        leaf = chain[0]
        self.assertEqual(leaf.public_key(), tls_key.public_key())
        leaf.verify_directly_issued_by(ca)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertIn("localhost", san.get_values_for_type(x509.DNSName))
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertIn(x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, list(eku))

        record = self.open_store().certificates.certificate(leaf.serial_number)
        self.assertIsNotNone(record)
        self.assertEqual(record.der, leaf.public_bytes(serialization.Encoding.DER))

    @defer.inlineCallbacks
    def test_ca_key_is_sensitive_and_not_extractable(self):
        code, _, err = yield self.estctl("init")
        self.assertEqual(code, 0, err)
        attrs = yield self.token_call("private_key_attributes", self.cfg.ca.key_label)
        self.assertEqual(attrs, {"sensitive": True, "extractable": False, "always_sensitive": True,
                                 "never_extractable": True})

    @defer.inlineCallbacks
    def test_init_twice_fails(self):
        code, _, err = yield self.estctl("init")
        self.assertEqual(code, 0, err)
        before = (self.cfg.ca.cert_file.read_bytes(), self.cfg.server.tls_key.read_bytes(),
                  self.cfg.server.tls_cert.read_bytes())
        code, out, err = yield self.estctl("init")
        self.assertEqual(code, 2)
        self.assertIn("already initialised", err)
        self.assertTrue(err.startswith("estctl: "))
        self.assertEqual(out, "")
        after = (self.cfg.ca.cert_file.read_bytes(), self.cfg.server.tls_key.read_bytes(),
                 self.cfg.server.tls_cert.read_bytes())
        self.assertEqual(after, before)

    @defer.inlineCallbacks
    def test_ca_show(self):
        code, _, err = yield self.estctl("ca", "show")
        self.assertNotEqual(code, 0)
        self.assertIn("not initialised", err)
        yield self.estctl("init")
        code, out, err = yield self.estctl("ca", "show")
        self.assertEqual(code, 0, err)
        self.assertIn("CA: CN=Test EST CA,O=estappliance tests", out)
        self.assertIn(repr(self.cfg.ca.key_label), out)

    @defer.inlineCallbacks
    def test_missing_config_file(self):
        self.conf = self.state / "nope.toml"
        code, _, err = yield self.estctl("client", "list")
        self.assertEqual(code, 2)
        self.assertIn("cannot read config", err)


class ClientTests(EstctlTestCase):
    @defer.inlineCallbacks
    def test_add_list_passwd_remove(self):
        pw1 = self.file("pw1", "first secret\n")
        pw2 = self.file("pw2", "second secret")
        code, out, err = yield self.estctl("client", "add", "alice", "--password-file", str(pw1),
                                           "--labels", "default,iot")
        self.assertEqual(code, 0, err)
        self.assertIn("client 'alice' added", out)

        code, out, err = yield self.estctl("client", "list")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith("alice\tlabels=default,iot\t"), lines[0])

        store = self.open_store()
        record = store.clients.client("alice")
        self.assertEqual(record.labels, ("default", "iot"))
        self.assertTrue(verify_password("first secret", record.password_hash))
        self.assertNotIn("first secret", record.password_hash)

        code, out, err = yield self.estctl("client", "passwd", "alice", "--password-file", str(pw2))
        self.assertEqual(code, 0, err)
        self.assertIn("password of 'alice' changed", out)
        record = store.clients.client("alice")
        self.assertTrue(verify_password("second secret", record.password_hash))
        self.assertFalse(verify_password("first secret", record.password_hash))

        code, out, err = yield self.estctl("client", "remove", "alice")
        self.assertEqual(code, 0, err)
        self.assertIn("client 'alice' removed", out)
        self.assertIsNone(store.clients.client("alice"))
        code, out, _ = yield self.estctl("client", "list")
        self.assertEqual((code, out), (0, ""))

    @defer.inlineCallbacks
    def test_duplicate_add_fails(self):
        pw = self.file("pw", "secret")
        other = self.file("other", "another")
        code, _, err = yield self.estctl("client", "add", "bob", "--password-file", str(pw))
        self.assertEqual(code, 0, err)
        code, out, err = yield self.estctl("client", "add", "bob", "--password-file", str(other), "--labels", "*")
        self.assertNotEqual(code, 0)
        self.assertIn("'bob' already exists", err)
        record = self.open_store().clients.client("bob")
        self.assertEqual(record.labels, ("default",))
        self.assertTrue(verify_password("secret", record.password_hash))

    @defer.inlineCallbacks
    def test_unknown_client_and_label(self):
        pw = self.file("pw", "secret")
        code, _, err = yield self.estctl("client", "passwd", "nobody", "--password-file", str(pw))
        self.assertNotEqual(code, 0)
        self.assertIn("no client 'nobody'", err)
        code, _, err = yield self.estctl("client", "remove", "nobody")
        self.assertNotEqual(code, 0)
        self.assertIn("no client 'nobody'", err)
        code, _, err = yield self.estctl("client", "add", "carol", "--password-file", str(pw),
                                         "--labels", "default,factory")
        self.assertNotEqual(code, 0)
        self.assertIn("no label 'factory'", err)
        self.assertIsNone(self.open_store().clients.client("carol"))

    @defer.inlineCallbacks
    def test_empty_password_file_refused(self):
        pw = self.file("pw", "\n")
        code, _, err = yield self.estctl("client", "add", "dave", "--password-file", str(pw))
        self.assertNotEqual(code, 0)
        self.assertIn("empty", err)
        self.assertIsNone(self.open_store().clients.client("dave"))

    @defer.inlineCallbacks
    def test_missing_password_file(self):
        code, _, err = yield self.estctl("client", "add", "erin", "--password-file", str(self.state / "nope"))
        self.assertEqual(code, 2)
        self.assertIn("nope", err)
        self.assertIsNone(self.open_store().clients.client("erin"))


class SubordinateTests(EstctlTestCase):
    @defer.inlineCallbacks
    def init_subordinate(self):
        csr_path = self.state / "sub.csr"
        code, out, err = yield self.estctl("init", "--subordinate", "--csr-out", str(csr_path))
        self.assertEqual(code, 0, err)
        self.assertIn(str(csr_path), out)
        return x509.load_pem_x509_csr(csr_path.read_bytes())

    @defer.inlineCallbacks
    def test_subordinate_csr_signed_by_token_key(self):
        csr = yield self.init_subordinate()
        self.assertTrue(csr.is_signature_valid)
        self.assertEqual(csr.subject.rfc4514_string(), "CN=Test EST CA,O=estappliance tests")
        spki = yield self.token_call("public_key_der", self.cfg.ca.key_label)
        self.assertEqual(csr.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo), spki)
        bc = csr.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(bc.value.ca)
        self.assertFalse(self.cfg.ca.cert_file.exists())
        self.assertFalse(self.cfg.server.tls_cert.exists())
        attrs = yield self.token_call("private_key_attributes", self.cfg.ca.key_label)
        self.assertTrue(attrs["sensitive"])
        self.assertFalse(attrs["extractable"])

    @defer.inlineCallbacks
    def test_import_parent_signed_certificate(self):
        csr = yield self.init_subordinate()
        parent = ParentCA()
        sub = parent.issue(csr.subject, csr.public_key())
        cert_file = self.file("sub.pem", pem(sub))
        chain_file = self.file("parent.pem", pem(parent.cert))
        code, out, err = yield self.estctl("ca", "import", str(cert_file), "--chain", str(chain_file))
        self.assertEqual(code, 0, err)
        self.assertIn("CA: CN=Test EST CA,O=estappliance tests", out)

        self.assertEqual(x509.load_pem_x509_certificate(self.cfg.ca.cert_file.read_bytes()), sub)
        self.assertEqual(x509.load_pem_x509_certificates(self.cfg.ca.chain_file.read_bytes()), [parent.cert])

        chain = x509.load_pem_x509_certificates(self.cfg.server.tls_cert.read_bytes())
        leaf = chain[0]
        self.assertEqual(leaf.issuer, sub.subject)
        leaf.verify_directly_issued_by(sub)
        sub.verify_directly_issued_by(parent.cert)
        # What a TLS client trusting only the parent root would do.
        verifier = (verification.PolicyBuilder().store(verification.Store([parent.cert]))
                    .build_server_verifier(x509.DNSName("localhost")))
        path = verifier.verify(leaf, chain[1:] + [sub])
        self.assertEqual(path[-1], parent.cert)
        self.assertIn(sub, path)
        self.assertLessEqual(leaf.not_valid_after_utc, sub.not_valid_after_utc)

    @defer.inlineCallbacks
    def test_import_refuses_certificate_for_another_key(self):
        csr = yield self.init_subordinate()
        parent = ParentCA()
        stranger = parent.issue(csr.subject, ec.generate_private_key(ec.SECP256R1()).public_key())
        code, _, err = yield self.estctl("ca", "import", str(self.file("stranger.pem", pem(stranger))),
                                         "--chain", str(self.file("parent.pem", pem(parent.cert))))
        self.assertEqual(code, 2)
        self.assertIn("not for the CA key in the token", err)
        self.assertFalse(self.cfg.ca.cert_file.exists())
        self.assertFalse(self.cfg.server.tls_cert.exists())

    @defer.inlineCallbacks
    def test_import_refuses_non_ca_certificate(self):
        csr = yield self.init_subordinate()
        parent = ParentCA()
        chain = str(self.file("parent.pem", pem(parent.cert)))
        for name, cert in (("ee.pem", parent.issue(csr.subject, csr.public_key(), ca=False)),
                           ("nobc.pem", parent.issue(csr.subject, csr.public_key(), basic_constraints=False))):
            code, _, err = yield self.estctl("ca", "import", str(self.file(name, pem(cert))), "--chain", chain)
            self.assertEqual(code, 2, name)
            self.assertIn("not a CA certificate", err)
            self.assertFalse(self.cfg.ca.cert_file.exists())
        # The refusals left nothing behind: the right certificate still goes in.
        good = parent.issue(csr.subject, csr.public_key())
        code, _, err = yield self.estctl("ca", "import", str(self.file("good.pem", pem(good))), "--chain", chain)
        self.assertEqual(code, 0, err)

    @defer.inlineCallbacks
    def test_import_refuses_chain_that_does_not_verify(self):
        csr = yield self.init_subordinate()
        parent = ParentCA()
        impostor = ParentCA()  # same name, another key
        sub = parent.issue(csr.subject, csr.public_key())
        code, _, err = yield self.estctl("ca", "import", str(self.file("sub.pem", pem(sub))),
                                         "--chain", str(self.file("impostor.pem", pem(impostor.cert))))
        self.assertEqual(code, 2)
        self.assertIn("does not verify", err)
        self.assertFalse(self.cfg.ca.cert_file.exists())


class ListingTests(EstctlTestCase):
    @defer.inlineCallbacks
    def test_cert_list(self):
        code, _, err = yield self.estctl("init")
        self.assertEqual(code, 0, err)
        leaf = x509.load_pem_x509_certificates(self.cfg.server.tls_cert.read_bytes())[0]
        code, out, err = yield self.estctl("cert", "list")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 2)  # the TLS server and the content signer
        fields = lines[0].split("\t")
        self.assertEqual(int(fields[0], 16), leaf.serial_number)
        self.assertEqual(fields[1], "valid")
        self.assertEqual(fields[3:], ["(tls-server)", "-", "CN=localhost"])
        code, out, _ = yield self.estctl("cert", "list", "--client", "nobody")
        self.assertEqual((code, out), (0, ""))

    @defer.inlineCallbacks
    def test_audit(self):
        code, _, err = yield self.estctl("init")
        self.assertEqual(code, 0, err)
        store = self.open_store()
        store.audit.record("simpleenroll", "refused: NotAuthorized", client="mallory", label="iot", detail="no")
        code, out, err = yield self.estctl("audit")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 3)
        # Oldest first, like a log.
        self.assertEqual(lines[0].split("\t")[1:], ["issue", "ok", "-", "(tls-server)", "TLS server certificate"])
        self.assertEqual(lines[1].split("\t")[1:], ["issue", "ok", "-", "(content-signer)",
                                                   "CMS content signer certificate"])
        self.assertEqual(lines[2].split("\t")[1:], ["simpleenroll", "refused: NotAuthorized", "mallory", "iot",
                                                    "no"])
        code, out, _ = yield self.estctl("audit", "--limit", "1")
        self.assertEqual(out.splitlines(), lines[2:])
