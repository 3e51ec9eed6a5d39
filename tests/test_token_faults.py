"""Token faults beyond disappearance, through a fault-injecting wrapper around
the real SoftHSM2 session (tests/token_faults.py): each is answered 503 with
Retry-After within a bounded time, and the service opens a new session and
logs in again by itself; a call that hangs is cut off at [token]
call_timeout, later calls are refused at once while it hangs, and the rest of
the service keeps working."""
from __future__ import annotations

import base64
import time

from cryptography.hazmat.primitives import serialization
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import BasicAuth, make_csr, new_key
from estappliance.token import on_token_thread
from estappliance.token.call_thread import TOKEN_CALLS

from . import support, token_faults

PASSWORD = "fault tolerant"
CALL_TIMEOUT = 1.0
# A 503 must come within the call timeout plus what the request costs besides.
BOUND = CALL_TIMEOUT + 2.0


class TokenFaultTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        # The deadline is per process; the next test's server sets its own.
        self.addCleanup(setattr, TOKEN_CALLS, "timeout", TOKEN_CALLS.timeout)
        self.server = yield support.start_server(self, token={"call_timeout": CALL_TIMEOUT})
        yield self.server.add_client("alice", PASSWORD)
        self.module, self.label = str(support.SOFTHSM_LIB), support.TOKEN_LABEL
        resp = yield self.enroll()
        self.assertEqual(resp.status, 200, resp.body)  # a session is open and logged in

    def enroll(self):
        csr = make_csr(new_key(), "CN=fault-device").public_bytes(serialization.Encoding.DER)
        return self.server.raw("POST", "/.well-known/est/simpleenroll",
                               {"Authorization": BasicAuth("alice", PASSWORD).header(),
                                "Content-Type": "application/pkcs10"}, base64.b64encode(csr))

    @defer.inlineCallbacks
    def timed_enroll(self):
        start = time.monotonic()
        resp = yield self.enroll()
        return resp, time.monotonic() - start

    def install(self):
        return on_token_thread(token_faults.install, self.module, self.label)

    def assertUnavailable(self, resp, elapsed):
        self.assertEqual(resp.status, 503, resp.body)
        self.assertEqual(resp.header("retry-after"), "7")
        self.assertEqual(resp.header("content-type"), "text/plain; charset=utf-8")
        self.assertLess(elapsed, BOUND)

    @defer.inlineCallbacks
    def check_fault(self, fault: str):
        faults = yield self.install()
        wrapped = token_faults.current_session(self.module, self.label)
        before = yield self.server.count_certificates()
        faults.arm(fault)
        resp, elapsed = yield self.timed_enroll()
        self.assertUnavailable(resp, elapsed)
        self.assertEqual(len(faults.struck), 1, faults.struck)
        self.assertEqual((yield self.server.count_certificates()), before)  # nothing issued
        # The next request opens a new session and logs in again by itself.
        resp = yield self.enroll()
        self.assertEqual(resp.status, 200, resp.body)
        session = token_faults.current_session(self.module, self.label)
        self.assertIsNot(session, wrapped)
        self.assertIsNot(session, faults.real_session)
        self.assertEqual((yield self.server.count_certificates()), before + 1)

    def test_session_handle_invalid(self):
        """The real session is closed behind our back: the library answers
        CKR_SESSION_HANDLE_INVALID."""
        return self.check_fault(token_faults.REAL_CLOSE)

    def test_session_closed(self):
        return self.check_fault("CKR_SESSION_CLOSED")

    def test_logged_out_behind_our_back(self):
        return self.check_fault("CKR_USER_NOT_LOGGED_IN")

    def test_device_removed(self):
        return self.check_fault("CKR_DEVICE_REMOVED")

    def test_token_not_present(self):
        return self.check_fault("CKR_TOKEN_NOT_PRESENT")

    def test_device_memory(self):
        return self.check_fault("CKR_DEVICE_MEMORY")

    @defer.inlineCallbacks
    def test_a_hung_call_is_cut_off_and_the_service_recovers_when_it_returns(self):
        faults = yield self.install()
        self.addCleanup(faults.release.set)
        faults.arm(token_faults.HANG)
        resp, elapsed = yield self.timed_enroll()
        self.assertUnavailable(resp, elapsed)
        self.assertGreaterEqual(elapsed, CALL_TIMEOUT)
        self.assertTrue(faults.hanging.is_set())
        self.assertIsNotNone(TOKEN_CALLS.stuck_since)
        # While it hangs: token requests are refused at once, not queued behind it ...
        resp, elapsed = yield self.timed_enroll()
        self.assertUnavailable(resp, elapsed)
        self.assertLess(elapsed, CALL_TIMEOUT)
        # ... and what needs no token still works.
        resp = yield self.server.raw("GET", "/.well-known/est/cacerts")
        self.assertEqual(resp.status, 200)
        # The call returns: its session is dropped, the next request logs in afresh.
        faults.release.set()
        for _ in range(100):
            if TOKEN_CALLS.stuck_since is None:
                break
            yield support.in_thread(time.sleep, 0.05)
        self.assertIsNone(TOKEN_CALLS.stuck_since)
        self.assertIsNot(token_faults.current_session(self.module, self.label), faults.real_session)
        resp = yield self.enroll()
        self.assertEqual(resp.status, 200, resp.body)
