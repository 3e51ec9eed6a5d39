"""CMC messages (pki.cmc, pki.crmf, pki.asn1.rfc5272/rfc4211), pure: what we
build decodes with pyasn1-alt-modules byte for byte, what pyasn1-alt-modules
builds we read, proofs of possession and identity proofs hold or fail as
RFC 4211 and RFC 5272 say, and the published RFC 8295 sample parses."""
from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import random

from asn1crypto import core, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import char, univ
from pyasn1_alt_modules import rfc4211 as p4211
from pyasn1_alt_modules import rfc5652, rfc6402
from twisted.trial import unittest

from estappliance.client import make_csr
from estappliance.pki import cmc, crmf, signeddata
from estappliance.pki.asn1 import rfc4211, rfc5272

from . import support

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def key():
    return ec.generate_private_key(ec.SECP256R1())


def self_signed(k, name="CN=responder"):
    n = x509.Name.from_rfc4514_string(name)
    return (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(k.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW)
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
            .sign(k, hashes.SHA256()))


def ca_name():
    return asn1_x509.Name.build({"common_name": "Test CA"})


def pyasn1_round_trip(testcase, der: bytes, spec, open_types=True):
    return support.decode_exact(testcase, der, spec, open_types=open_types)


def full_request():
    """A PKIData with every control we act upon, two kinds of request and a nested message."""
    k1, k2 = key(), rsa.generate_private_key(public_exponent=65537, key_size=2048)
    inner = cmc.sign_request(cmc.pki_data([], [cmc.pkcs10_request(1, make_csr(k1, "CN=inner"))]), k1)
    pki = cmc.pki_data(
        [cmc.control(1, "transaction_id", 42), cmc.control(2, "sender_nonce", b"n" * 16),
         cmc.control(3, "identification", "alice"),
         cmc.control(4, "revoke_request", {"issuer_name": ca_name(), "serial_number": 0x1234,
                                           "reason": "key_compromise", "comment": "lost"}),
         cmc.control(5, "get_cert", {"issuer_name": asn1_x509.GeneralName(name="directory_name", value=ca_name()),
                                     "serial_number": 7}),
         cmc.control(6, "get_crl", {"issuer_name": ca_name()}),
         cmc.control(7, "query_pending", b"\0" * 7 + b"\x05")],
        [cmc.pkcs10_request(10, make_csr(k1, "CN=one", dns_names=("one.example",))),
         cmc.crmf_request(11, k2, x509.Name.from_rfc4514_string("CN=two"),
                          san=x509.SubjectAlternativeName([x509.DNSName("two.example")]))],
        nested=((20, inner),))
    return cmc.with_identity_proof(pki, 8, b"shared secret"), k1, k2


class RequestTests(unittest.TestCase):
    def test_what_we_build_decodes_with_pyasn1_byte_for_byte(self):
        pki, k1, _ = full_request()
        der = cmc.sign_request(pki, k1)
        info = pyasn1_round_trip(self, der, rfc5652.ContentInfo(), open_types=False)
        sd = pyasn1_round_trip(self, bytes(info["content"]), rfc5652.SignedData(), open_types=False)
        self.assertEqual(sd["encapContentInfo"]["eContentType"], rfc6402.id_cct_PKIData)
        self.assertEqual(sd["signerInfos"][0]["sid"].getName(), "subjectKeyIdentifier")
        self.assertEqual(bytes(sd["signerInfos"][0]["sid"]["subjectKeyIdentifier"]),
                         x509.SubjectKeyIdentifier.from_public_key(k1.public_key()).digest)
        self.assertFalse(sd["certificates"].isValue)  # the key being certified carries no certificate
        data = pyasn1_round_trip(self, bytes(sd["encapContentInfo"]["eContent"]), rfc6402.PKIData())
        controls = {int(c["bodyPartID"]): c for c in data["controlSequence"]}
        self.assertEqual(controls[1]["attrType"], rfc6402.id_cmc_transactionId)
        self.assertEqual(int(controls[1]["attrValues"][0]), 42)
        self.assertEqual(str(controls[3]["attrValues"][0]), "alice")
        revoke = controls[4]["attrValues"][0]
        self.assertEqual((int(revoke["serialNumber"]), int(revoke["reason"]), str(revoke["comment"])),
                         (0x1234, 1, "lost"))
        self.assertEqual(int(controls[5]["attrValues"][0]["serialNumber"]), 7)
        self.assertEqual(controls[8]["attrType"], rfc6402.id_cmc_identityProofV2)
        requests = data["reqSequence"]
        self.assertEqual(requests[0].getName(), "tcr")
        self.assertEqual(int(requests[0]["tcr"]["bodyPartID"]), 10)
        self.assertEqual(requests[1].getName(), "crm")
        self.assertEqual(int(requests[1]["crm"]["certReq"]["certReqId"]), 11)
        self.assertEqual(int(data["cmsSequence"][0]["bodyPartID"]), 20)
        self.assertEqual(data["cmsSequence"][0]["contentInfo"]["contentType"], rfc5652.id_signedData)

    def test_we_read_what_we_build(self):
        pki, k1, k2 = full_request()
        request = cmc.read_request(cmc.sign_request(pki, k1))
        self.assertTrue(request.signed)
        self.assertIsNone(request.signer)
        self.assertEqual(request.signer_key, k1.public_key())
        p = request.pki_data
        self.assertEqual([c.type for c in p.controls], ["transaction_id", "sender_nonce", "identification",
                                                        "revoke_request", "get_cert", "get_crl", "query_pending",
                                                        "identity_proof_v2"])
        self.assertEqual(p.control("transaction_id").value.native, 42)
        self.assertEqual(p.control("revoke_request").value["reason"].native, "key_compromise")
        one, two = p.requests
        self.assertEqual((one.kind, one.body_part_id, one.pop, one.problem), ("pkcs10", 10, "signature", None))
        self.assertEqual(one.san.get_values_for_type(x509.DNSName), ["one.example"])
        self.assertEqual((two.kind, two.body_part_id, two.pop, two.subject.rfc4514_string()),
                         ("crmf", 11, "signature", "CN=two"))
        self.assertEqual(two.public_key, k2.public_key())
        self.assertEqual(p.nested[0].body_part_id, 20)
        self.assertEqual(cmc.read_request(p.nested[0].der).pki_data.requests[0].subject.rfc4514_string(), "CN=inner")
        # Signed with a current certificate instead: the signer is that certificate.
        cert = self_signed(k2, "CN=current")
        renewal = cmc.read_request(cmc.sign_request(pki, k2, cert))
        self.assertEqual(renewal.signer, cert)
        self.assertEqual(renewal.certificates, (cert,))
        unsigned = cmc.read_request(cmc.unsigned_request(pki))
        self.assertFalse(unsigned.signed)
        self.assertEqual(len(unsigned.pki_data.requests), 2)

    def test_we_read_what_pyasn1_builds(self):
        k = key()
        csr_der = make_csr(k, "CN=from pyasn1").public_bytes(serialization.Encoding.DER)
        csr, _ = decoder.decode(csr_der, asn1Spec=rfc6402.CertificationRequest())
        data = rfc6402.PKIData()
        txid = rfc6402.TaggedAttribute()
        txid["bodyPartID"] = 1
        txid["attrType"] = rfc6402.id_cmc_transactionId
        txid["attrValues"].append(univ.Integer(99))
        ident = rfc6402.TaggedAttribute()
        ident["bodyPartID"] = 2
        ident["attrType"] = rfc6402.id_cmc_identification
        ident["attrValues"].append(char.UTF8String("bob"))
        data["controlSequence"].extend([txid, ident])
        tagged = rfc6402.TaggedRequest()
        tagged["tcr"]["bodyPartID"] = 3
        tagged["tcr"]["certificationRequest"] = csr
        crm, _ = decoder.decode(crmf.build(4, k, x509.Name.from_rfc4514_string("CN=crmf")).dump(),
                                asn1Spec=p4211.CertReqMsg())
        tagged_crm = rfc6402.TaggedRequest()
        crm_value = rfc6402.TaggedRequest().componentType.getTypeByPosition(1).clone()  # [1] IMPLICIT
        for name in ("certReq", "popo"):
            crm_value[name] = crm[name]
        tagged_crm["crm"] = crm_value
        data["reqSequence"].extend([tagged, tagged_crm])
        der = encoder.encode(data)
        p = cmc.read_pki_data(der)
        self.assertEqual([(c.type, c.value.native) for c in p.controls], [("transaction_id", 99),
                                                                          ("identification", "bob")])
        self.assertEqual([(r.body_part_id, r.kind, r.pop) for r in p.requests],
                         [(3, "pkcs10", "signature"), (4, "crmf", "signature")])
        self.assertEqual(p.req_sequence_der, encoder.encode(data["reqSequence"]))

    def test_an_unknown_control_with_any_value_is_read(self):
        k = key()
        pki = cmc.pki_data([cmc.control(2, "1.3.6.1.4.1.99999.1", asn1_x509.Name.build({"common_name": "x"}))],
                           [cmc.pkcs10_request(1, make_csr(k, "CN=x"))])
        request = cmc.read_request(cmc.sign_request(pki, k))
        self.assertEqual([c.type for c in request.pki_data.controls], ["1.3.6.1.4.1.99999.1"])

    def test_messages_we_refuse(self):
        k = key()
        good = cmc.pki_data([], [cmc.pkcs10_request(1, make_csr(k, "CN=x"))])

        def refused(der, fail_info="bad_request"):
            with self.assertRaises(cmc.BadCmcMessage) as caught:
                cmc.read_request(der)
            self.assertEqual(caught.exception.fail_info, fail_info)
            return caught.exception.reason

        refused(b"\x30\x03\x02\x01\x05")
        refused(b"garbage")
        self.assertIn("not a PKIData", refused(signeddata.sign("data", b"hello", k, self_signed(k))))
        self.assertIn("signature", refused(cmc.sign_request(good, key()), "bad_message_check"))
        tampered = bytearray(cmc.sign_request(good, k))
        tampered[tampered.find(b"\x0c\x01x") + 2] ^= 1  # the subject's "x"
        refused(bytes(tampered), "bad_message_check")
        duplicate = cmc.pki_data([cmc.control(1, "transaction_id", 1)], [cmc.pkcs10_request(1, make_csr(k, "CN=x"))])
        self.assertIn("used twice", refused(cmc.sign_request(duplicate, k)))
        too_big = cmc.pki_data([cmc.control(2 ** 32, "transaction_id", 1)])
        self.assertIn("out of range", refused(cmc.unsigned_request(too_big)))
        # a transactionId whose value is no INTEGER (built under another OID, then renamed)
        bad = cmc.control(1, "1.3.6.1.5.5.7.7.99", core.UTF8String("one")).dump().replace(b"\x07\x07\x63",
                                                                                          b"\x07\x07\x05")
        bad_value = cmc.pki_data([rfc5272.TaggedAttribute.load(bad)])
        self.assertIn("unreadable", refused(cmc.unsigned_request(bad_value)))
        detached = signeddata.sign(rfc5272.PKI_DATA, good, k, self_signed(k), detached=True)
        self.assertIn("detached", refused(detached))

    def test_damaged_requests_fail_as_cmc_errors_only(self):
        """Random byte damage: the reader says BadCmcMessage or reads it, never anything else."""
        pki, k1, _ = full_request()
        rnd = random.Random(7)
        for der in (cmc.sign_request(pki, k1), cmc.unsigned_request(pki)):
            for _ in range(300):
                damaged = bytearray(der)
                for _ in range(rnd.randint(1, 3)):
                    damaged[rnd.randrange(len(damaged))] = rnd.randrange(256)
                try:
                    cmc.read_request(bytes(damaged))
                except cmc.BadCmcMessage:
                    pass

    def test_a_pkcs10_with_an_unknown_version_is_a_bad_request(self):
        k = key()
        der = bytearray(make_csr(k, "CN=x").public_bytes(serialization.Encoding.DER))
        version_at = der.index(b"\x02\x01\x00")  # CertificationRequestInfo version 0
        der[version_at + 2] = 0x44
        p = cmc.read_pki_data(cmc.pki_data([], [cmc.pkcs10_request(1, bytes(der))]).dump())
        self.assertEqual(p.requests[0].problem.fail_info, "bad_request")

    def test_a_follow_up_may_be_signed_with_a_waiting_request_key(self):
        k = key()
        query = cmc.sign_request(cmc.pki_data([cmc.control(1, "query_pending", b"12345678")]), k)
        with self.assertRaises(cmc.BadCmcMessage):
            cmc.read_request(query)
        self.assertEqual(cmc.peek_pki_data(query).control("query_pending").value.native, b"12345678")
        self.assertEqual(cmc.read_request(query, [k.public_key()]).signer_key, k.public_key())
        self.assertIsNone(cmc.peek_pki_data(b"garbage"))


class ProofOfPossessionTests(unittest.TestCase):
    def read(self, msg) -> cmc.CertificationRequest:
        tagged = rfc5272.TaggedRequest(name="crm", value=rfc4211.CertReqMsg.load(msg.dump()))
        return cmc.read_pki_data(cmc.pki_data([], [tagged]).dump()).requests[0]

    def test_signature_pop_for_each_key_type(self):
        for k in (key(), ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate(),
                  rsa.generate_private_key(public_exponent=65537, key_size=2048)):
            req = self.read(crmf.build(1, k, x509.Name.from_rfc4514_string("CN=k")))
            self.assertEqual((req.pop, req.problem), ("signature", None))

    def test_broken_and_missing_pops(self):
        k = key()
        msg = crmf.build(1, k, x509.Name.from_rfc4514_string("CN=k"))
        broken = bytearray(msg.dump())
        broken[broken.find(b"\x0c\x01k") + 2] ^= 1  # the subject's "k"
        req = self.read(rfc4211.CertReqMsg.load(bytes(broken)))
        self.assertEqual(req.problem.fail_info, "pop_failed")
        self.assertEqual(req.public_key, k.public_key())  # kept: it may still have signed the message
        none = rfc4211.CertReqMsg({"cert_req": msg["cert_req"]})
        self.assertEqual(self.read(none).pop, "none")
        ra = rfc4211.CertReqMsg({"cert_req": msg["cert_req"],
                                 "popo": rfc4211.ProofOfPossession(name="ra_verified", value=None)})
        self.assertEqual(self.read(ra).pop, "ra_verified")
        no_key = rfc4211.CertReqMsg({"cert_req": {"cert_req_id": 1, "cert_template": {
            "subject": asn1_x509.Name.build({"common_name": "k"})}}})
        self.assertEqual(self.read(no_key).problem.reason, "CRMF template without a public key")

    def test_pop_over_poposk_input(self):
        """RFC 4211 4.1: with poposkInput the signature covers it, and its key must be the template's."""
        k = key()
        spki = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        cert_req = rfc4211.CertRequest({"cert_req_id": 1, "cert_template": {
            "public_key": keys.PublicKeyInfo.load(spki),
            "extensions": [{"extn_id": "subject_alt_name", "critical": False,
                            "extn_value": [asn1_x509.GeneralName(name="dns_name", value="x.example")]}]}})

        def with_input(signing_key, input_key):
            input_spki = input_key.public_key().public_bytes(serialization.Encoding.DER,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo)
            poposk_input = rfc4211.POPOSigningKeyInput({
                "auth_info": rfc4211.AuthInfo(name="sender", value=asn1_x509.GeneralName(
                    name="dns_name", value="x.example")),
                "public_key": keys.PublicKeyInfo.load(input_spki)})
            signature = signing_key.sign(poposk_input.dump(), ec.ECDSA(hashes.SHA256()))
            return rfc4211.CertReqMsg({"cert_req": cert_req, "popo": rfc4211.ProofOfPossession(
                name="signature", value={"poposk_input": poposk_input,
                                         "algorithm_identifier": {"algorithm": "sha256_ecdsa"},
                                         "signature": signature})})
        good = with_input(k, k)
        p4211_msg = decoder.decode(good.dump(), asn1Spec=p4211.CertReqMsg())[0]
        self.assertEqual(encoder.encode(p4211_msg), good.dump())
        req = self.read(good)
        self.assertEqual((req.pop, req.problem, req.san.get_values_for_type(x509.DNSName)),
                         ("signature", None, ["x.example"]))
        other = key()
        self.assertEqual(self.read(with_input(other, other)).problem.fail_info, "pop_failed")

    def test_a_pkcs10_without_a_valid_self_signature(self):
        k = key()
        der = bytearray(make_csr(k, "CN=x").public_bytes(serialization.Encoding.DER))
        der[-3] ^= 1
        p = cmc.read_pki_data(cmc.pki_data([], [cmc.pkcs10_request(1, bytes(der))]).dump())
        self.assertEqual(p.requests[0].problem.fail_info, "pop_failed")
        with self.assertRaises(cmc.BadCmcMessage):  # not even a CertificationRequest in ASN.1
            cmc.read_pki_data(cmc.pki_data([], [cmc.pkcs10_request(1, b"\x30\x03\x02\x01\x00")]).dump())


class IdentityProofTests(unittest.TestCase):
    def test_witness_is_hmac_keyed_with_the_hashed_secret_over_req_sequence(self):
        """RFC 5272 6.2.1, computed here with hashlib and hmac alone."""
        k = key()
        pki = cmc.pki_data([], [cmc.pkcs10_request(1, make_csr(k, "CN=x"))])
        for hash_name, mac_name in (("sha256", "sha256"), ("sha1", "sha1"), ("sha512", "sha384")):
            proven = cmc.with_identity_proof(pki, 2, b"secret!", hash_name=hash_name, mac_name=mac_name)
            p = cmc.read_pki_data(proven.dump())
            proof = cmc.identity_proof(p.control("identity_proof_v2"))
            expected = hmac.new(hashlib.new(hash_name, b"secret!").digest(), pki["req_sequence"].dump(),
                                mac_name).digest()
            self.assertEqual((proof.hash, proof.mac, proof.witness), (hash_name, mac_name, expected))
            self.assertEqual(p.req_sequence_der, pki["req_sequence"].dump())

    def test_version_1_and_unsupported_algorithms(self):
        v1 = cmc.read_pki_data(cmc.pki_data([cmc.control(1, "identity_proof", b"w" * 20)]).dump())
        self.assertEqual(cmc.identity_proof(v1.control("identity_proof")), cmc.IdentityProof("sha1", "sha1",
                                                                                             b"w" * 20))
        md5 = cmc.control(1, "identity_proof_v2", {"proof_alg_id": {"algorithm": "md5"},
                                                   "mac_alg_id": {"algorithm": "sha256"}, "witness": b"x"})
        p = cmc.read_pki_data(cmc.pki_data([md5]).dump())
        with self.assertRaises(cmc.BadCmcMessage) as caught:
            cmc.identity_proof(p.control("identity_proof_v2"))
        self.assertEqual(caught.exception.fail_info, "bad_alg")


class ResponseTests(unittest.TestCase):
    def test_response_decodes_with_pyasn1(self):
        when = NOW + datetime.timedelta(seconds=30)
        response = cmc.pki_response([
            cmc.Status("success", (1, 2)),
            cmc.Status("pending", ((10, 3),), "waiting", pend_token=b"\0" * 7 + b"\x09", pend_time=when),
            cmc.Status("failed", (4,), "no such certificate", "bad_cert_id"),
            cmc.Status("no_support", (5,), "orm"),
        ], transaction_id=42, recipient_nonce=b"r" * 16, sender_nonce=b"s" * 16)
        decoded = pyasn1_round_trip(self, response.dump(), rfc6402.PKIResponse())
        controls = decoded["controlSequence"]
        self.assertEqual([c["attrType"] for c in controls], [rfc6402.id_cmc_statusInfoV2] * 4 + [
            rfc6402.id_cmc_transactionId, rfc6402.id_cmc_recipientNonce, rfc6402.id_cmc_senderNonce])
        self.assertEqual(len({int(c["bodyPartID"]) for c in controls}), 7)
        ok, pending, failed, nosupport = (c["attrValues"][0] for c in controls[:4])
        self.assertEqual(int(ok["cMCStatus"]), 0)
        self.assertEqual([int(r["bodyPartID"]) for r in ok["bodyList"]], [1, 2])
        self.assertEqual(int(pending["cMCStatus"]), 3)
        self.assertEqual(list(map(int, pending["bodyList"][0]["bodyPartPath"])), [10, 3])
        self.assertEqual(bytes(pending["otherInfo"]["pendInfo"]["pendToken"]), b"\0" * 7 + b"\x09")
        self.assertEqual(pending["otherInfo"]["pendInfo"]["pendTime"].asDateTime, when)
        self.assertEqual((int(failed["cMCStatus"]), int(failed["otherInfo"]["failInfo"])), (2, 4))
        self.assertEqual(str(failed["statusString"]), "no such certificate")
        self.assertEqual(int(nosupport["cMCStatus"]), 4)
        self.assertEqual(int(controls[4]["attrValues"][0]), 42)

    def test_read_response_checks_the_signature(self):
        k = key()
        cert = self_signed(k)
        crl = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject).last_update(NOW)
               .next_update(NOW + datetime.timedelta(days=1)).sign(k, hashes.SHA256()))
        response = cmc.pki_response([cmc.Status("success", (1,))], transaction_id=5)
        der = signeddata.sign(rfc5272.PKI_RESPONSE, response, k, cert,
                              crls=[crl.public_bytes(serialization.Encoding.DER)])
        read = cmc.read_response(der)
        self.assertEqual((read.signer, read.transaction_id, read.crls), (cert, 5, (crl,)))
        self.assertEqual(read.status_for(1).status, "success")
        info = pyasn1_round_trip(self, der, rfc5652.ContentInfo(), open_types=False)
        sd = pyasn1_round_trip(self, bytes(info["content"]), rfc5652.SignedData(), open_types=False)
        self.assertEqual(len(sd["crls"]), 1)
        tampered = bytearray(der)
        tampered[der.find(response.dump()) + 12] ^= 1
        with self.assertRaises(cmc.BadCmcMessage) as caught:
            cmc.read_response(bytes(tampered))
        self.assertEqual(caught.exception.fail_info, "bad_message_check")


class PublishedSampleTests(unittest.TestCase):
    def test_rfc8295_appendix_b_template(self):
        """pyasn1-alt-modules' RFC 8295 sample: a pkcs7PDU attribute holding a
        reduced PKIData (only reqSequence) with one tcr. Its TaggedRequest
        reads; the reduced PKIData is no Full PKI Request."""
        der = support.pyasn1alt_vector("rfc8295_pem_text.b64")
        attribute, _ = decoder.decode(der, asn1Spec=rfc5652.Attribute())
        info, _ = decoder.decode(attribute["attrValues"][0], asn1Spec=rfc5652.ContentInfo())
        self.assertEqual(info["contentType"], rfc6402.id_cct_PKIData)
        reduced = bytes(info["content"])
        req_sequence = core.Sequence.load(reduced)[0].dump()
        tagged = rfc5272.ReqSequence.load(req_sequence)[0]
        self.assertEqual((tagged.name, tagged.chosen["body_part_id"].native), ("tcr", 0))
        csr = x509.load_der_x509_csr(tagged.chosen["certification_request"].dump())
        self.assertEqual(csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value, "Alice")
        self.assertIsInstance(csr.public_key(), ec.EllipticCurvePublicKey)
        self.assertEqual(csr.public_key().curve.name, "secp384r1")
        with self.assertRaises(cmc.BadCmcMessage):
            cmc.read_pki_data(reduced)


class BuilderTests(unittest.TestCase):
    def test_signing_with_rsa_and_ed25519_keys(self):
        for k in (rsa.generate_private_key(public_exponent=65537, key_size=2048), ed25519.Ed25519PrivateKey.generate()):
            pki = cmc.pki_data([cmc.control(1, "sender_nonce", os.urandom(16))],
                               [cmc.crmf_request(2, k, x509.Name.from_rfc4514_string("CN=k"))])
            request = cmc.read_request(cmc.sign_request(pki, k))
            self.assertEqual(request.signer_key, k.public_key())
