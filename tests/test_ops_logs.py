"""``[log] format = "json"``: one JSON object per event from a real ``twistd
est``, with a request event per request; audit events also to syslog,
received here on a Unix datagram socket the test binds; and the single
process's own admin listener."""
from __future__ import annotations

import json
import shutil
import socket
import tempfile
from pathlib import Path

from cryptography import x509
from twisted.trial import unittest

from estappliance.client import BasicAuth, EstClient, make_csr, new_key
from estappliance.config import load

from . import support
from .ops_support import OperatedServer
from .test_e2e_interop import REPO, USER, require_tools
from .test_workers import wait_for


class JsonLogAndSyslogTests(unittest.TestCase):
    timeout = 120
    workers = 1

    def setUp(self):
        require_tools()
        base = Path(self.mktemp()).resolve()
        base.mkdir(parents=True)
        sock_dir = Path(tempfile.mkdtemp(prefix="est-syslog-", dir="/tmp"))  # AF_UNIX paths are short
        self.addCleanup(shutil.rmtree, sock_dir, True)
        self.syslog_path = sock_dir / "log"
        self.syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.syslog.bind(str(self.syslog_path))
        self.syslog.settimeout(0.2)
        self.addCleanup(self.syslog.close)
        extra = (f'\n[log]\nformat = "json"\nsyslog = true\nsyslog_address = "{self.syslog_path}"\n'
                 f'syslog_facility = "local3"\n')
        self.server = OperatedServer(base / "srv", extra=extra, workers=self.workers)
        self.addCleanup(self.server.shutdown)

    def syslog_messages(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.syslog.recv(65536).decode())
            except TimeoutError:
                return out

    def test_json_events_request_fields_and_audit_to_syslog(self):
        def run():
            self.server.prepare()
            self.server.start()
            self.server.wait_ready()
            anchor = x509.load_pem_x509_certificates(self.server.ca_pem.read_bytes())
            with EstClient(self.server.url, anchors=anchor, auth=BasicAuth(USER, self.server.password)) as c:
                c.simpleenroll(make_csr(new_key(), "CN=logged-1"))
            assert wait_for(lambda: '"simpleenroll"' in self.server.log()), self.server.log()
            self.server.stop()
            lines = [line for line in self.server.log().splitlines() if line.strip()]
            events = [json.loads(line) for line in lines]  # every line is one JSON object
            self.assertTrue(all("log_time" in e and "log_namespace" in e for e in events))
            requests = [e for e in events if e["log_namespace"] == "estappliance.request"
                        and e.get("operation") == "simpleenroll"]
            self.assertEqual(len(requests), 1, lines)
            r = requests[0]
            self.assertEqual((r["client"], r["label"], r["status"], r["method"]), (USER, "default", 200, "POST"))
            self.assertEqual(len(r["request_id"]), 16)
            self.assertTrue(r["peer"].startswith("127.0.0.1:"))
            self.assertGreater(r["duration_ms"], 0)
            audits = [e for e in events if e["log_namespace"] == "estappliance.audit"]
            self.assertIn(("issue", "ok", USER), [(e["operation"], e["outcome"], e["client"]) for e in audits])
            # The same audit event on syslog: local3 (19) * 8 + info (6) = 158.
            messages = self.syslog_messages()
            issued = [m for m in messages if "audit issue ok client=dev label=default" in m]
            self.assertEqual(len(issued), 1, messages)
            self.assertTrue(issued[0].startswith("<158>estappliance: "), issued[0])
            self.assertFalse([m for m in messages if "estappliance.request" in m or "POST" in m])
        return support.in_thread(run)


class WorkersJsonLogAndSyslogTests(JsonLogAndSyslogTests):
    """The same from a master and two workers (the workers serve and audit)."""

    workers = 2


class DefaultsTests(unittest.TestCase):
    def test_text_stays_the_default(self):
        """make run's configuration: twistd's text log, no per-request lines, no syslog."""
        config = load(REPO / "etc" / "estappliance.toml")
        log = config.ops.log
        self.assertEqual((log.format, log.requests, log.syslog), ("text", False, False))


class SyslogUnavailableTests(unittest.TestCase):
    def test_a_missing_syslog_socket_is_one_warning_not_a_crash(self):
        from twisted.logger import globalLogPublisher

        from estappliance.ops.logs import AUDIT_NAMESPACE, AuditToSyslog
        from estappliance.config.operations import LogConfig
        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        forward = AuditToSyslog(LogConfig(syslog=True, syslog_address=self.mktemp()))
        self.addCleanup(forward.close)
        for _ in range(3):
            forward({"log_namespace": AUDIT_NAMESPACE, "log_format": "audit issue ok"})
        warnings = [e for e in seen if "syslog unavailable" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
