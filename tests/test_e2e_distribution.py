"""End to end through TLS on 127.0.0.1 with a real SoftHSM2 token: RFC 8295
/pal, /crls, /eecerts and enrollment results fetched with GET."""
from __future__ import annotations

from twisted.internet import defer
from twisted.trial import unittest

from estappliance.client import BasicAuth, HttpsConnection
from estappliance.packages import pal as pal_format

from . import support

PASSWORD = "correct horse"
EST = "/.well-known/est"


class PalTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(self)
        yield self.server.add_client("alice", PASSWORD)

    def raw(self, method, path, headers=None, body=b""):
        def go():
            conn = HttpsConnection("127.0.0.1", self.server.port, anchors=[self.server.ca_cert])
            try:
                return conn.request(method, path, headers or {}, body)
            finally:
                conn.close()
        return support.in_thread(go)

    @defer.inlineCallbacks
    def test_smoke(self):
        resp = yield self.raw("GET", f"{EST}/pal", {"Authorization": BasicAuth("alice", PASSWORD).header()})
        self.assertEqual(resp.status, 200, resp.body)
        pal_format.validate_xml(resp.body)
        entries = pal_format.parse_xml(resp.body)
        self.assertEqual([e.type for e in entries], ["0002", "0004", "0005"])
        resp = yield self.raw("GET", f"{EST}/crls")
        self.assertEqual(resp.status, 200, resp.body)
