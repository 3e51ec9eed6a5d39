"""/fullcmc end to end through TLS on 127.0.0.1 with a real SoftHSM2 token:
every request kind, batches, renewal and re-key, revocation seen in the
next CRL, getCert and getCRL, pending with pendToken, identity proofs, RAs
relaying devices' requests, and each failure with its CMCFailInfo. Every
response the tests receive is decoded by pyasn1-alt-modules (rfc5652 and
rfc6402, re-encoded byte for byte); one is verified by openssl cms."""
from __future__ import annotations

import base64
import contextlib
import datetime
import io
import os
import random
from pathlib import Path

from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyasn1.codec.der import decoder, encoder
from pyasn1_alt_modules import rfc5652, rfc6402
from twisted.internet import defer
from twisted.trial import unittest

from estappliance.ca import IssueRequest
from estappliance.client import BasicAuth, EstClient, HttpsConnection, make_csr, new_key
from estappliance.client.cmc import CertRequestSpec, CmcFailed, FullCmcClient
from estappliance.config import Profile
from estappliance.pki import cmc, crmf
from estappliance.pki.asn1 import rfc4211, rfc5272
from estappliance.pki.encoding import decode_body
from estappliance.ca import identity_proofs
from estappliance.store import on_store_thread
from estappliance.token import on_token_thread

from . import support

PASSWORD = "correct horse"
SECRET = b"out-of-band secret 1"
CMC_TYPE = "application/pkcs7-mime; smime-type=CMC-request"
RA_PROFILE = Profile(name="ra", validity_days=30, key_types=("ec-p256",), key_usage=("digitalSignature",),
                     extended_key_usage=("clientAuth", "cmcRA"), copy_san=False)
PLAIN_PROFILE = Profile(name="plain", validity_days=30, key_types=("ec-p256",), key_usage=("digitalSignature",),
                        extended_key_usage=("clientAuth",), copy_san=False)


def decode_independently(testcase, der: bytes):
    """pyasn1-alt-modules: ContentInfo, SignedData and the PKIResponse decode
    with nothing left over and re-encode to the same bytes."""
    info, rest = decoder.decode(der, asn1Spec=rfc5652.ContentInfo())
    testcase.assertEqual((rest, encoder.encode(info)), (b"", der))
    testcase.assertEqual(info["contentType"], rfc5652.id_signedData)
    sd, rest = decoder.decode(info["content"], asn1Spec=rfc5652.SignedData())
    testcase.assertEqual(rest, b"")
    testcase.assertEqual(sd["encapContentInfo"]["eContentType"], rfc6402.id_cct_PKIResponse)
    content = bytes(sd["encapContentInfo"]["eContent"])
    response, rest = decoder.decode(content, asn1Spec=rfc6402.PKIResponse(), decodeOpenTypes=True)
    testcase.assertEqual((rest, encoder.encode(response)), (b"", content))
    return response


class FullCmcTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.server = yield support.start_server(self, labels={
            "manual": {"approval": "manual"},
            "open": {"fullcmc_unsigned": True},
            "ra": {"approval": "manual", "cmc_ra_revoke": True, "cmc_ra_approval": "auto",
                   "cmc_ra_subjects": ["CN=Listed RA,O=Example"]},
            "certonly": {"auth": ["cert"]},
            "p384only": {"profile": "p384"},
            "manual-ra": {"approval": "manual"},
            "linked": {"pop_linking": True},
        }, profiles={"p384": {"key_types": ["ec-p384"]}})
        yield self.server.add_client("alice", PASSWORD, labels=("*",))
        yield self.server.add_client("bob", PASSWORD, labels=("default",))
        self.anchors = [self.server.ca_cert]

    # -- helpers ----------------------------------------------------------------------

    def est(self, **kw) -> EstClient:
        kw.setdefault("anchors", self.anchors)
        return EstClient(self.server.url, **kw)

    def cmc_client(self, user="alice", label=None, **kw) -> FullCmcClient:
        auth = BasicAuth(user, PASSWORD) if user else None
        est = self.est(auth=auth, label=label, client_cert=kw.pop("client_cert", None),
                       client_key=kw.pop("client_key", None))
        self.addCleanup(est.close)
        client = FullCmcClient(est, self.anchors, sleep=lambda s: None, **kw)
        post = client.post

        def post_and_decode(der):
            answer = post(der)
            decode_independently(self, answer.der)
            return answer
        client.post = post_and_decode
        return client

    def post_raw(self, der: bytes, user="alice", label=None, content_type=CMC_TYPE, body=None):
        """One raw exchange: (HttpResponse, decoded PKIResponse or None)."""
        path = f"/.well-known/est/{label + '/' if label else ''}fullcmc"

        def go():
            conn = HttpsConnection("127.0.0.1", self.server.port, anchors=self.anchors)
            headers = {"Content-Type": content_type}
            if user:
                headers["Authorization"] = BasicAuth(user, PASSWORD).header()
            try:
                return conn.request("POST", path, headers, base64.encodebytes(der) if body is None else body)
            finally:
                conn.close()
        d = support.in_thread(go)

        def decoded(resp):
            if (resp.header("content-type") or "").startswith("application/pkcs7-mime"):
                der_out = decode_body(resp.body)
                decode_independently(self, der_out)
                return resp, cmc.read_response(der_out)
            return resp, None
        return d.addCallback(decoded)

    def issue_direct(self, profile, subject: str, client: str, label="default"):
        """A certificate straight from the CA (an RA's, or a device's)."""
        key = new_key("ec-p256")
        d = self.server.appliance.ca.issue(IssueRequest(
            subject=x509.Name.from_rfc4514_string(subject), public_key=key.public_key(), san=None, profile=profile,
            label=label, client=client))
        return d.addCallback(lambda cert: (cert, key))

    @staticmethod
    def csr_request(n, subject="CN=device", key=None, **kw):
        key = key or new_key("ec-p256")
        return key, cmc.pkcs10_request(n, make_csr(key, subject, **kw))

    # -- enrollment ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_pkcs10_enroll_self_signed_with_basic_auth(self):
        key = new_key("ec-p256")
        client = self.cmc_client()
        result = yield support.in_thread(client.enroll, [CertRequestSpec(key, "CN=cmc-device-1,O=Example",
                                                                           ("cmc-1.example",))])
        self.assertEqual(result.failures, {})
        cert = result.certificates[1]
        self.assertEqual(cert.subject.rfc4514_string(), "CN=cmc-device-1,O=Example")
        self.assertEqual(cert.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo),
                         key.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
        cert.verify_directly_issued_by(self.server.ca_cert)
        record = yield on_store_thread(self.server.store.certificates.certificate, cert.serial_number)
        self.assertEqual((record.client, record.label), ("alice", "default"))

    @defer.inlineCallbacks
    def test_crmf_enroll_answers_with_status_certificate_and_echoes(self):
        key = new_key("ec-p384")
        txid, nonce = 77, os.urandom(16)
        pki = cmc.pki_data([cmc.control(1, "transaction_id", txid), cmc.control(2, "sender_nonce", nonce),
                            cmc.control(3, "data_return", b"opaque to the CA")],
                           [cmc.crmf_request(5, key, x509.Name.from_rfc4514_string("CN=crmf-device"),
                                             san=x509.SubjectAlternativeName([x509.DNSName("crmf.example")]))])
        resp, answer = yield self.post_raw(cmc.sign_request(pki, key))
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-type"), "application/pkcs7-mime; smime-type=CMC-response")
        self.assertEqual(resp.header("content-transfer-encoding"), "base64")
        self.assertEqual([(s.status, s.body_list) for s in answer.statuses], [("success", (5,))])
        self.assertEqual((answer.transaction_id, answer.recipient_nonce), (txid, nonce))
        self.assertEqual(len(answer.sender_nonce), 16)
        issued = [c for c in answer.certificates if c.subject.rfc4514_string() == "CN=crmf-device"]
        self.assertEqual(len(issued), 1)
        san = issued[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["crmf.example"])
        self.assertEqual(answer.signer, self.server.appliance.content_signer.certificate)
        self.assertIn(self.server.ca_cert, answer.certificates)
        # RFC 5272 6.4: dataReturn comes back as it was sent.
        response = decode_independently(self, decode_body(resp.body))
        returned = [bytes(c["attrValues"][0]) for c in response["controlSequence"]
                    if c["attrType"] == rfc6402.id_cmc_dataReturn]
        self.assertEqual(returned, [b"opaque to the CA"])

    @defer.inlineCallbacks
    def test_batch_is_answered_body_part_by_body_part(self):
        k1, r1 = self.csr_request(1, "CN=batch-1")
        k2 = new_key("ec-p256")
        r2 = cmc.crmf_request(2, k2, x509.Name.from_rfc4514_string("CN=batch-2"))
        k3 = new_key("ec-p256")
        csr3 = bytearray(make_csr(k3, "CN=batch-3").public_bytes(serialization.Encoding.DER))
        csr3[-3] ^= 0x01  # a broken self-signature: no proof of possession
        r3 = cmc.pkcs10_request(3, bytes(csr3))
        k4 = new_key("ec-p256")
        r4 = cmc.crmf_request(4, k4, x509.Name([]))  # neither subject nor subjectAltName
        resp, answer = yield self.post_raw(cmc.sign_request(cmc.pki_data([], [r1, r2, r3, r4]), k1))
        self.assertEqual(resp.status, 200)
        self.assertEqual(answer.status_for(1).status, "success")
        self.assertEqual(answer.status_for(2).status, "success")
        self.assertEqual((answer.status_for(3).status, answer.status_for(3).fail_info), ("failed", "pop_failed"))
        self.assertEqual((answer.status_for(4).status, answer.status_for(4).fail_info), ("failed", "bad_request"))
        names = sorted(c.subject.rfc4514_string() for c in answer.certificates if c.issuer != c.subject
                       and c != self.server.appliance.content_signer.certificate)
        self.assertEqual(names, ["CN=batch-1", "CN=batch-2"])

    @defer.inlineCallbacks
    def test_renewal_and_rekey_signed_with_the_current_certificate(self):
        key1 = new_key("ec-p256")
        first = yield support.in_thread(self.cmc_client().enroll, [CertRequestSpec(key1, "CN=renew-me",
                                                                                      ("renew.example",))])
        cert1 = first.certificates[1]
        # Renewal: same key, signed with the current certificate, no TLS credentials at all.
        renewer = self.cmc_client(user=None, sign_key=key1, sign_cert=cert1)
        second = yield support.in_thread(renewer.enroll, [CertRequestSpec(key1, "CN=renew-me", ("renew.example",))])
        self.assertEqual(second.failures, {})
        cert2 = second.certificates[1]
        self.assertNotEqual(cert2.serial_number, cert1.serial_number)
        record = yield on_store_thread(self.server.store.certificates.certificate, cert2.serial_number)
        self.assertEqual((record.replaces, record.client), (cert1.serial_number, "alice"))
        # Re-key: a new key, the request signed with the renewed certificate.
        key3 = new_key("ec-p256")
        rekeyer = self.cmc_client(user=None, sign_key=key1, sign_cert=cert2)
        third = yield support.in_thread(rekeyer.enroll, [CertRequestSpec(key3, "CN=renew-me", ("renew.example",))])
        cert3 = third.certificates[1]
        self.assertEqual(cert3.public_key(), key3.public_key())
        record = yield on_store_thread(self.server.store.certificates.certificate, cert3.serial_number)
        self.assertEqual(record.replaces, cert2.serial_number)
        # The subjectAltName of a renewal must stay.
        changed = yield support.in_thread(rekeyer.enroll, [CertRequestSpec(key3, "CN=renew-me", ("other.example",))])
        self.assertEqual(changed.failures[1].fail_info, "bad_request")
        self.assertIn("subjectAltName", changed.failures[1].status_string)

    @defer.inlineCallbacks
    def test_revocation_is_in_the_crl_of_the_same_answer_and_the_next(self):
        key = new_key("ec-p256")
        done = yield support.in_thread(self.cmc_client().enroll, [CertRequestSpec(key, "CN=to-revoke")])
        cert = done.certificates[1]
        holder = self.cmc_client(user=None, sign_key=key, sign_cert=cert)
        ca = asn1_x509.Name.load(self.server.ca_cert.subject.public_bytes())
        answer = yield support.in_thread(holder.exchange, [
            cmc.control(1, "revoke_request", {"issuer_name": ca, "serial_number": cert.serial_number,
                                              "reason": "key_compromise", "comment": "lost"}),
            cmc.control(2, "get_crl", {"issuer_name": ca})])
        self.assertEqual(answer.http_status, 200)
        self.assertEqual([(s.status, s.body_list) for s in answer.response.statuses], [("success", (1, 2))])
        crl = answer.response.crls[0]
        crl.is_signature_valid(self.server.ca_cert.public_key()) or self.fail("CRL signature")
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        self.assertIsNotNone(entry)
        self.assertEqual(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason,
                         x509.ReasonFlags.key_compromise)
        record = yield on_store_thread(self.server.store.certificates.certificate, cert.serial_number)
        self.assertEqual((record.status, record.revocation_reason), ("revoked", "keyCompromise"))
        latest = yield self.server.appliance.crls.current("crl")
        self.assertIsNotNone(x509.load_der_x509_crl(latest.der).get_revoked_certificate_by_serial_number(
            cert.serial_number))
        # A revoked certificate no longer speaks for anyone.
        again = self.cmc_client(user=None, sign_key=key, sign_cert=cert)
        failure = yield self.assertFailure(support.in_thread(again.revoke, self.server.ca_cert.subject,
                                                             cert.serial_number), CmcFailed)
        self.assertEqual((failure.status, failure.answer.response.statuses[0].fail_info), (401, "bad_identity"))

    @defer.inlineCallbacks
    def test_revocation_rights(self):
        done = yield support.in_thread(self.cmc_client(label="open").enroll,
                                       [CertRequestSpec(new_key("ec-p256"), "CN=alices-device")])
        serial = done.certificates[1].serial_number
        issuer = self.server.ca_cert.subject
        # bob may not revoke alice's certificate, nor fetch it.
        yield self.server.add_client("bob-open", PASSWORD, labels=("open",))
        bob = self.cmc_client(user="bob-open", label="open", unsigned=True)
        failure = yield self.assertFailure(support.in_thread(bob.revoke, issuer, serial), CmcFailed)
        self.assertEqual(failure.answer.response.statuses[0].fail_info, "bad_request")
        failure = yield self.assertFailure(support.in_thread(bob.get_cert, issuer, serial), CmcFailed)
        self.assertIn("not authorized", failure.answer.response.statuses[0].status_string)
        unknown = yield self.assertFailure(support.in_thread(bob.revoke, issuer, 0x1234), CmcFailed)
        self.assertEqual(unknown.answer.response.statuses[0].fail_info, "bad_cert_id")
        # alice, with her password, may (unsigned requests are allowed under "open").
        alice = self.cmc_client(label="open", unsigned=True)
        fetched = yield support.in_thread(alice.get_cert, issuer, serial)
        self.assertEqual(fetched, done.certificates[1])
        status = yield support.in_thread(alice.revoke, issuer, serial, "superseded")
        self.assertIsNone(status.status_string)
        status = yield support.in_thread(alice.revoke, issuer, serial, "superseded")
        self.assertIn("already revoked", status.status_string)
        crl = yield support.in_thread(alice.get_crl, issuer)
        self.assertIsNotNone(crl.get_revoked_certificate_by_serial_number(serial))

    @defer.inlineCallbacks
    def test_proof_of_possession_linking_to_the_tls_session(self):
        """RFC 7030 3.5: a failed or missing link is CMCFailInfo popFailed."""
        client = self.cmc_client(label="linked")

        def enroll(spec, link):
            binding = client.est.channel_binding() if link else None
            return client.enroll([spec], challenge_password=binding)
        linked = yield support.in_thread(enroll, CertRequestSpec(new_key("ec-p256"), "CN=linked"), True)
        self.assertEqual(list(linked.certificates), [1])
        for spec in (CertRequestSpec(new_key("ec-p256"), "CN=unlinked"),
                     CertRequestSpec(new_key("ec-p256"), "CN=crmf", crmf=True)):
            refused = yield support.in_thread(enroll, spec, False)
            self.assertEqual(refused.failures[1].fail_info, "pop_failed")
        # A binding from another TLS session does not match.
        other = self.cmc_client(label="linked")
        stale = yield support.in_thread(other.est.channel_binding)
        refused = yield support.in_thread(lambda: client.enroll([CertRequestSpec(new_key("ec-p256"), "CN=stale")],
                                                                challenge_password=stale))
        self.assertEqual(refused.failures[1].fail_info, "pop_failed")
        self.assertIn("channel binding", refused.failures[1].status_string)

    # -- approval: pending, pendToken -------------------------------------------------------

    @defer.inlineCallbacks
    def test_pending_then_the_pend_token_brings_the_certificate(self):
        key = new_key("ec-p256")
        _, r1 = self.csr_request(1, "CN=waits", key=key)
        resp, answer = yield self.post_raw(cmc.sign_request(cmc.pki_data([], [r1]), key), label="manual")
        self.assertEqual(resp.status, 202)
        self.assertEqual(resp.header("retry-after"), "7")
        status = answer.status_for(1)
        self.assertEqual(status.status, "pending")
        self.assertEqual(len(status.pend_token), 8)
        self.assertGreater(status.pend_time, datetime.datetime.now(datetime.timezone.utc))
        waiting = yield on_store_thread(self.server.store.certificates.pending_requests)
        self.assertEqual([(p.subject, p.operation, p.client) for p in waiting], [("CN=waits", "fullcmc", "alice")])
        query = cmc.pki_data([cmc.control(9, "query_pending", status.pend_token)])
        # Still waiting: the same token again.
        resp, answer = yield self.post_raw(cmc.sign_request(query, key), label="manual")
        self.assertEqual((resp.status, answer.status_for(9).pend_token), (202, status.pend_token))
        # Someone else's query learns nothing.
        yield self.server.add_client("dave", PASSWORD, labels=("manual",))
        resp, answer = yield self.post_raw(cmc.sign_request(query, key), user="dave", label="manual")
        self.assertEqual((resp.status, answer.status_for(9).status_string),
                         (400, "no request of yours has this pendToken"))
        yield on_store_thread(self.server.store.certificates.decide_pending, waiting[0].id, True)
        resp, answer = yield self.post_raw(cmc.sign_request(query, key), label="manual")
        self.assertEqual((resp.status, answer.status_for(9).status), (200, "success"))
        cert = next(c for c in answer.certificates if c.subject.rfc4514_string() == "CN=waits")
        self.assertEqual(cert.public_key(), key.public_key())
        # Asked again (the token, or the original request): the same certificate.
        resp, again = yield self.post_raw(cmc.sign_request(cmc.pki_data([], [r1]), key), label="manual")
        self.assertIn(cert, again.certificates)
        self.assertEqual((yield self.server.count_certificates()), 3)  # TLS server, signer, this one

    @defer.inlineCallbacks
    def test_the_client_follows_pending_and_a_rejection_fails(self):
        approve_next = []

        def sleep(_seconds):
            for p in self.server.store.reader().certificates.pending_requests():
                approve_next.append(p.id)

        client = self.cmc_client(label="manual")
        client.sleep = sleep
        key = new_key("ec-p256")
        d = support.in_thread(client.enroll, [CertRequestSpec(key, "CN=rejected-one")], max_polls=1)
        result = yield d
        self.assertEqual(result.failures[1].status, "pending")
        yield on_store_thread(self.server.store.certificates.decide_pending, approve_next[0], False)
        result = yield support.in_thread(client.enroll, [CertRequestSpec(key, "CN=rejected-one")], max_polls=0)
        self.assertEqual(result.failures[1].fail_info, "bad_request")
        self.assertIn("rejected", result.failures[1].status_string)

    # -- identity proof ----------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_identity_proof_v2_with_a_shared_secret_in_the_token(self):
        yield self.server.add_client("carol", PASSWORD, labels=("default",))
        yield on_token_thread(identity_proofs.install, self.server.appliance.token, self.server.store, "carol", SECRET)
        key = new_key("ec-p256")
        # No TLS credentials: identification + identityProofV2 authenticate.
        proving = self.cmc_client(user=None, secret=SECRET, identification="carol")
        result = yield support.in_thread(proving.enroll, [CertRequestSpec(key, "CN=carol-device")])
        record = yield on_store_thread(self.server.store.certificates.certificate, result.certificates[1].serial_number)
        self.assertEqual(record.client, "carol")
        # A wrong secret is refused with badIdentity.
        wrong = self.cmc_client(user=None, secret=b"not the secret", identification="carol")
        refused = yield support.in_thread(wrong.enroll, [CertRequestSpec(key, "CN=x")])
        self.assertEqual(refused.failures[1].fail_info, "bad_identity")
        # carol's password alone is not enough any more, together with the proof it is.
        resp, answer = yield self.post_raw(cmc.sign_request(cmc.pki_data([], [self.csr_request(1, key=key)[1]]),
                                                            key), user="carol")
        self.assertEqual((resp.status, answer.statuses[0].fail_info), (403, "bad_identity"))
        both = self.cmc_client(user="carol", secret=SECRET)
        result = yield support.in_thread(both.enroll, [CertRequestSpec(key, "CN=carol-device")])
        self.assertIn(1, result.certificates)
        # A secret that names nobody proves nothing.
        nobody = self.cmc_client(user=None, secret=SECRET, identification="mallory")
        refused = yield support.in_thread(nobody.enroll, [CertRequestSpec(key, "CN=x")])
        self.assertEqual(refused.failures[1].status_string, "identity proof does not verify")

    # -- registration authorities ----------------------------------------------------------

    @defer.inlineCallbacks
    def test_an_ra_relays_device_requests_nested_and_its_own(self):
        ra_cert, ra_key = yield self.issue_direct(RA_PROFILE, "CN=EKU RA,O=Example", "ra-1", label="ra")
        # A device's own Full PKI Request, signed with its new key.
        dev_key = new_key("ec-p256")
        device_request = cmc.sign_request(cmc.pki_data(
            [cmc.control(2, "transaction_id", 5)], [self.csr_request(1, "CN=device-a", key=dev_key)[1]]), dev_key)
        # The RA's own request for another device (CRMF, the RA verified the POP).
        other_key = new_key("ec-p256")
        crm = cmc.crmf_request(2, other_key, x509.Name.from_rfc4514_string("CN=device-b"))
        outer = cmc.pki_data([cmc.control(3, "transaction_id", 6)], [crm], nested=((10, device_request),))
        resp, answer = yield self.post_raw(cmc.sign_request(outer, ra_key, ra_cert), user=None, label="ra")
        # The label wants manual approval, but RA-vetted requests go through (cmc_ra_approval = auto).
        self.assertEqual(resp.status, 200)
        self.assertEqual([(s.status, s.body_list) for s in answer.statuses], [("success", (2, (10, 1)))])
        subjects = {c.subject.rfc4514_string(): c for c in answer.certificates}
        self.assertEqual(subjects["CN=device-a"].public_key(), dev_key.public_key())
        self.assertEqual(subjects["CN=device-b"].public_key(), other_key.public_key())
        record = yield on_store_thread(self.server.store.certificates.certificate, subjects["CN=device-a"].serial_number)
        self.assertEqual((record.client, record.label), ("ra-1", "ra"))
        # The RA may revoke the label's certificates (cmc_ra_revoke).
        ca = asn1_x509.Name.load(self.server.ca_cert.subject.public_bytes())
        revoke = cmc.pki_data([cmc.control(1, "revoke_request", {
            "issuer_name": ca, "serial_number": subjects["CN=device-b"].serial_number, "reason": "superseded"})])
        resp, answer = yield self.post_raw(cmc.sign_request(revoke, ra_key, ra_cert), user=None, label="ra")
        self.assertEqual((resp.status, answer.statuses[0].status), (200, "success"))

    @defer.inlineCallbacks
    def test_ra_by_listed_subject_raverified_and_renewal_of_a_device(self):
        ra_cert, ra_key = yield self.issue_direct(PLAIN_PROFILE, "CN=Listed RA,O=Example", "ra-2", label="ra")
        dev_cert, dev_key = yield self.issue_direct(PLAIN_PROFILE, "CN=device-c", "ra-2", label="ra")
        # The device re-keys: its request signed with its current certificate, relayed by the RA.
        new_dev_key = new_key("ec-p256")
        inner = cmc.sign_request(cmc.pki_data([], [self.csr_request(4, "CN=device-c", key=new_dev_key)[1]]),
                                 dev_key, dev_cert)
        # raVerified POP from the RA itself.
        signed = crmf.build(1, new_key("ec-p256"), x509.Name.from_rfc4514_string("CN=device-d"))
        ra_verified = rfc5272.TaggedRequest(name="crm", value=rfc4211.CertReqMsg({
            "cert_req": signed["cert_req"], "popo": rfc4211.ProofOfPossession(name="ra_verified", value=None)}))
        outer = cmc.pki_data([], [ra_verified], nested=((7, inner),))
        resp, answer = yield self.post_raw(cmc.sign_request(outer, ra_key, ra_cert), user=None, label="ra")
        self.assertEqual(resp.status, 200, answer.statuses)
        self.assertEqual(sorted(map(repr, answer.statuses[0].body_list)), sorted(map(repr, (1, (7, 4)))))
        renewed = next(c for c in answer.certificates if c.public_key() == new_dev_key.public_key())
        record = yield on_store_thread(self.server.store.certificates.certificate, renewed.serial_number)
        self.assertEqual(record.replaces, dev_cert.serial_number)
        # Not an RA: the same nesting is refused, raVerified too.
        plain_cert, plain_key = yield self.issue_direct(PLAIN_PROFILE, "CN=just a device", "alice", label="ra")
        resp, answer = yield self.post_raw(cmc.sign_request(outer, plain_key, plain_cert), user=None, label="ra")
        self.assertEqual(resp.status, 400)
        self.assertEqual(answer.status_for(1).fail_info, "pop_failed")
        self.assertIn("registration authority", answer.status_for(7).status_string)

    @defer.inlineCallbacks
    def test_an_ra_relayed_request_may_wait_and_the_ra_asks_with_the_pend_token(self):
        ra_cert, ra_key = yield self.issue_direct(RA_PROFILE, "CN=Waiting RA", "ra-3", label="manual-ra")
        dev_key = new_key("ec-p256")
        inner = cmc.sign_request(cmc.pki_data([], [self.csr_request(1, "CN=device-w", key=dev_key)[1]]), dev_key)
        outer = cmc.pki_data([], [], nested=((5, inner),))
        resp, answer = yield self.post_raw(cmc.sign_request(outer, ra_key, ra_cert), user=None, label="manual-ra")
        self.assertEqual(resp.status, 202)
        status = answer.status_for((5, 1))
        self.assertEqual(status.status, "pending")
        waiting = yield on_store_thread(self.server.store.certificates.pending_requests)
        self.assertEqual([(p.client, p.subject) for p in waiting], [("ra-3", "CN=device-w")])
        yield on_store_thread(self.server.store.certificates.decide_pending, waiting[0].id, True)
        query = cmc.pki_data([cmc.control(1, "query_pending", status.pend_token)])
        resp, answer = yield self.post_raw(cmc.sign_request(query, ra_key, ra_cert), user=None, label="manual-ra")
        self.assertEqual((resp.status, answer.status_for(1).status), (200, "success"))
        self.assertIn(dev_key.public_key(), [c.public_key() for c in answer.certificates])

    # -- failures: a CMC answer with the right CMCFailInfo, never a 500 -------------------------

    @defer.inlineCallbacks
    def test_malformed_outer_messages(self):
        for body, fail_info in ((b"this is not base64 at all!", "bad_request"),
                                (base64.encodebytes(b"\x30\x03\x02\x01\x05"), "bad_request")):
            resp, answer = yield self.post_raw(b"", body=body)
            self.assertEqual(resp.status, 400)
            self.assertEqual([(s.status, s.fail_info) for s in answer.statuses], [("failed", fail_info)])
        key = new_key("ec-p256")
        good = cmc.sign_request(cmc.pki_data([], [self.csr_request(1, key=key)[1]]), key)
        tampered = bytearray(good)
        tampered[good.find(b"device")] ^= 0x20
        resp, answer = yield self.post_raw(bytes(tampered))
        self.assertEqual((resp.status, answer.statuses[0].fail_info), (400, "bad_message_check"))
        # Signed by a key that is not the request's, with no certificate: nobody.
        other = cmc.sign_request(cmc.pki_data([], [self.csr_request(1)[1]]), new_key("ec-p256"))
        resp, answer = yield self.post_raw(other)
        self.assertEqual((resp.status, answer.statuses[0].fail_info), (400, "bad_message_check"))
        # Unsigned where the label does not allow it.
        resp, answer = yield self.post_raw(cmc.unsigned_request(cmc.pki_data([], [self.csr_request(1)[1]])))
        self.assertEqual((resp.status, answer.statuses[0].fail_info), (400, "bad_message_check"))
        # A wrong media type is an HTTP matter.
        resp, _ = yield self.post_raw(good, content_type="application/pkcs10")
        self.assertEqual((resp.status, resp.header("content-type")), (415, "text/plain; charset=utf-8"))

    @defer.inlineCallbacks
    def test_damaged_requests_never_get_a_500(self):
        key = new_key("ec-p256")
        ca = asn1_x509.Name.load(self.server.ca_cert.subject.public_bytes())
        pki = cmc.pki_data([cmc.control(1, "transaction_id", 3), cmc.control(2, "get_crl", {"issuer_name": ca}),
                            cmc.control(3, "revoke_request", {"issuer_name": ca, "serial_number": 5,
                                                              "reason": "superseded"})],
                           [self.csr_request(4, key=key)[1], cmc.crmf_request(5, key, x509.Name([]))])
        good = cmc.sign_request(pki, key)
        rnd = random.Random(3)
        for _ in range(40):
            damaged = bytearray(good)
            damaged[rnd.randrange(len(damaged))] = rnd.randrange(256)
            resp, answer = yield self.post_raw(bytes(damaged))
            self.assertIn(resp.status, (200, 400, 401, 403))
            self.assertIsNotNone(answer)  # always a CMC response

    @defer.inlineCallbacks
    def test_authentication_and_authorization(self):
        key = new_key("ec-p256")
        request = cmc.sign_request(cmc.pki_data([], [self.csr_request(1, key=key)[1]]), key)
        resp, answer = yield self.post_raw(request, user=None)
        self.assertEqual((resp.status, answer.statuses[0].fail_info), (401, "bad_identity"))
        self.assertIn("Basic", resp.header_values("www-authenticate")[0])
        resp, answer = yield self.post_raw(request, user="bob", label="manual")
        self.assertEqual((resp.status, answer.statuses[0].fail_info), (403, "bad_identity"))
        # Unsigned: fine under "open" for an authenticated client, not for nobody.
        unsigned = cmc.unsigned_request(cmc.pki_data([], [self.csr_request(1, "CN=unsigned")[1]]))
        resp, answer = yield self.post_raw(unsigned, label="open")
        self.assertEqual((resp.status, answer.statuses[0].status), (200, "success"))
        resp, answer = yield self.post_raw(unsigned, user=None, label="open")
        self.assertEqual(resp.status, 401)
        # A signer certificate where the label takes none, one from nowhere.
        cert, ckey = yield self.issue_direct(PLAIN_PROFILE, "CN=signer", "alice")
        signed = cmc.sign_request(cmc.pki_data([], [self.csr_request(1)[1]]), ckey, cert)
        resp, answer = yield self.post_raw(signed, user=None, label="certonly")
        self.assertEqual(resp.status, 200)
        stranger_key = new_key("ec-p256")
        stranger = x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.subject) \
            .public_key(stranger_key.public_key()).serial_number(5).not_valid_before(cert.not_valid_before_utc) \
            .not_valid_after(cert.not_valid_after_utc).sign(stranger_key, None if False else __import__(
                "cryptography.hazmat.primitives.hashes", fromlist=["SHA256"]).SHA256())
        resp, answer = yield self.post_raw(cmc.sign_request(cmc.pki_data([], [self.csr_request(1)[1]]),
                                                            stranger_key, stranger), user=None)
        self.assertEqual((resp.status, answer.statuses[0].fail_info), (401, "bad_identity"))

    @defer.inlineCallbacks
    def test_what_is_not_supported_fails_whole_or_per_part(self):
        key, r1 = self.csr_request(1)
        unknown = cmc.pki_data([cmc.control(2, "1.3.6.1.4.1.99999.1", asn1_x509.Name.build({"common_name": "x"}))],
                               [r1])
        resp, answer = yield self.post_raw(cmc.sign_request(unknown, key))
        self.assertEqual(resp.status, 400)
        self.assertEqual(answer.statuses[0].body_list, (2, 1))
        self.assertIn("not supported", answer.statuses[0].status_string)
        self.assertEqual((yield self.server.count_certificates()), 2)  # nothing issued
        # Duplicate bodyPartIDs: the message is malformed.
        dup = cmc.pki_data([cmc.control(1, "transaction_id", 1)], [r1])
        resp, answer = yield self.post_raw(cmc.sign_request(dup, key))
        self.assertEqual((resp.status, answer.statuses[0].fail_info), (400, "bad_request"))
        self.assertIn("used twice", answer.statuses[0].status_string)
        # A key type the profile does not take: badAlg.
        resp, answer = yield self.post_raw(cmc.sign_request(cmc.pki_data([], [r1]), key), label="p384only")
        self.assertEqual((resp.status, answer.status_for(1).fail_info), (400, "bad_alg"))
        # Another kind of request (orm): not supported.
        orm = rfc5272.TaggedRequest(name="orm", value={"body_part_id": 4, "request_message_type": "1.2.3.4",
                                                       "request_message_value": core.Integer(1)})
        resp, answer = yield self.post_raw(cmc.sign_request(cmc.pki_data([], [r1, orm]), key))
        self.assertEqual(resp.status, 200)
        self.assertEqual(answer.status_for(4).status, "no_support")

    # -- interop: openssl ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_openssl_verifies_the_response_and_signs_a_request_we_accept(self):
        if not support.have_tool("openssl"):
            raise unittest.SkipTest("openssl not installed")
        tmp = Path(self.mktemp())
        tmp.mkdir()
        (tmp / "ca.pem").write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        key = new_key("ec-p256")
        resp, answer = yield self.post_raw(cmc.sign_request(cmc.pki_data([], [self.csr_request(1, key=key)[1]]), key))
        (tmp / "response.der").write_bytes(decode_body(resp.body))
        out = yield support.run_tool("openssl", "cms", "-verify", "-inform", "DER", "-in", str(tmp / "response.der"),
                                     "-CAfile", str(tmp / "ca.pem"), "-binary", "-out", str(tmp / "content"))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual((tmp / "content").read_bytes(), answer.content)
        # openssl signs a renewal PKIData with the certificate just issued; we take it.
        cert = next(c for c in answer.certificates if c.public_key() == key.public_key())
        (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        (tmp / "pkidata.der").write_bytes(cmc.pki_data([cmc.control(7, "transaction_id", 99)],
                                                       [self.csr_request(1, "CN=device", key=key)[1]]).dump())
        out = yield support.run_tool("openssl", "cms", "-sign", "-binary", "-nodetach", "-outform", "DER",
                                     "-econtent_type", "1.3.6.1.5.5.7.12.2", "-in", str(tmp / "pkidata.der"),
                                     "-signer", str(tmp / "cert.pem"), "-inkey", str(tmp / "key.pem"),
                                     "-out", str(tmp / "request.der"))
        self.assertEqual(out.returncode, 0, out.stderr)
        resp, renewed = yield self.post_raw((tmp / "request.der").read_bytes(), user=None)
        self.assertEqual((resp.status, renewed.transaction_id), (200, 99))
        new = next(c for c in renewed.certificates if c.subject == cert.subject and c != cert)
        record = yield on_store_thread(self.server.store.certificates.certificate, new.serial_number)
        self.assertEqual(record.replaces, cert.serial_number)

    # -- the est command ------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_est_fullcmc_commands(self):
        from estappliance.client import cli
        tmp = Path(self.mktemp())
        tmp.mkdir()
        (tmp / "ca.pem").write_bytes(self.server.ca_cert.public_bytes(serialization.Encoding.PEM))
        (tmp / "pw").write_text(PASSWORD + "\n")
        common = ["--server", self.server.url, "--anchor", str(tmp / "ca.pem"), "--label", "open"]
        alice = [*common, "--user", "alice", "--password-file", str(tmp / "pw")]

        said = []

        def run(argv):
            err, out = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code = cli.main(argv)
            said.append(err.getvalue() + out.getvalue())
            return code

        def est(*argv):
            return support.in_thread(run, list(argv))
        code = yield est("fullcmc", "enroll", *alice, "--subject", "CN=cli-device", "--dns", "cli.example",
                         "--crmf", "--key-out", str(tmp / "k.pem"), "-o", str(tmp / "c.pem"))
        self.assertEqual(code, 0)
        cert = x509.load_pem_x509_certificate((tmp / "c.pem").read_bytes())
        serial = format(cert.serial_number, "x")
        # Renew with the certificate (signed with it, TLS client certificate too).
        holder = [*common, "--cert", str(tmp / "c.pem"), "--key", str(tmp / "k.pem")]
        code = yield est("fullcmc", "enroll", *holder, "--renew", "-o", str(tmp / "renewed.pem"))
        self.assertEqual(code, 0)
        renewed = x509.load_pem_x509_certificate((tmp / "renewed.pem").read_bytes())
        self.assertEqual((renewed.subject, renewed.public_key()), (cert.subject, cert.public_key()))
        code = yield est("fullcmc", "getcert", *holder, "--serial", serial, "-o", str(tmp / "got.pem"))
        self.assertEqual((code, x509.load_pem_x509_certificate((tmp / "got.pem").read_bytes())), (0, cert))
        code = yield est("fullcmc", "revoke", *alice, "--unsigned", "--serial", serial, "--reason", "superseded")
        self.assertEqual((code, said[-1]), (0, f"revoked {serial} (superseded)\n"))
        code = yield est("fullcmc", "getcrl", *alice, "--unsigned", "-o", str(tmp / "crl.pem"))
        crl = x509.load_pem_x509_crl((tmp / "crl.pem").read_bytes())
        self.assertEqual(code, 0)
        self.assertIsNotNone(crl.get_revoked_certificate_by_serial_number(cert.serial_number))
        # A refusal is a message and exit code 1.
        code = yield est("fullcmc", "revoke", *alice, "--unsigned", "--serial", "abcdef")
        self.assertEqual((code, said[-1]), (1, "est: fullcmc revoke: no certificate with serial abcdef was issued"
                                                " here\n"))
        self.assertEqual(said[0], f"enrolled: CN=cli-device serial {serial}\n")
