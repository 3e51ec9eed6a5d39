"""estappliance.pki.encoding: EST bodies are base64 of DER (RFC 8951); we
write 64-character lines and read base64 in any layout, or raw DER."""
from __future__ import annotations

import base64
import hashlib
import os
import unittest as pyunittest
from pathlib import Path

from twisted.trial import unittest

from estappliance.pki.encoding import NotBase64OrDer, decode_body, encode_body

VECTORS = Path("/work/shared/spec/vectors")


def vector_sums() -> dict[str, tuple[str, int]]:
    """file name -> (sha256 hex, length) of the decoded DER, from SHA256SUMS.der.txt."""
    if not VECTORS.is_dir():
        raise pyunittest.SkipTest(f"{VECTORS} is missing")
    sums = {}
    for line in (VECTORS / "SHA256SUMS.der.txt").read_text().splitlines():
        if line.strip():
            digest, length, name = line.split()
            sums[name] = (digest, int(length))
    return sums


def read_vector(name: str) -> bytes:
    if not VECTORS.is_dir():
        raise pyunittest.SkipTest(f"{VECTORS} is missing")
    return (VECTORS / name).read_bytes()


class EncodeTests(unittest.TestCase):
    def test_lines_of_64_characters(self):
        der = b"\x30\x82\x03\xe8" + os.urandom(1000)
        body = encode_body(der)
        self.assertTrue(body.endswith(b"\n"))
        lines = body.split(b"\n")[:-1]
        self.assertGreater(len(lines), 1)
        for line in lines[:-1]:
            self.assertEqual(len(line), 64)
        self.assertLessEqual(len(lines[-1]), 64)
        self.assertGreater(len(lines[-1]), 0)
        self.assertEqual(b"".join(lines), base64.b64encode(der))

    def test_round_trip(self):
        for n in (1, 2, 3, 47, 48, 49, 96, 1000, 4096):
            der = b"\x30" + os.urandom(n)
            body = encode_body(der)
            self.assertEqual(decode_body(body), der)
            self.assertEqual(base64.b64decode(body), der)
            self.assertEqual(base64.decodebytes(body), der)

    def test_exact_multiple_of_48_bytes_has_no_empty_line(self):
        body = encode_body(bytes(96))
        self.assertEqual(body.split(b"\n"), [b"A" * 64, b"A" * 64, b""])

    def test_only_base64_alphabet_and_newlines(self):
        body = encode_body(os.urandom(500))
        allowed = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n")
        self.assertTrue(set(body) <= allowed)
        self.assertNotIn(b"\r", body)


class DecodeLayoutTests(unittest.TestCase):
    der = b"\x30\x82\x01\x00" + bytes(range(256))

    def test_no_line_breaks(self):
        self.assertEqual(decode_body(base64.b64encode(self.der)), self.der)

    def test_lf_lines(self):
        self.assertEqual(decode_body(base64.encodebytes(self.der)), self.der)

    def test_crlf_lines(self):
        body = base64.encodebytes(self.der).replace(b"\n", b"\r\n")
        self.assertEqual(decode_body(body), self.der)

    def test_spaces_and_tabs(self):
        text = base64.b64encode(self.der)
        body = b" \t".join(text[i:i + 10] for i in range(0, len(text), 10))
        self.assertEqual(decode_body(b"  " + body + b"\t\r\n"), self.der)

    def test_raw_der_taken_as_is(self):
        self.assertEqual(decode_body(self.der), self.der)
        short = b"\x30\x03\x02\x01\x05"
        self.assertEqual(decode_body(short), short)

    def test_raw_der_with_one_byte_long_length(self):
        der = b"\x30\x81\x80" + bytes(128)
        self.assertEqual(decode_body(der), der)


class DecodeRefusalTests(unittest.TestCase):
    def test_empty_body(self):
        err = self.assertRaises(NotBase64OrDer, decode_body, b"")
        self.assertIn("empty", str(err))

    def test_whitespace_only(self):
        self.assertRaises(NotBase64OrDer, decode_body, b" \r\n\t\n")

    def test_not_base64(self):
        err = self.assertRaises(NotBase64OrDer, decode_body, b"this is not base64 !!!")
        self.assertIn("not base64", str(err))

    def test_base64_with_foreign_characters(self):
        text = base64.b64encode(b"\x30\x03\x02\x01\x05" * 10)
        self.assertRaises(NotBase64OrDer, decode_body, text[:8] + b"*" + text[8:])
        self.assertRaises(NotBase64OrDer, decode_body, text[:8] + b"-_" + text[8:])

    def test_truncated_base64(self):
        text = base64.b64encode(b"\x30\x03\x02\x01\x05" * 10)
        self.assertRaises(NotBase64OrDer, decode_body, text[:-1])

    def test_der_that_does_not_span_the_body_is_not_raw_der(self):
        # A SEQUENCE header claiming more bytes than there are: neither DER nor base64.
        self.assertRaises(NotBase64OrDer, decode_body, b"\x30\x05\x02\x01\x05")

    def test_error_is_a_value_error(self):
        self.assertTrue(issubclass(NotBase64OrDer, ValueError))


class RFC7030VectorTests(unittest.TestCase):
    """RFC 7030 Appendix A bodies decode to the DER listed in SHA256SUMS.der.txt."""

    def check(self, name: str) -> bytes:
        body = read_vector(name)
        digest, length = vector_sums()[name]
        der = decode_body(body)
        self.assertEqual(len(der), length)
        self.assertEqual(hashlib.sha256(der).hexdigest(), digest)
        return der

    def test_a3_request(self):
        der = self.check("rfc7030_A3_simpleenroll_req.b64")
        self.assertEqual(len(der), 649)
        self.assertEqual(hashlib.sha256(der).hexdigest(),
                         "c8c8c5e7cd9f9bfe3e89223e6e968c1e1882664dcbab28387ff7a488d5460532")

    def test_a3_response(self):
        self.check("rfc7030_A3_simpleenroll_resp.b64")

    def test_a1_cacerts(self):
        self.check("rfc7030_A1_cacerts.b64")

    def test_every_rfc7030_vector(self):
        names = [n for n in vector_sums() if n.startswith("rfc7030_")]
        self.assertGreaterEqual(len(names), 7)
        for name in names:
            self.check(name)

    def test_vector_in_every_layout(self):
        der = self.check("rfc7030_A3_simpleenroll_req.b64")
        text = read_vector("rfc7030_A3_simpleenroll_req.b64")
        compact = b"".join(text.split())
        layouts = [
            compact,
            text.replace(b"\n", b"\r\n"),
            b"\t".join(compact[i:i + 76] for i in range(0, len(compact), 76)),
            b" ".join(compact[i:i + 4] for i in range(0, len(compact), 4)),
            encode_body(der),
            der,
        ]
        for body in layouts:
            self.assertEqual(decode_body(body), der)

    def test_reencoded_vector_is_64_char_lines(self):
        der = self.check("rfc7030_A1_cacerts.b64")
        body = encode_body(der)
        self.assertEqual({len(line) for line in body.splitlines()[:-1]}, {64})
        self.assertEqual(decode_body(body), der)
