"""The PAL (RFC 8295 2.1): XML and JSON forms, the corrected schema, the
RFC's own JSON example, paging, Accept negotiation, the crls-only
SignedData, and the builder's choice and order of entries for one client."""
from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from pyasn1.codec.der import decoder, encoder
from pyasn1_alt_modules import rfc5280, rfc5652
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.config import Label, PalConfig, Profile
from estappliance.pki import pal_format
from estappliance.distribution.builder import CrlsBody, PalBuilder, key_use, paginate
from estappliance.pki.pal_format import BadPal, IssuerSerial, PalEntry
from estappliance.pki.crlsonly import NotCrlsOnly, crls_only, read_crls_only
from estappliance.pki.cms import certs_only
from estappliance.store import Store
from estappliance.web.distribution_routes import wants_json

UTC = datetime.timezone.utc
XSD = Path(pal_format.__file__).with_name("pal.xsd")
WHEN = datetime.datetime(2016, 12, 29, 9, 28, tzinfo=UTC)
BASE = "https://est.example.com/.well-known/est"

ALL_KINDS = [
    PalEntry("0002", 4246, uri=f"{BASE}/cacerts", date=WHEN),
    PalEntry("0010", 0, iasn=IssuerSerial("CN=Example CA,O=Example,C=US", 21)),
    PalEntry("0003", 12, dn="CN=peer,O=Example"),
    PalEntry("0024", 300, ski=bytes.fromhex("0a1b2c3d4e5f")),
    PalEntry("0001", 0, uri=f"{BASE}/pal?page=2"),
]


def build_crl(key, issuer: x509.Name, number: int, serials=()) -> bytes:
    now = datetime.datetime.now(UTC)
    b = (x509.CertificateRevocationListBuilder().issuer_name(issuer).last_update(now)
         .next_update(now + datetime.timedelta(hours=1)).add_extension(x509.CRLNumber(number), False))
    for s in serials:
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(s).revocation_date(now).build())
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class XmlTests(unittest.TestCase):
    def test_every_info_kind_validates_and_round_trips(self):
        doc = pal_format.to_xml(ALL_KINDS)
        pal_format.validate_xml(doc)
        self.assertTrue(doc.startswith(b"<?xml version='1.0' encoding='UTF-8'?>"))
        self.assertEqual(pal_format.parse_xml(doc), ALL_KINDS)
        root = etree.fromstring(doc)
        self.assertEqual(root.tag, "{urn:ietf:params:xml:ns:pal}pal")
        ns = {"p": pal_format.NAMESPACE}
        self.assertEqual(root.xpath("//p:message[1]/p:date/text()", namespaces=ns), ["2016-12-29T09:28:00Z"])
        self.assertEqual(root.xpath("//p:message[4]/p:info/p:ski/text()", namespaces=ns), ["0A1B2C3D4E5F"])
        # field order of the schema's sequence: type, date, size, info
        self.assertEqual([etree.QName(c).localname for c in root[0]], ["type", "date", "size", "info"])

    def test_empty_pal_is_valid(self):
        doc = pal_format.to_xml([])
        pal_format.validate_xml(doc)
        self.assertEqual(pal_format.parse_xml(doc), [])

    def test_schema_is_the_rfc_structure_with_the_two_fixes(self):
        text = XSD.read_text()
        self.assertIn('xmlns:xsd="http://www.w3.org/2001/XMLSchema"', text)
        self.assertIn(r'<xsd:pattern value="\d{4}"/>', text)
        self.assertIn(r'<xsd:pattern value=".*:\d{2}Z"/>', text)
        self.assertIn('targetNamespace="urn:ietf:params:xml:ns:pal"', text)
        # As published (no backslashes) the schema refuses every real type:
        published = etree.XMLSchema(etree.fromstring(text.replace(r"\d", "d").encode()))
        self.assertFalse(published.validate(etree.fromstring(pal_format.to_xml(ALL_KINDS[:1]))))
        # ... and with the RFC text's https namespace it is no schema at all.
        with self.assertRaises(etree.XMLSchemaParseError):
            etree.XMLSchema(etree.fromstring(text.replace("http://www.w3.org/2001/XMLSchema",
                                                          "https://www.w3.org/2001/XMLSchema").encode()))

    def test_schema_rejects_what_the_rfc_rules_out(self):
        good = pal_format.to_xml([PalEntry("0005", 10, uri=f"{BASE}/crls", date=WHEN)])
        bad = {
            "three-digit type": good.replace(b"<type>0005</type>", b"<type>005</type>"),
            "fractional date": good.replace(b"09:28:00Z", b"09:28:00.5Z"),
            "offset date": good.replace(b"09:28:00Z", b"09:28:00+01:00"),
            "date before 2013-05-23": good.replace(b"2016-12-29", b"2012-01-01"),
            "negative size": good.replace(b"<size>10</size>", b"<size>-1</size>"),
            "two infos": good.replace(b"</uri>", b"</uri><dn>CN=x</dn>"),
            "no namespace": good.replace(b' xmlns="urn:ietf:params:xml:ns:pal"', b""),
            "serial zero": pal_format.to_xml([PalEntry("0010", 0, iasn=IssuerSerial("CN=x", 1))]).replace(
                b"<serial>1</serial>", b"<serial>0</serial>"),
        }
        for why, doc in bad.items():
            with self.assertRaises(BadPal, msg=why):
                pal_format.validate_xml(doc)

    def test_parser_is_liberal_but_not_blind(self):
        unqualified = (b"<pal><message><type>0003</type><size>5</size>"
                       b"<info><uri>https://h/.well-known/est/eecerts</uri></info></message></pal>")
        self.assertEqual(pal_format.parse_xml(unqualified), [PalEntry("0003", 5, uri="https://h/.well-known/est/eecerts")])
        for doc in (b"not xml", b"<other/>", b"<pal><message><type>0003</type><size>1</size></message></pal>",
                    b"<pal><message><type>3</type><size>1</size><info><uri>u</uri></info></message></pal>",
                    b"<pal><message><type>0003</type><size>x</size><info><uri>u</uri></info></message></pal>",
                    b"<pal><message><type>0003</type><date>yesterday</date><size>1</size>"
                    b"<info><uri>u</uri></info></message></pal>"):
            self.assertRaises(BadPal, pal_format.parse_xml, doc)

    def test_external_entities_are_not_resolved(self):
        secret = Path(self.mktemp())
        secret.write_text("SECRET")
        doc = (f'<?xml version="1.0"?><!DOCTYPE pal [<!ENTITY x SYSTEM "file://{secret.resolve()}">]>'
               '<pal xmlns="urn:ietf:params:xml:ns:pal"><message><type>0003</type><size>1</size>'
               '<info><dn>&x;</dn></info></message></pal>').encode()
        entries = pal_format.parse_xml(doc)
        self.assertNotIn("SECRET", entries[0].dn)

    def test_entry_rules(self):
        self.assertRaises(BadPal, PalEntry, "003", 0, uri="u")
        self.assertRaises(BadPal, PalEntry, "0003", -1, uri="u")
        self.assertRaises(BadPal, PalEntry, "0003", 0)
        self.assertRaises(BadPal, PalEntry, "0003", 0, uri="u", dn="CN=x")
        self.assertRaises(BadPal, PalEntry, "0003", 0, uri="u" * 1025)
        self.assertRaises(BadPal, PalEntry, "0003", 0, uri="u", date=datetime.datetime(2020, 1, 1))


class JsonTests(unittest.TestCase):
    RFC_EXAMPLE = b"""[
      {"type": "0003", "date": "2016-12-29T09:28:00Z", "size": 1234,
       "info": {"uri": "https://www.example.com/.well-known/est/eecerts/1234"}},
      {"type": "0006", "date": "2016-12-29T09:28:00Z", "size": 1234,
       "info": {"iasn": {"issuer": "CN=Sean Turner,O=sn3rd,C=US", "serial": 0}}}
    ]"""

    def test_rfc_8295_example(self):
        entries = pal_format.parse_json(self.RFC_EXAMPLE)
        self.assertEqual(entries, [
            PalEntry("0003", 1234, uri="https://www.example.com/.well-known/est/eecerts/1234", date=WHEN),
            PalEntry("0006", 1234, iasn=IssuerSerial("CN=Sean Turner,O=sn3rd,C=US", 0), date=WHEN)])

    def test_round_trip_and_shape(self):
        import json
        doc = pal_format.to_json(ALL_KINDS)
        self.assertEqual(pal_format.parse_json(doc), ALL_KINDS)
        items = json.loads(doc)
        self.assertEqual(items[0], {"type": "0002", "date": "2016-12-29T09:28:00Z", "size": 4246,
                                    "info": {"uri": f"{BASE}/cacerts"}})
        self.assertEqual(items[1]["info"], {"iasn": {"issuer": "CN=Example CA,O=Example,C=US", "serial": 21}})
        self.assertNotIn("date", items[1])
        self.assertEqual(items[3]["info"], {"ski": "0A1B2C3D4E5F"})
        self.assertEqual(pal_format.to_json([]), b"[]")

    def test_dispatch_by_content_type(self):
        self.assertEqual(pal_format.parse(pal_format.to_json(ALL_KINDS), "application/json"), ALL_KINDS)
        self.assertEqual(pal_format.parse(pal_format.to_xml(ALL_KINDS), "application/xml; charset=utf-8"), ALL_KINDS)
        self.assertEqual(pal_format.parse(pal_format.to_json(ALL_KINDS), None), ALL_KINDS)

    def test_bad_json(self):
        for doc in (b"{", b'"x"', b'[{"type": "0003", "size": 1}]', b'[{"type": "0003", "info": {"uri": "u"}}]',
                    b'[{"type": "0003", "size": 1, "info": {"uri": "u", "dn": "d"}}]',
                    b'[{"type": "0003", "size": 1, "info": {"what": "u"}}]'):
            self.assertRaises(BadPal, pal_format.parse_json, doc)


class PagingTests(unittest.TestCase):
    def entries(self, n):
        return [PalEntry("0026", i, uri=f"{BASE}/firmware") for i in range(n)]

    def pages(self, n, max_entries):
        out, page = [], 1
        while True:
            got = paginate(self.entries(n), page, max_entries, lambda p: f"{BASE}/pal?page={p}")
            out.append(got)
            if not got or got[-1].type != "0001":
                return out
            self.assertEqual(got[-1].uri, f"{BASE}/pal?page={page + 1}")
            page += 1

    def test_small_pal_is_one_page(self):
        self.assertEqual(self.pages(4, 4), [self.entries(4)])
        self.assertEqual(self.pages(0, 4), [[]])

    def test_pointer_is_last_never_alone_and_nothing_is_lost(self):
        for n, m in ((5, 4), (7, 4), (10, 2), (33, 32), (64, 32)):
            pages = self.pages(n, m)
            for page in pages:
                self.assertLessEqual(len(page), m)
                self.assertNotEqual([e.type for e in page], ["0001"])
                self.assertNotIn("0001", [e.type for e in page[:-1]])
            sizes = [e.size for page in pages for e in page if e.type != "0001"]
            self.assertEqual(sizes, list(range(n)), (n, m))

    def test_pages_past_the_end_are_empty(self):
        self.assertEqual(paginate(self.entries(3), 2, 4, str), [])
        self.assertRaises(ValueError, paginate, [], 1, 1, str)


class AcceptTests(unittest.TestCase):
    def test_negotiation(self):
        for values, json in (([], False), ([b"*/*"], False), ([b"application/xml"], False),
                             ([b"application/json"], True), ([b"application/xml, application/json"], False),
                             ([b"application/xml;q=0.5, application/json"], True),
                             ([b"application/json;q=0"], False), ([b"text/plain"], False),
                             ([b"*/*", b"application/json"], True)):
            self.assertEqual(wants_json(values), json, values)


class CrlsOnlyTests(unittest.TestCase):
    def setUp(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.issuer = x509.Name.from_rfc4514_string("CN=CRL issuer")
        self.crl = build_crl(self.key, self.issuer, 7, (5, 9))
        self.arl = build_crl(self.key, self.issuer, 3)

    def test_structure_checked_with_pyasn1(self):
        der = crls_only([self.crl, self.arl])
        info, rest = decoder.decode(der, asn1Spec=rfc5652.ContentInfo())
        self.assertEqual(rest, b"")
        self.assertEqual(encoder.encode(info), der)
        self.assertEqual(info["contentType"], rfc5652.id_signedData)
        sd, rest = decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
        self.assertEqual(rest, b"")
        self.assertEqual(int(sd["version"]), 1)
        self.assertEqual(len(sd["digestAlgorithms"]), 0)
        self.assertEqual(len(sd["signerInfos"]), 0)
        self.assertEqual(sd["encapContentInfo"]["eContentType"], rfc5652.id_data)
        self.assertFalse(sd["encapContentInfo"]["eContent"].isValue)
        self.assertFalse(sd["certificates"].isValue)
        crls = [encoder.encode(c["crl"]) for c in sd["crls"]]
        self.assertEqual(crls, sorted([self.crl, self.arl]))  # a DER SET OF is sorted
        decoder.decode(crls[0], asn1Spec=rfc5280.CertificateList())

    def test_openssl_reads_it(self):
        der = crls_only([self.crl, self.arl])
        out = subprocess.run(["openssl", "pkcs7", "-inform", "DER", "-print"], input=der, capture_output=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.count(b"CN=CRL issuer"), 2)
        self.assertIn(b"crl:", out.stdout)

    def test_read_back(self):
        self.assertEqual(sorted(read_crls_only(crls_only([self.crl, self.arl]))), sorted([self.crl, self.arl]))
        self.assertRaises(ValueError, crls_only, [])
        self.assertRaises(NotCrlsOnly, read_crls_only, b"\x30\x00")
        cert = (x509.CertificateBuilder().subject_name(self.issuer).issuer_name(self.issuer)
                .public_key(self.key.public_key()).serial_number(1).not_valid_before(WHEN)
                .not_valid_after(WHEN + datetime.timedelta(days=1)).sign(self.key, hashes.SHA256()))
        self.assertRaises(NotCrlsOnly, read_crls_only, certs_only([cert]))


# -- the builder ----------------------------------------------------------------------------

CA_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name.from_rfc4514_string("CN=Builder CA")
NOW = datetime.datetime.now(UTC).replace(microsecond=0)


def issue(serial: int, days: float, *, key_usage=("digital_signature",), not_before=None) -> x509.Certificate:
    start = not_before or NOW - datetime.timedelta(days=1)
    flags = {k: k in key_usage for k in ("digital_signature", "content_commitment", "key_encipherment",
                                         "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")}
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string(f"CN=dev-{serial}"))
            .issuer_name(CA_NAME).public_key(key.public_key()).serial_number(serial).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.KeyUsage(**flags, encipher_only=False, decipher_only=False), critical=True)
            .sign(CA_KEY, hashes.SHA256()))


class FakeStanding:
    def __init__(self):
        self.der = certs_only([issue(99, 3650, key_usage=("key_cert_sign",))])
        self.versions = {"crl": "4", "arl": "2"}

    def cacerts(self):
        return self.der, "cafe"

    def crls(self):
        return defer.succeed(CrlsBody(b"\x30" * 321, dict(self.versions)))


def label(name="default", key_usage=("digitalSignature",)) -> Label:
    profile = Profile(name="p", validity_days=30, key_types=("ec-p256",), key_usage=key_usage,
                      extended_key_usage=(), copy_san=False)
    return Label(name=name, profile=profile, auth=("basic",), cert_anchors=("ca",))


class BuilderTests(unittest.TestCase):
    def setUp(self):
        self.store = Store(Path(self.mktemp()) / "est.sqlite")
        self.addCleanup(self.store.close)
        self.standing = FakeStanding()
        self.settings = PalConfig(max_entries=32, renew_before_days=30, history_days=30)
        self.now = NOW

    @defer.inlineCallbacks
    def pal(self, client="alice", lab=None):
        builder = PalBuilder(self.store, self.standing, self.settings, now=lambda: self.now)
        entries = yield builder.entries(client, lab or label(), BASE)
        pal_format.validate_xml(pal_format.to_xml(entries))  # whatever it builds is schema-valid
        return entries

    def queue(self, pal_type, target="alice", **kw):
        kw.setdefault("content", b"\x30\x03\x02\x01\x01")
        return self.store.packages.queue_package(label="default", pal_type=pal_type, target_kind="client", target=target,
                                        **kw)

    def record(self, cert: x509.Certificate, client="alice", label_name="default", replaces=None):
        self.store.certificates.record_certificate(serial=cert.serial_number, subject=cert.subject.rfc4514_string(),
                                      not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                                      label=label_name, client=client, der=cert.public_bytes(serialization.Encoding.DER),
                                      replaces=replaces)

    @defer.inlineCallbacks
    def test_standing_entries_first_and_dated_per_version(self):
        entries = yield self.pal()
        self.assertEqual([(e.type, e.uri, e.date) for e in entries], [
            ("0002", f"{BASE}/cacerts", None), ("0004", f"{BASE}/crls", None), ("0005", f"{BASE}/crls", None)])
        self.assertEqual(entries[0].size, len(self.standing.der))
        self.assertEqual(entries[1].size, 321)
        self.store.packages.record_standing_downloads("alice", "default", {"cacerts": "cafe", "crl": "4",
                                                                  "arl": "1"})  # an older ARL
        entries = yield self.pal()
        # undownloaded first within the tier: the ARL, then the dated ones
        self.assertEqual([(e.type, e.date is not None) for e in entries],
                         [("0004", False), ("0002", True), ("0005", True)])
        self.standing.versions["crl"] = "5"  # a new CRL: no evidence the client has it
        entries = yield self.pal()
        self.assertEqual([e.date for e in entries if e.type == "0005"], [None])
        other = yield self.pal("bob")
        self.assertTrue(all(e.date is None for e in other))

    @defer.inlineCallbacks
    def test_order_of_precedence_and_receipt_requests(self):
        peer = issue(50, 30)
        ee = self.queue("0003", content=peer.public_bytes(serialization.Encoding.DER))
        tamp = self.queue("0030", receipt_requested=True)
        fw = self.queue("0026", receipt_requested=True)
        sym = self.queue("0024")
        self.queue("0026", target="bob")  # someone else's
        entries = yield self.pal()
        self.assertEqual([e.type for e in entries],
                         ["0002", "0004", "0005", "0030", "0031", "0026", "0027", "0024", "0003"])
        by_type = {e.type: e for e in entries}
        self.assertEqual(by_type["0026"].uri, f"{BASE}/firmware")
        self.assertEqual(by_type["0027"].uri, f"{BASE}/firmware/return")
        self.assertEqual(by_type["0031"].uri, f"{BASE}/tamp/return")
        self.assertEqual((by_type["0027"].size, by_type["0027"].date), (0, None))
        self.assertEqual(by_type["0026"].size, 5)
        self.assertEqual(by_type["0003"].uri, f"{BASE}/eecerts")
        self.assertEqual(by_type["0003"].size, len(certs_only([peer])))
        # downloaded: dated, and (no receipt owed) after what still waits
        for p in (tamp, fw, sym, ee):
            self.store.packages.mark_downloaded(p.id, "alice")
        self.store.packages.record_receipt(tamp.id, "alice")
        entries = yield self.pal()
        tail = [(e.type, e.date is not None) for e in entries[3:]]
        self.assertEqual(tail, [("0026", True), ("0027", False), ("0030", True), ("0024", True), ("0003", True)])

    @defer.inlineCallbacks
    def test_completed_deliveries_leave_after_the_history(self):
        p = self.queue("0026")
        yield self.pal()
        self.store.packages.mark_downloaded(p.id, "alice")
        self.now = NOW + datetime.timedelta(days=29)
        entries = yield self.pal()
        self.assertIn("0026", [e.type for e in entries])
        self.now = NOW + datetime.timedelta(days=31)
        entries = yield self.pal()
        self.assertNotIn("0026", [e.type for e in entries])

    @defer.inlineCallbacks
    def test_ee_entry_announces_what_eecerts_serves(self):
        peer, other = issue(60, 30), issue(61, 30)
        old = self.queue("0003", content=peer.public_bytes(serialization.Encoding.DER))
        self.queue("0003", content=peer.public_bytes(serialization.Encoding.DER))  # queued twice: served once
        yield self.pal()
        self.store.packages.mark_downloaded(old.id, "alice")
        self.now = NOW + datetime.timedelta(days=31)
        entries = yield self.pal()
        [ee] = [e for e in entries if e.type == "0003"]
        self.assertEqual((ee.size, ee.date), (len(certs_only([peer])), None))
        self.queue("0003", content=other.public_bytes(serialization.Encoding.DER))
        entries = yield self.pal()
        [ee] = [e for e in entries if e.type == "0003"]
        self.assertEqual(ee.size, len(certs_only([peer, other])))
        for p in self.store.packages.packages():
            self.store.packages.mark_downloaded(p.id, "alice")
        self.now = NOW + datetime.timedelta(days=62)  # everything fetched long ago: no entry
        entries = yield self.pal()
        self.assertNotIn("0003", [e.type for e in entries])

    @defer.inlineCallbacks
    def test_certificates_nearing_their_end(self):
        self.record(issue(0x1001, 365, not_before=NOW - datetime.timedelta(days=340)))  # 25 days left
        self.record(issue(0x1002, 365))  # plenty left
        self.record(issue(0x1003, 365, not_before=NOW - datetime.timedelta(days=350),
                          key_usage=("key_agreement",)))  # KE, 15 days left
        self.record(issue(0x1004, 365, not_before=NOW - datetime.timedelta(days=340)), label_name="iot")
        self.record(issue(0x1005, 365, not_before=NOW - datetime.timedelta(days=340)), client="bob")
        self.record(issue(0x1006, 9, not_before=NOW - datetime.timedelta(days=7)))  # last third of a short life
        self.record(issue(0x1007, 9, not_before=NOW - datetime.timedelta(days=2)))  # not yet
        self.record(issue(0x1008, 365, not_before=NOW - datetime.timedelta(days=340)))
        self.record(issue(0x1009, 365), replaces=0x1008)  # renewed already
        self.record(issue(0x100A, 365, not_before=NOW - datetime.timedelta(days=340)))
        self.store.certificates.revoke(0x100A, "superseded")
        entries = yield self.pal()
        notices = [(e.type, e.iasn.serial, e.iasn.issuer, e.size, e.date) for e in entries if e.iasn]
        # the soonest end first
        self.assertEqual(notices, [("0010", 0x1006, "CN=Builder CA", 0, None),
                                   ("0017", 0x1003, "CN=Builder CA", 0, None),
                                   ("0010", 0x1001, "CN=Builder CA", 0, None)])

    def request(self, operation="simpleenroll", client="alice", label_name="default"):
        return self.store.certificates.add_pending(label=label_name, client=client, key_hash=f"k{operation}{client}",
                                      subject="CN=x", operation=operation, request=b"\x30\x00")

    @defer.inlineCallbacks
    def test_enrollment_results_one_at_a_time(self):
        first = self.request()
        second = self.request("simplereenroll")
        entries = yield self.pal()
        self.assertEqual([e.type for e in entries if e.type not in ("0002", "0004", "0005")], [])  # undecided
        self.store.certificates.decide_pending(second.id, True)
        self.store.certificates.decide_pending(first.id, False)
        entries = yield self.pal()
        results = [(e.type, e.uri, e.size) for e in entries[3:]]
        self.assertEqual(results, [("0009", f"{BASE}/simpleenroll", 0)])  # the oldest first
        self.store.packages.mark_result_delivered(first.id)
        entries = yield self.pal()
        self.assertEqual([(e.type, e.uri) for e in entries[3:]], [("0011", f"{BASE}/simplereenroll")])
        other = yield self.pal("bob")
        self.assertEqual(len(other), 3)

    @defer.inlineCallbacks
    def test_key_establishment_labels_and_issued_requests(self):
        r = self.request()
        self.store.certificates.decide_pending(r.id, True)
        entries = yield self.pal(lab=label(key_usage=("keyAgreement",)))
        self.assertEqual([e.type for e in entries[3:]], ["0015"])
        # once issued (the repeated POST or our GET delivered it) nothing is announced
        self.store.certificates.record_certificate(serial=77, subject="CN=x", not_before=NOW, not_after=NOW, label="default",
                                      client="alice", der=b"\x30\x00", pending_id=r.id)
        entries = yield self.pal()
        self.assertEqual(len(entries), 3)

    @defer.inlineCallbacks
    def test_receipts_owed_for_server_generated_keys(self):
        for n, (label_name, receipt, delivered) in enumerate((("default", True, True), ("default", False, True),
                                                              ("default", True, False), ("iot", True, True))):
            pkg = bytes([n]) * 20
            self.store.keygen.key_package_started(pkg_id=pkg, client="alice", label=label_name, key_label=f"k{n}",
                                           form="enveloped", receipt_requested=receipt)
            if delivered:
                self.store.keygen.key_package_delivered(pkg, escrowed=False)
        entries = yield self.pal()
        self.assertEqual([(e.type, e.uri, e.size) for e in entries[3:]],
                         [("0023", f"{BASE}/serverkeygen/return", 0)])
        other = yield self.pal("bob")
        self.assertEqual(len(other), 3)

    def test_key_use(self):
        self.assertEqual(key_use(("digitalSignature", "keyEncipherment")), "DS")
        self.assertEqual(key_use(("keyEncipherment",)), "KE")
        self.assertEqual(key_use(None), "DS")


class SettingsTests(unittest.TestCase):
    def load(self, **tables):
        from estappliance.config import from_dict
        raw = {"token": {"module": "/nonexistent.so", "label": "t", "pin_env": "X"}, **tables}
        return from_dict(raw, Path("/etc/est/estappliance.toml"))

    def test_defaults_and_values(self):
        from estappliance.config import CrlConfig
        c = self.load()
        self.assertEqual((c.crl, c.pal), (CrlConfig(), PalConfig()))
        c = self.load(crl={"validity_hours": 48, "reissue_before_hours": 12, "check_minutes": 5},
                      pal={"max_entries": 8, "renew_before_days": 10, "history_days": 0})
        self.assertEqual((c.crl.validity_hours, c.crl.reissue_before_hours, c.crl.check_minutes), (48, 12, 5))
        self.assertEqual((c.pal.max_entries, c.pal.renew_before_days, c.pal.history_days), (8, 10, 0))

    def test_refusals(self):
        from estappliance.config import ConfigError
        for tables in ({"pal": {"max_entries": 1}}, {"pal": {"max_entries": "many"}},
                       {"crl": {"validity_hours": 6, "reissue_before_hours": 6}}, {"crl": {"validity_hours": 0}},
                       {"pal": {"renew_before_days": -1}}):
            with self.assertRaises(ConfigError, msg=tables):
                self.load(**tables)
