"""``estctl backup`` while a real ``twistd est`` issues certificates, then a
wipe and ``estctl restore``: every certificate issued before the backup is
back, and the server serves again. A changed file or another CA's token is
refused with nothing changed."""
from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import sqlite3
import ssl
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.trial import unittest

from estappliance.client import BasicAuth, DigestAuth, EstClient, make_csr, new_key
from estappliance.ra.digest import DigestVerifier

from . import support
from .test_e2e_interop import REALM, USER, EstServer, require_tools


def serials_listed(server: EstServer) -> set[int]:
    out = server.estctl("cert", "list").stdout.decode()
    return {int(line.split("\t")[0], 16) for line in out.splitlines() if line.strip()}


class BackupRestoreTests(unittest.TestCase):
    timeout = 240

    def setUp(self):
        require_tools()
        self.base = Path(self.mktemp()).resolve()
        self.server = EstServer(self.base / "a", workers=2)
        self.addCleanup(self.server.shutdown)

    def enroll(self, cn: str) -> x509.Certificate:
        anchor = x509.load_pem_x509_certificates(self.server.ca_pem.read_bytes())
        with EstClient(self.server.url, anchors=anchor, auth=BasicAuth(USER, self.server.password)) as c:
            return c.simpleenroll(make_csr(new_key(), f"CN={cn}"))

    def load(self, stop: threading.Event, done: list, errors: list) -> None:
        """Enrolls until told to stop; (time answered, serial) of each."""
        i = 0
        while not stop.is_set():
            try:
                cert = self.enroll(f"load-{threading.get_ident()}-{i}")
                done.append((time.monotonic(), cert.serial_number))
            except Exception as e:  # noqa: BLE001 - reported by the test
                errors.append(e)
            i += 1

    def wipe(self, server: EstServer) -> None:
        """Everything but the token (its directory, PIN and SoftHSM2 config)."""
        for path in server.state.iterdir():
            if path.name in ("softhsm", "softhsm2.conf", "token.pin", "token.so-pin"):
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        server.config.unlink()

    def test_backup_under_load_wipe_restore(self):
        def run():
            self.server.prepare()
            self.server.start()
            stop, done, errors = threading.Event(), [], []
            loaders = [threading.Thread(target=self.load, args=(stop, done, errors)) for _ in range(3)]
            for t in loaders:
                t.start()
            try:
                while len(done) < 15:
                    time.sleep(0.05)
                started = time.monotonic()
                result = self.server.estctl("backup", self.base / "backup")
                finished = time.monotonic()
                before = {serial for at, serial in done if at < started}
                while len([1 for at, _ in done if at > finished]) < 5:  # the load went on past the backup
                    time.sleep(0.05)
            finally:
                stop.set()
                for t in loaders:
                    t.join()
            self.assertEqual(errors, [])
            self.assertEqual(result.stderr, b"")  # not a terminal: no progress drawn
            self.assertIn(b"manifest.json", result.stdout)
            manifest = json.loads((self.base / "backup" / "manifest.json").read_text())
            roles = {f["role"] for f in manifest["files"]}
            self.assertTrue({"store", "config", "ca_cert", "tls_cert", "tls_key", "signer_cert"} <= roles, roles)
            # The shared secrets are in the store, sealed: no key file to carry.
            self.assertEqual([r for r in roles if r.startswith("secret:")], [])
            sealed = sealed_secrets(self.server.state / "est.sqlite")
            self.assertIn("digest", sealed)
            self.assertEqual(sealed_secrets(self.base / "backup" / "files" / "store.sqlite"), sealed)
            self.server.stop()
            issued = serials_listed(self.server)
            self.wipe(self.server)

            restored = self.server.estctl("restore", self.base / "backup")
            self.assertIn(b"restored", restored.stdout)
            self.assertTrue(self.server.config.exists())
            back = serials_listed(self.server)
            self.assertTrue(before <= back, f"{len(before - back)} certificates issued before the backup are lost")
            self.assertTrue(back <= issued)
            self.assertEqual(sealed_secrets(self.server.state / "est.sqlite"), sealed)
            self.server.start()
            self.enroll("after-restore")
        return support.in_thread(run)

    def test_an_older_backup_with_a_key_file_restores_and_its_key_is_imported(self):
        """A backup of a version that kept the Digest key in ``digest.key``:
        restored next to the store, imported (sealed) at the next start, and a
        nonce made with it before the backup is still good afterwards."""
        def run():
            self.server.auth = ("basic", "digest", "cert")
            self.server.prepare()
            self.server.estctl("backup", self.base / "backup")
            old_key = os.urandom(32)
            make_old_backup(self.base / "backup", old_key)
            self.wipe(self.server)
            self.server.estctl("restore", self.base / "backup")
            key_file = self.server.state / "digest.key"
            self.assertEqual(key_file.read_bytes(), old_key)
            self.assertNotIn("digest", sealed_secrets(self.server.state / "est.sqlite"))
            self.server.start()
            self.assertFalse(key_file.exists())  # imported, not left in clear
            self.assertIn("digest", sealed_secrets(self.server.state / "est.sqlite"))
            # A nonce made before the backup with the old key is good on every worker; one of another key is not.
            for _ in range(4):
                self.assertEqual(self.digest_enroll(DigestVerifier(REALM, old_key).nonce()), 200)
            self.assertEqual(self.digest_enroll(DigestVerifier(REALM, os.urandom(32)).nonce()), 401)
        return support.in_thread(run)

    def digest_enroll(self, nonce: str) -> int:
        """The status of a simpleenroll answered with Digest on ``nonce``, on a fresh connection."""
        auth = DigestAuth(USER, self.server.password)
        auth.use_challenge([f'Digest realm="{REALM}", qop="auth", algorithm=SHA-256, nonce="{nonce}"'])
        path = "/.well-known/est/simpleenroll"
        ctx = ssl.create_default_context(cafile=str(self.server.ca_pem))
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", self.server.port, context=ctx, timeout=30)
        try:
            csr = make_csr(new_key(), "CN=digest-after-restore").public_bytes(serialization.Encoding.DER)
            body = base64.b64encode(csr)
            conn.request("POST", path, body=body, headers={
                "Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64",
                "Authorization": auth.header("POST", path)})
            answer = conn.getresponse()
            answer.read()
            return answer.status
        finally:
            conn.close()


def sealed_secrets(path: Path) -> dict[str, bytes]:
    """The sealed secrets of a store file (none in an older version's store, which lacks the table)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name='sealed_secrets'").fetchone() is None:
            return {}
        return dict(db.execute("SELECT name, sealed FROM sealed_secrets"))
    finally:
        db.close()


def make_old_backup(backup: Path, key: bytes) -> None:
    """Turn a backup into one an older version made: no sealed secrets in the
    store, the Digest key as the file ``secret-digest.key``."""
    files = backup / "files"
    manifest = json.loads((backup / "manifest.json").read_text())
    db = sqlite3.connect(files / "store.sqlite")
    db.execute("DROP TABLE sealed_secrets")
    db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    db.commit()
    db.close()
    (files / "secret-digest.key").write_bytes(key)
    for entry in manifest["files"]:
        path = files / entry["name"]
        entry["size"], entry["sha256"] = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    manifest["files"].append({"role": "secret:digest", "name": "secret-digest.key", "source": "digest.key",
                              "size": 32, "sha256": hashlib.sha256(key).hexdigest()})
    (backup / "manifest.json").write_text(json.dumps(manifest))

    def test_a_changed_file_or_another_cas_token_is_refused(self):
        def run():
            self.server.prepare()
            self.server.estctl("backup", self.base / "backup")
            # Another appliance: its own token and CA key.
            other = EstServer(self.base / "b")
            other.prepare()
            other.store_path = other.state / "est.sqlite"
            other.store_path.unlink()
            refused = other.estctl("restore", self.base / "backup", check=False)
            self.assertNotEqual(refused.returncode, 0)
            self.assertIn(b"does not match the token's key", refused.stderr)
            self.assertFalse(other.store_path.exists())
            # A file changed after the backup.
            tls = next(p for p in (self.base / "backup" / "files").iterdir() if p.name.startswith("tls_cert"))
            tls.write_bytes(tls.read_bytes() + b"\n")
            self.wipe(self.server)
            refused = self.server.estctl("restore", self.base / "backup", check=False)
            self.assertNotEqual(refused.returncode, 0)
            self.assertIn(b"does not match the manifest", refused.stderr)
            self.assertFalse(self.server.config.exists())
            self.assertFalse((self.server.state / "est.sqlite").exists())
        return support.in_thread(run)

    def test_restore_keeps_an_existing_store_unless_forced(self):
        def run():
            self.server.prepare()
            self.server.estctl("backup", self.base / "backup")
            refused = self.server.estctl("restore", self.base / "backup", check=False)
            self.assertNotEqual(refused.returncode, 0)
            self.assertIn(b"a store exists", refused.stderr)
            self.server.estctl("restore", "--force", self.base / "backup")
        return support.in_thread(run)
