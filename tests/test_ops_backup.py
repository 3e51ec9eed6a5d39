"""``estctl backup`` while a real ``twistd est`` issues certificates, then a
wipe and ``estctl restore``: every certificate issued before the backup is
back, and the server serves again. A changed file or another CA's token is
refused with nothing changed."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

from cryptography import x509
from twisted.trial import unittest

from estappliance.client import BasicAuth, EstClient, make_csr, new_key

from . import support
from .test_e2e_interop import USER, EstServer, require_tools


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
            self.assertTrue({"store", "config", "ca_cert", "tls_cert", "tls_key", "signer_cert",
                             "secret:digest"} <= roles, roles)
            self.server.stop()
            issued = serials_listed(self.server)
            self.wipe(self.server)

            restored = self.server.estctl("restore", self.base / "backup")
            self.assertIn(b"restored", restored.stdout)
            self.assertTrue(self.server.config.exists())
            back = serials_listed(self.server)
            self.assertTrue(before <= back, f"{len(before - back)} certificates issued before the backup are lost")
            self.assertTrue(back <= issued)
            self.server.start()
            self.enroll("after-restore")
        return support.in_thread(run)

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
