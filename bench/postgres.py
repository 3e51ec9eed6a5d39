"""A real, throwaway PostgreSQL cluster (Debian's binaries), for the tests
and for the benchmark's PostgreSQL scenarios.

``PostgresServer`` runs ``initdb`` and the postmaster in a fresh directory
under the system temp dir (every parent must be traversable by the server's
user). PostgreSQL refuses to run as root, so a root run starts them as the
Debian package's ``postgres`` system user (``setpriv``, which execs: the
postmaster is our own child); a non-root run starts them as itself. Two ways in:

- the Unix socket in that directory, ``trust`` for any role; its URLs use the
  superuser ``est`` (``create_database``);
- TCP on 127.0.0.1 with TLS only (``hostssl``, scram-sha-256), a self-signed
  server certificate for 127.0.0.1 and localhost whose CA file is kept for
  ``sslmode=verify-full``; its URLs use the password role ``est_tls``
  (``tls_url``; the password is ``password``, never in the URL).

Both roles are superusers so that a database prepared over one way is usable
over the other; the users of this cluster are about the store, not about
privileges.

``fsync`` is a parameter: off for the tests' speed (data still survives a
SIGKILL of the server: it is in the OS page cache), on for the benchmark (a
commit is on disk before it returns, as SQLite's ``synchronous=FULL``).
``synchronous_commit`` stays on either way, so commit semantics are the real
ones. A watchdog child process removes the cluster if the process that
started it dies without cleaning up (SIGKILL, a crash).

The tests' ``tests/postgres_server.py`` re-exports it with ``shared_server()``.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg import sql

from .ports import free_port

SUPERUSER = "est"
TLS_USER = "est_tls"
SERVER_USER = "postgres"  # the Debian package's system user, used when the tests run as root
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Runs in a child process for the life of a cluster: when its stdin closes
# (the test process exited, however it died), it stops the postmaster if one
# is still running and removes the cluster's directory.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
base = sys.argv[1]
sys.stdin.buffer.read()
try:
    pid = int(open(os.path.join(base, "data", "postmaster.pid")).readline())
    if b"postgres" not in open(f"/proc/{pid}/cmdline", "rb").read():
        raise ValueError("a stale pid file")
    os.kill(pid, signal.SIGINT)
    for _ in range(200):
        time.sleep(0.05)
        os.kill(pid, 0)
    os.kill(pid, signal.SIGKILL)
except (OSError, ValueError):
    pass
shutil.rmtree(base, ignore_errors=True)
"""


class PostgresMissing(RuntimeError):
    """Debian's PostgreSQL server binaries are not installed."""


def _bin_dir() -> Path:
    """The bin directory of the newest installed PostgreSQL major version."""
    versions = []
    for path in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        try:
            versions.append((float(path.parent.parent.name), path.parent))
        except ValueError:
            continue
    if not versions:
        raise PostgresMissing("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                              "(run `make test` or `make bench`, which install Debian's postgresql package)")
    return max(versions)[1]


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _self_signed_tls(names: list[str]) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate, server key) PEMs for ``names`` (IPs or DNS names)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=7)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "estappliance test PostgreSQL CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ca.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.PEM), key_pem


class PostgresServer:
    """One PostgreSQL cluster in its own temp directory; see the module docstring."""

    def __init__(self, *, fsync: bool = False) -> None:
        """``fsync``: commits reach the disk before they return (the benchmark);
        off, they reach the OS page cache only (the tests' speed)."""
        self._fsync = fsync
        self._bin = _bin_dir()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            try:
                self._account: pwd.struct_passwd | None = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresMissing(f"no '{SERVER_USER}' system user to run PostgreSQL as "
                                      "(run `make test` or `make bench`, which install Debian's postgresql package)") from None
        else:
            self._account = None
        self._password = secrets.token_urlsafe(18)
        self._port = 0
        self._base: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()

    # -- what tests use -------------------------------------------------------

    @property
    def password(self) -> str:
        """The password of the TLS role (``tls_url``'s user)."""
        return self._password

    @property
    def tls_user(self) -> str:
        return TLS_USER

    @property
    def port(self) -> int:
        """The TCP port (TLS only) on 127.0.0.1; the same across restarts."""
        return self._port

    @property
    def socket_dir(self) -> Path:
        return self._dir / "sock"

    @property
    def ca_file(self) -> Path:
        """The CA certificate that issued the server's TLS certificate (for ``sslrootcert``)."""
        return self._dir / "ca.pem"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def data_dir(self) -> Path:
        """The cluster's files (for their size on disk)."""
        return self._dir / "data"

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> None:
        """Create the cluster (first call) and start the server; returns once it accepts connections."""
        with self._lock:
            if self.running:
                return
            if self._base is None:
                try:
                    self._create()
                    self._launch()
                    self._create_tls_role()
                except BaseException:
                    self.destroy()
                    raise
            else:
                self._launch()

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are ended, no new ones), and wait for it; the data stays."""
        with self._lock:
            process = self._process
            if process is None:
                return
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self._kill_all(process)
            self._process = None

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (a crash: sessions break at once); the data stays."""
        with self._lock:
            process = self._process
            if process is None:
                return
            self._kill_all(process)
            self._process = None

    def restart(self) -> None:
        """Start again after ``stop``/``kill`` (or stop first if running): same data, port and roles."""
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop the server and remove its directory (the cluster is gone)."""
        self.stop()
        with self._lock:
            base, self._base = self._base, None
            if base is not None:
                shutil.rmtree(base, ignore_errors=True)
            watchdog, self._watchdog = self._watchdog, None
            if watchdog is not None:
                assert watchdog.stdin is not None
                watchdog.stdin.close()
                watchdog.wait(30)

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL over the Unix socket (superuser ``est``)."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        self._check_name(name)
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.socket_url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending the sessions still connected to it."""
        self._check_name(name)
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def socket_url(self, dbname: str, user: str = SUPERUSER) -> str:
        # The socket file is named after the port (.s.PGSQL.<port>), so the URL names it too.
        return f"postgresql://{user}@/{dbname}?host={quote(str(self.socket_dir), safe='/')}&port={self._port}"

    def tls_url(self, dbname: str, host: str = "127.0.0.1") -> str:
        """``dbname`` over TCP+TLS with the server certificate checked (verify-full); no password in it."""
        return (f"postgresql://{TLS_USER}@{host}:{self._port}/{dbname}"
                f"?sslmode=verify-full&sslrootcert={quote(str(self.ca_file), safe='/')}")

    def log(self) -> str:
        """The server's log so far (stderr of every start)."""
        try:
            return (self._dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- how -------------------------------------------------------------------

    @property
    def _dir(self) -> Path:
        if self._base is None:
            raise RuntimeError("the PostgreSQL test server was not started (call start())")
        return self._base

    @staticmethod
    def _check_name(name: str) -> None:
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: use lowercase letters, digits and _")

    def _admin(self) -> psycopg.Connection[tuple]:
        return psycopg.connect(self.socket_url("postgres"), autocommit=True, connect_timeout=10)

    def _env(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self._dir), "TZ": "UTC"}

    def _command(self, program: str, *args: str) -> list[str]:
        argv = [str(self._bin / program), *args]
        if self._account is None:
            return argv
        return ["setpriv", f"--reuid={self._account.pw_uid}", f"--regid={self._account.pw_gid}",
                "--init-groups", "--", *argv]

    def _give(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _create(self) -> None:
        base = Path(tempfile.mkdtemp(prefix="est-pg-"))
        self._base = base
        base.chmod(0o755)  # the tests (root or not) read the CA file and reach the socket
        self._give(base)
        self._watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(base)], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)
        sock = base / "sock"
        sock.mkdir()
        self._give(sock)
        ca, cert, key = _self_signed_tls(["127.0.0.1", "localhost"])
        self.ca_file.write_bytes(ca)
        for name, pem, mode in (("server.crt", cert, 0o644), ("server.key", key, 0o600)):
            path = base / name
            path.write_bytes(pem)
            path.chmod(mode)
            self._give(path)
        data = base / "data"
        done = subprocess.run(self._command("initdb", "-D", str(data), "-U", SUPERUSER, "-A", "trust",
                                            "-E", "UTF8", "--locale=C", "--no-sync"),
                              cwd=base, env=self._env(), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        (data / "pg_hba.conf").write_text("local all all trust\n"
                                          "hostssl all all 127.0.0.1/32 scram-sha-256\n")
        self._port = free_port()
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"""
# estappliance tests
listen_addresses = '127.0.0.1'
port = {self._port}
unix_socket_directories = '{sock}'
ssl = on
ssl_cert_file = '{base / "server.crt"}'
ssl_key_file = '{base / "server.key"}'
fsync = {'on' if self._fsync else 'off'}
synchronous_commit = on
max_connections = 200
""")

    def _launch(self) -> None:
        base = self._dir
        with (base / "server.log").open("ab") as log:
            process = subprocess.Popen(self._command("postgres", "-D", str(base / "data")), cwd=base,
                                       env=self._env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True)
        pid_file = base / "data" / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with {process.returncode} while starting:\n"
                                   + self.log()[-2000:])
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            # Line 1 is the postmaster's pid (a stale file names the one before), line 8 its status.
            if len(lines) >= 8 and lines[0].strip() == str(process.pid) and lines[7].strip() == "ready":
                break
            if time.monotonic() > deadline:
                self._kill_all(process)
                raise RuntimeError("PostgreSQL did not become ready in time:\n" + self.log()[-2000:])
            time.sleep(0.02)
        self._process = process

    def _create_tls_role(self) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(TLS_USER), sql.Literal(self._password)))

    @staticmethod
    def _kill_all(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the postmaster and every backend it forked, and wait until none is left."""
        pid = process.pid
        try:
            os.kill(pid, signal.SIGSTOP)  # no more forks while its children are listed
        except ProcessLookupError:
            pass
        children = _children_of(pid)
        process.kill()
        process.wait(STOP_TIMEOUT)
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_alive(child) for child in children) and time.monotonic() < deadline:
            time.sleep(0.01)

