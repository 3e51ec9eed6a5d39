"""CSR templates (RFC 9908; RFC 8295 Appendix B) built from a label's
profile: decoded by pyasn1-alt-modules byte for byte, the RFC's own example
(encoded by pyasn1-alt-modules) read by us, the two forms consistent, CSRs
filled in from them, and the server's reasons for refusing a CSR."""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc2986, rfc5280, rfc5652, rfc6402, rfc9908
from twisted.trial import unittest

from estappliance.config import from_dict
from estappliance.pki import csrattrs, csrtemplate
from estappliance.pki.csrtemplate import CsrTemplate, ExtensionSlot, RdnSlot
from estappliance.ra.csrtemplates import template_for

from . import support

CN, OU, O = "2.5.4.3", "2.5.4.11", "2.5.4.10"
SAN, KU, EKU = "2.5.29.17", "2.5.29.15", "2.5.29.37"


def label(**profile):
    raw = {"token": {"module": "x", "label": "x", "pin_env": "X"},
           "profiles": {"p": {"key_types": ["ec-p384"], "subject_template": "CN={CN},OU=Devices,O=Example",
                              "required_extensions": ["subjectAltName"], **profile}},
           "labels": {"tpl": {"profile": "p", "csr_template": True}}}
    return from_dict(raw, support.Path("/tmp/x.toml")).labels["tpl"]


def sign(builder, key=None):
    key = key or ec.generate_private_key(ec.SECP384R1())
    return builder.sign(key, hashes.SHA384())


class TemplateFromProfileTests(support.ExactDecoding, unittest.TestCase):
    def test_the_profile_becomes_the_template(self):
        t = template_for(label())
        self.assertEqual(t.subject, (RdnSlot(O, "Example"), RdnSlot(OU, "Devices"), RdnSlot(CN, None)))
        self.assertEqual(t.key_type, "ec-p384")
        self.assertEqual([(e.oid, e.critical, e.value is None) for e in t.extensions],
                         [(SAN, False, True), (KU, True, False), (EKU, False, False)])
        self.assertEqual(t.extensions[1].value, x509.KeyUsage(True, False, False, False, False, False, False, False,
                                                               False).public_bytes())

    def test_pyasn1_alt_modules_reads_it_byte_for_byte(self):
        attr = csrtemplate.rfc9908_attribute(template_for(label()))
        obj = self.decode(attr.dump(), rfc5280.Attribute())
        self.assertEqual(obj["type"], rfc9908.id_aa_certificationRequestInfoTemplate)
        self.assertEqual(str(obj["type"]), "1.2.840.113549.1.9.16.2.61")
        tpl = self.decode(bytes(obj["values"][0]), rfc9908.CertificationRequestInfoTemplate())
        self.assertEqual(int(tpl["version"]), 0)
        rdns = tpl["subject"]["rdnSequence"]
        self.assertEqual([str(r[0]["type"]) for r in rdns], [O, OU, CN])
        self.assertFalse(rdns[2][0]["value"].isValue, "CN is left to the client: no value")
        self.assertEqual(str(tpl["subjectPKInfo"]["algorithm"]["algorithm"]), "1.2.840.10045.2.1")
        self.assertFalse(tpl["subjectPKInfo"]["subjectPublicKey"].isValue)
        ext_attr = tpl["attributes"][0]
        self.assertEqual(ext_attr["type"], rfc9908.id_aa_extensionReqTemplate)
        exts = self.decode(bytes(ext_attr["values"][0]), rfc9908.ExtensionReqTemplate())
        self.assertEqual([str(e["extnID"]) for e in exts], [SAN, KU, EKU])
        self.assertFalse(exts[0]["extnValue"].isValue)
        self.assertTrue(bool(exts[1]["critical"]))

    def test_rsa_size_is_a_placeholder_key_of_that_length(self):
        t = template_for(label(key_types=["rsa3072"]))
        tpl = self.decode(bytes(self.decode(csrtemplate.rfc9908_attribute(t).dump(), rfc5280.Attribute())
                                ["values"][0]), rfc9908.CertificationRequestInfoTemplate())
        spk = tpl["subjectPKInfo"]["subjectPublicKey"].asOctets()
        modulus = decoder.decode(spk, asn1Spec=univ.Sequence())[0][0]
        self.assertEqual(int(modulus).bit_length(), 3072)
        self.assertEqual(csrtemplate.from_der(encoder.encode(tpl)).key_type, "rsa3072")

    def test_a_choice_of_keys_and_a_free_subject_leave_them_out(self):
        t = template_for(label(key_types=["ec-p256", "rsa2048"], subject_template=None, required_extensions=[]))
        self.assertEqual((t.subject, t.key_type), (None, None))
        tpl = decoder.decode(csrtemplate.to_asn1(t).dump(), asn1Spec=rfc9908.CertificationRequestInfoTemplate())[0]
        self.assertFalse(tpl["subject"].isValue)
        self.assertFalse(tpl["subjectPKInfo"].isValue)
        # every extension value given: id-ExtensionReq, as RFC 9908 3.4 asks
        self.assertEqual(str(tpl["attributes"][0]["type"]), "1.2.840.113549.1.9.14")

    def test_we_read_the_rfcs_example_encoded_by_pyasn1_alt_modules(self):
        """RFC 9908 3.4's example: CN to fill, OU myDept and myGroup, P-256,
        a SAN with a DNS name and an empty IP, keyUsage critical, EKU to fill."""
        tpl = rfc9908.CertificationRequestInfoTemplate()
        tpl["version"] = 0
        rdns = tpl["subject"]["rdnSequence"]
        for oid, value in [(CN, None), (OU, "myDept"), (OU, "myGroup")]:
            rdn = rfc9908.RelativeDistinguishedNameTemplate()
            sat = rfc9908.SingleAttributeTemplate()
            sat["type"] = univ.ObjectIdentifier(oid)
            if value is not None:
                sat["value"] = encoder.encode(rfc5280.DirectoryString().setComponentByName(
                    "utf8String", value))
            rdn.append(sat)
            rdns.append(rdn)
        alg = tpl["subjectPKInfo"]["algorithm"]
        alg["algorithm"] = univ.ObjectIdentifier("1.2.840.10045.2.1")
        alg["parameters"] = encoder.encode(univ.ObjectIdentifier("1.2.840.10045.3.1.7"))
        san = x509.SubjectAlternativeName([x509.DNSName("www.myServer.com")]).public_bytes()
        exts = rfc9908.ExtensionReqTemplate()
        for oid, critical, value in [(SAN, False, san), (KU, True, x509.KeyUsage(
                True, False, False, False, True, False, False, False, False).public_bytes()), (EKU, False, None)]:
            e = rfc9908.ExtensionTemplate()
            e["extnID"] = univ.ObjectIdentifier(oid)
            if critical:
                e["critical"] = True
            if value is not None:
                e["extnValue"] = value
            exts.append(e)
        attr = rfc5280.Attribute()
        attr["type"] = rfc9908.id_aa_extensionReqTemplate
        attr["values"].append(encoder.encode(exts))
        tpl["attributes"].append(attr)
        t = csrtemplate.from_der(encoder.encode(tpl))
        self.assertEqual(t.subject, (RdnSlot(CN, None), RdnSlot(OU, "myDept"), RdnSlot(OU, "myGroup")))
        self.assertEqual(t.key_type, "ec-p256")
        self.assertEqual([(e.oid, e.critical, e.value is None) for e in t.extensions],
                         [(SAN, False, False), (KU, True, False), (EKU, False, True)])

    def test_rfc8295_appendix_b_form_says_the_same(self):
        t = template_for(label())
        attr = self.decode(csrtemplate.rfc8295_attribute(t).dump(), rfc5280.Attribute())
        self.assertEqual(str(attr["type"]), "1.2.840.113549.1.9.25.5")
        ci = self.decode(bytes(attr["values"][0]), rfc5652.ContentInfo())
        self.assertEqual(ci["contentType"], rfc6402.id_cct_PKIData)
        pki_data = self.decode(bytes(ci["content"]), rfc6402.PKIData())
        tcr = pki_data["reqSequence"][0]["tcr"]
        self.assertEqual(int(tcr["bodyPartID"]), 0)
        req = tcr["certificationRequest"]
        info = req["certificationRequestInfo"]
        names = [(str(r[0]["type"]), bytes(r[0]["value"])) for r in info["subject"]["rdnSequence"]]
        self.assertEqual([n for n, _ in names], [s.oid for s in t.subject])
        csr_info = self.decode(encoder.encode(info), rfc2986.CertificationRequestInfo())
        self.assertEqual(str(csr_info["subjectPKInfo"]["algorithm"]["algorithm"]), "1.2.840.10045.2.1")
        curve = decoder.decode(bytes(csr_info["subjectPKInfo"]["algorithm"]["parameters"]))[0]
        self.assertEqual(str(curve), "1.3.132.0.34")  # P-384, as the RFC 9908 template says
        ext_req = info["attributes"][0]
        self.assertEqual(str(ext_req["attrType"]), "1.2.840.113549.1.9.14")
        exts = decoder.decode(bytes(ext_req["attrValues"][0]), asn1Spec=rfc5280.Extensions())[0]
        given = [(str(e["extnID"]), bytes(e["extnValue"])) for e in exts]
        self.assertEqual(given, [(e.oid, e.value) for e in t.extensions if e.value is not None])


class CsrAttrsTests(unittest.TestCase):
    def test_the_client_finds_the_template_next_to_the_classic_list(self):
        t = template_for(label())
        der = csrattrs.build(key_type="ec-p384", pop_linking=False, required_extensions=("subjectAltName",),
                             extra=(csrtemplate.rfc9908_attribute(t), csrtemplate.rfc8295_attribute(t)))
        hints = csrattrs.parse(der)
        self.assertEqual(hints.template, t)
        self.assertEqual(hints.key_type, "ec-p384")  # an older client reads the classic list as before

    def test_an_unreadable_template_is_ignored(self):
        bad = csrtemplate.Attribute({"type": "1.2.840.113549.1.9.16.2.61",
                                     "values": [csrtemplate.core.Any.load(b"\x02\x01\x05")]})
        hints = csrattrs.parse(csrattrs.build(key_type=None, pop_linking=False, extra=(bad,)))
        self.assertIsNone(hints.template)


class FillAndCheckTests(unittest.TestCase):
    def setUp(self):
        self.t = template_for(label())

    def test_a_csr_filled_from_the_template_follows_it(self):
        csr = sign(csrtemplate.fill(self.t, x509.Name.from_rfc4514_string("CN=dev-1,OU=ignored"),
                                    dns_names=("dev-1.example",)))
        self.assertEqual(csr.subject.rfc4514_string(), "CN=dev-1,OU=Devices,O=Example")
        self.assertIsNone(csrtemplate.contradiction(csr, self.t))
        ku = csr.extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(ku.critical)

    def test_the_client_says_what_the_template_asks_for(self):
        with self.assertRaises(ValueError) as e:
            csrtemplate.fill(self.t, x509.Name.from_rfc4514_string("O=x"), dns_names=("a.example",))
        self.assertIn("asks for CN", str(e.exception))
        with self.assertRaises(ValueError) as e:
            csrtemplate.fill(self.t, x509.Name.from_rfc4514_string("CN=a"))
        self.assertIn("subjectAltName", str(e.exception))

    def test_the_server_names_the_contradiction(self):
        san = x509.SubjectAlternativeName([x509.DNSName("a.example")])

        def csr(subject, key=None, *exts):
            b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name.from_rfc4514_string(subject))
            for ext, critical in exts:
                b = b.add_extension(ext, critical)
            return sign(b, key)
        cases = [
            (csr("CN=a,OU=Other", None, (san, False)), "CSR subject OU='Other' contradicts the CSR template's 'Devices'"),
            (csr("O=Example", None, (san, False)), "the CSR subject lacks CN, which the CSR template asks for"),
            (csr("CN=a"), "the CSR lacks the subjectAltName extension, which the CSR template asks for"),
            (csr("CN=a", ec.generate_private_key(ec.SECP256R1()), (san, False)),
             "CSR key type ec-p256 contradicts the CSR template's ec-p384"),
            (csr("CN=a", None, (san, False), (x509.KeyUsage(True, False, True, False, False, False, False, False,
                                                            False), True)),
             "CSR keyUsage contradicts the CSR template's value"),
        ]
        for request, reason in cases:
            self.assertEqual(csrtemplate.contradiction(request, self.t), reason)
        # leaving out what the CA sets anyway (OU, O, keyUsage) is no contradiction
        self.assertIsNone(csrtemplate.contradiction(csr("CN=a", None, (san, False)), self.t))

    def test_an_rsa_template_asks_for_that_size(self):
        t = CsrTemplate(None, "rsa2048", (ExtensionSlot(KU, True, None),))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name.from_rfc4514_string("CN=a"))
        self.assertEqual(csrtemplate.contradiction(request.sign(key, hashes.SHA256()), t),
                         "the CSR lacks the keyUsage extension, which the CSR template asks for")
