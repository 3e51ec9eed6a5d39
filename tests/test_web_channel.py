"""Every response leaves in one write: headers and body together."""
from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.trial import unittest

from estappliance.errors import NotFound
from estappliance.web import Operation, Response, make_site


class RecordingTransport:
    disconnecting = False

    def __init__(self):
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))

    def writeSequence(self, seq):
        self.writes.append(b"".join(seq))

    def getPeer(self):
        return IPv4Address("TCP", "127.0.0.1", 50000)

    def getHost(self):
        return IPv4Address("TCP", "127.0.0.1", 8443)

    def registerProducer(self, producer, streaming):
        pass

    def unregisterProducer(self):
        pass

    def loseConnection(self):
        pass

    def setTcpNoDelay(self, enabled):
        pass


def check_label(name):
    if name != "known":
        raise NotFound(f"no such CA label {name!r}")


ROUTES = {
    ("hello",): Operation({b"GET": lambda request, label: Response(b"hello body\n", b"text/plain")}),
    ("empty",): Operation({b"GET": lambda request, label: Response(status=204)}),
    ("args",): Operation({b"POST": lambda request, label: Response(repr(sorted(request.args)).encode() + b"\n",
                                                                  b"text/plain")}),
}


class SingleWriteTests(unittest.TestCase):
    def exchange(self, raw: bytes) -> list[bytes]:
        site = make_site([ROUTES], check_label, realm="r", retry_after=5, max_body=4096)
        site.timeOut = None  # no idle-timeout timer on the real reactor
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = RecordingTransport()
        channel.makeConnection(transport)
        channel.dataReceived(raw)
        channel.connectionLost(None)
        return transport.writes

    def test_response_with_body_is_one_write(self):
        writes = self.exchange(b"GET /.well-known/est/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(len(writes), 1)
        self.assertTrue(writes[0].startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(writes[0].endswith(b"\r\n\r\nhello body\n"))

    def test_response_without_body_is_one_write(self):
        writes = self.exchange(b"GET /.well-known/est/empty HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(len(writes), 1)
        self.assertTrue(writes[0].startswith(b"HTTP/1.1 204 No Content\r\n"))
        self.assertNotIn(b"content-length", writes[0].lower())

    def test_error_and_head_are_one_write_each(self):
        writes = self.exchange(b"GET /.well-known/est/nope/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(len(writes), 1)
        self.assertIn(b"404", writes[0].split(b"\r\n")[0])
        self.assertTrue(writes[0].endswith(b"no such CA label 'nope'\n"))
        writes = self.exchange(b"HEAD /.well-known/est/hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(len(writes), 1)
        self.assertTrue(writes[0].endswith(b"\r\n\r\n"))

    def test_bodies_are_not_parsed_as_forms(self):
        body = b"a=1&b=2"
        writes = self.exchange(b"POST /.well-known/est/args HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Type: application/x-www-form-urlencoded\r\n"
                               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.assertTrue(writes[0].endswith(b"\r\n\r\n[]\n"), writes[0])

    def test_keep_alive_pipelined_requests_each_one_write(self):
        writes = self.exchange(b"GET /.well-known/est/hello HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        self.assertEqual(len(writes), 3)
