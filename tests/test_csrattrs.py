"""CSR Attributes: what we build, and how the client reads published examples."""
from __future__ import annotations

import base64
from pathlib import Path

from pyasn1.codec.der import decoder, encoder
from pyasn1_alt_modules import rfc8951
from twisted.trial import unittest

from estappliance.pki import csrattrs

VECTORS = Path("/work/shared/spec/vectors")
if not VECTORS.exists():
    VECTORS = Path(__file__).resolve().parents[2] / "shared" / "spec" / "vectors"


def vector(name: str) -> bytes:
    path = VECTORS / name
    if not path.exists():
        raise unittest.SkipTest(f"{path} not present")
    return base64.b64decode(path.read_text())


def independent(der: bytes):
    """Decode with pyasn1-alt-modules, check nothing trails and DER re-encodes byte for byte."""
    obj, rest = decoder.decode(der, asn1Spec=rfc8951.CsrAttrs())
    assert rest == b"", rest
    assert encoder.encode(obj) == der
    return obj


class BuildTests(unittest.TestCase):
    def test_linking_p384_and_san(self):
        der = csrattrs.build(key_type="ec-p384", pop_linking=True, required_extensions=("subjectAltName",))
        obj = independent(der)
        self.assertEqual(str(obj[0]["oid"]), "1.2.840.113549.1.9.7")
        self.assertEqual(str(obj[1]["attribute"]["attrType"]), "1.2.840.10045.2.1")
        self.assertEqual(str(obj[-1]["oid"]), "1.2.840.10045.4.3.3")
        hints = csrattrs.parse(der)
        self.assertTrue(hints.challenge_password)
        self.assertEqual(hints.key_type, "ec-p384")
        self.assertEqual(hints.signature_algorithm, "ecdsa-with-SHA384")
        self.assertEqual(hints.extensions, {"2.5.29.17"})

    def test_rsa_size_without_linking(self):
        der = csrattrs.build(key_type="rsa3072", pop_linking=False)
        independent(der)
        hints = csrattrs.parse(der)
        self.assertEqual((hints.challenge_password, hints.key_type, hints.signature_algorithm),
                         (False, "rsa3072", "sha256WithRSAEncryption"))

    def test_nothing_is_an_empty_sequence(self):
        self.assertEqual(csrattrs.build(key_type=None, pop_linking=False), b"\x30\x00")


class ParseTests(unittest.TestCase):
    def test_rfc7030_section_4_5_2_example(self):
        hints = csrattrs.parse(vector("rfc7030_452_csrattrs.b64"))
        self.assertTrue(hints.challenge_password)
        self.assertEqual(hints.key_type, "ec-p384")
        self.assertEqual(hints.signature_algorithm, "ecdsa-with-SHA384")
        self.assertEqual(hints.extensions, {"1.3.6.1.1.1.1.22"})  # macAddress

    def test_rfc7030_appendix_a2_ignores_unknown_attributes(self):
        hints = csrattrs.parse(vector("rfc7030_A2_csrattrs.b64"))
        self.assertTrue(hints.challenge_password)
        self.assertIsNone(hints.key_type)
        self.assertEqual(set(hints.attributes), {"2.999.1", "2.999.2"})
        self.assertIn("1.3.36.3.3.2.8.1.1.11", hints.oids)

    def test_clarification_draft_examples(self):
        hints = csrattrs.parse(vector("draft_csrattrs_harkins01.b64"))
        self.assertEqual(hints.key_type, "rsa4096")
        hints = csrattrs.parse(vector("draft_csrattrs_rfc7030ex01_corrected.b64"))
        self.assertEqual(hints.extensions, {"2.5.29.9"})

    def test_garbage_is_refused(self):
        for bad in (b"", b"\x04\x01\x00", b"\x30\x03\x02\x01\x01", b"\x30\x00\x00"):
            self.assertRaises(csrattrs.BadCsrAttrs, csrattrs.parse, bad)
