"""RFC 5934 TAMP (pki.tamp, pki.asn1.rfc5934, rfc5914): every message we
build decodes with pyasn1-alt-modules and re-encodes byte for byte; what we
read back is what was built; the published samples parse; signatures and
malformed messages are refused."""
from __future__ import annotations

from asn1crypto import cms
from pyasn1_alt_modules import rfc5652, rfc5914 as p5914, rfc5934 as p5934
from twisted.trial import unittest

from estappliance.pki import signeddata, tamp

from .distribution_support import Asn1Check, certificate, vector

HW_TYPE = "1.3.6.1.4.1.99999.2.1"
SPECS = {
    "tamp_status_query": p5934.TAMPStatusQuery, "tamp_update": p5934.TAMPUpdate,
    "tamp_apex_update": p5934.TAMPApexUpdate, "tamp_community_update": p5934.TAMPCommunityUpdate,
    "tamp_sequence_adjust": p5934.SequenceNumberAdjust, "tamp_status_response": p5934.TAMPStatusResponse,
    "tamp_update_confirm": p5934.TAMPUpdateConfirm, "tamp_apex_update_confirm": p5934.TAMPApexUpdateConfirm,
    "tamp_community_update_confirm": p5934.TAMPCommunityUpdateConfirm,
    "tamp_sequence_adjust_confirm": p5934.SequenceNumberAdjustConfirm, "tamp_error": p5934.TAMPError,
}
OIDS = {
    "tamp_status_query": p5934.id_ct_TAMP_statusQuery, "tamp_update": p5934.id_ct_TAMP_update,
    "tamp_apex_update": p5934.id_ct_TAMP_apexUpdate, "tamp_community_update": p5934.id_ct_TAMP_communityUpdate,
    "tamp_sequence_adjust": p5934.id_ct_TAMP_seqNumAdjust,
    "tamp_status_response": p5934.id_ct_TAMP_statusResponse,
    "tamp_update_confirm": p5934.id_ct_TAMP_updateConfirm,
    "tamp_apex_update_confirm": p5934.id_ct_TAMP_apexUpdateConfirm,
    "tamp_community_update_confirm": p5934.id_ct_TAMP_communityUpdateConfirm,
    "tamp_sequence_adjust_confirm": p5934.id_ct_TAMP_seqNumAdjustConfirm, "tamp_error": p5934.id_ct_TAMP_error,
}


class TampTests(Asn1Check, unittest.TestCase):
    def setUp(self):
        self.manager = certificate("CN=TAMP manager")
        self.new_ta = tamp.TrustAnchor.from_cert(certificate("CN=New Anchor", ca=True)[1])
        self.old_ta = tamp.TrustAnchor.from_cert(certificate("CN=Old Anchor", ca=True)[1])
        self.ref = tamp.MsgRef(tamp.Target("hw_modules", hw_type=HW_TYPE, hw_serials=(b"SN-1", b"SN-2")), 1700000001)

    def messages(self):
        ref = self.ref
        return {
            "tamp_status_query": tamp.status_query(ref),
            "tamp_update": tamp.update(ref, [tamp.Change("add", self.new_ta), tamp.Change("remove", self.old_ta)]),
            "tamp_apex_update": tamp.apex_update(ref, self.new_ta, clear_trust_anchors=True, seq_number=4),
            "tamp_community_update": tamp.community_update(ref, add=["1.3.6.1.4.1.99999.5.1"],
                                                           remove=["1.3.6.1.4.1.99999.5.2"]),
            "tamp_sequence_adjust": tamp.sequence_adjust(tamp.MsgRef(tamp.Target(), 1700000009)),
            "tamp_status_response": tamp.status_response(ref, [self.new_ta, self.old_ta],
                                                         communities=["1.3.6.1.4.1.99999.5.1"],
                                                         seq_numbers={b"\x01" * 20: 1700000001}),
            "tamp_update_confirm": tamp.update_confirm(ref, [0, 25], anchors=[self.new_ta]),
            "tamp_apex_update_confirm": tamp.apex_update_confirm(ref, 0),
            "tamp_community_update_confirm": tamp.community_update_confirm(ref, 0,
                                                                           communities=["1.3.6.1.4.1.99999.5.1"]),
            "tamp_sequence_adjust_confirm": tamp.sequence_adjust_confirm(ref, 0),
            "tamp_error": tamp.error("tamp_update", 21, ref),
        }

    def test_every_message_decodes_independently_signed_and_unsigned(self):
        key, cert = self.manager
        for kind, value in self.messages().items():
            signed = tamp.sign(kind, value, key, cert, certificates=[cert])
            sd, decoded = self.signed_content(signed, OIDS[kind], SPECS[kind]())
            self.assertEqual(len(sd["signerInfos"]), 1, kind)
            ci = self.pyasn1(tamp.unsigned(kind, value), rfc5652.ContentInfo())
            self.assertEqual(ci["contentType"], OIDS[kind])
            self.pyasn1(bytes(ci["content"]), SPECS[kind]())

    def test_what_is_read_back_is_what_was_built(self):
        key, cert = self.manager
        for kind, value in self.messages().items():
            message = tamp.read(tamp.sign(kind, value, key, cert), require_signature=True)
            self.assertEqual((message.kind, message.signer), (kind, cert))
            expected_ref = self.ref if kind != "tamp_sequence_adjust" else tamp.MsgRef(tamp.Target(), 1700000009)
            self.assertEqual(message.ref, expected_ref, kind)
        confirm = tamp.read(tamp.unsigned("tamp_update_confirm", self.messages()["tamp_update_confirm"]))
        self.assertEqual(confirm.statuses, (0, 25))
        self.assertEqual([a.key_id for a in confirm.anchors], [self.new_ta.key_id])
        response = tamp.read(tamp.unsigned("tamp_status_response", self.messages()["tamp_status_response"]))
        self.assertEqual([a.title for a in response.anchors], ["CN=New Anchor", "CN=Old Anchor"])
        self.assertEqual(response.communities, ("1.3.6.1.4.1.99999.5.1",))
        error = tamp.read(tamp.unsigned("tamp_error", self.messages()["tamp_error"]))
        self.assertEqual((error.failed_type, error.statuses), ("tamp_update", (21,)))
        update = tamp.read(tamp.unsigned("tamp_update", self.messages()["tamp_update"]))
        self.assertEqual([(a, s) for a, s, _ in tamp.changes_of(update.value)],
                         [("add", self.new_ta.spki), ("remove", self.old_ta.spki)])

    def test_trust_anchor_update_add_is_explicitly_tagged(self):
        # [1] TrustAnchorChoice is a tagged CHOICE: explicit even in an IMPLICIT TAGS module.
        value = tamp.update(self.ref, [tamp.Change("add", self.new_ta)])
        decoded = self.pyasn1(value.dump(), p5934.TAMPUpdate())
        added = decoded["updates"][0]["add"]
        self.assertEqual(added.getName(), "certificate")
        self.pyasn1(self.new_ta.der, p5914.TrustAnchorChoice())

    def test_requests_must_be_signed_and_signatures_must_hold(self):
        unsigned = tamp.unsigned("tamp_update", self.messages()["tamp_update"])
        self.assertRaises(tamp.BadTamp, tamp.read, unsigned, require_signature=True)
        key, cert = self.manager
        signed = bytearray(tamp.sign("tamp_status_query", self.messages()["tamp_status_query"], key, cert))
        signed[-5] ^= 1
        self.assertRaises(tamp.BadTamp, tamp.read, bytes(signed))
        for bad in (b"", b"\x30\x03\x02\x01\x00", unsigned[:-4]):
            self.assertRaises(tamp.BadTamp, tamp.read, bad)
        not_tamp = signeddata.sign("data", b"x", key, cert)
        self.assertRaises(tamp.BadTamp, tamp.read, not_tamp)

    def test_targets(self):
        target = self.ref.target
        self.assertTrue(target.matches(HW_TYPE, b"SN-2"))
        self.assertFalse(target.matches(HW_TYPE, b"SN-3"))
        self.assertFalse(target.matches("1.2.3", b"SN-1"))
        self.assertTrue(tamp.Target().matches(None, None))
        every_serial = tamp.Target("hw_modules", hw_type=HW_TYPE)
        self.assertTrue(every_serial.matches(HW_TYPE, b"anything"))
        self.assertEqual(tamp.Target.from_asn1(every_serial.asn1()), every_serial)
        community = tamp.Target("communities", communities=("1.2.3.4",))
        self.assertTrue(community.matches(None, None, ("1.2.3.4",)))
        self.assertEqual(tamp.Target.from_asn1(community.asn1()), community)
        self.assertRaises(ValueError, tamp.MsgRef(tamp.Target(), -1).asn1)

    def test_media_types(self):
        self.assertEqual(tamp.media_type("tamp_apex_update"), "application/tamp-apex-update")
        self.assertEqual(tamp.kind_of_media_type("application/tamp-sequence-adjust-confirm"),
                         "tamp_sequence_adjust_confirm")
        self.assertEqual(tamp.kind_of_media_type("application/cms"), None)

    def test_published_rfc5934_samples(self):
        response = tamp.read(vector("rfc5934_tsr_pem_text.b64"))
        self.assertEqual(response.kind, "tamp_status_response")
        self.assertEqual(response.ref, tamp.MsgRef(tamp.Target(), 1568307071))
        self.assertEqual(len(response.anchors), 3)
        self.assertIsNotNone(response.signer)
        update = tamp.read(vector("rfc5934_tau_pem_text.b64"))
        self.assertEqual((update.kind, update.ref.seq_num), ("tamp_update", 1568307088))
        self.assertEqual([a for a, _, _ in tamp.changes_of(update.value)], ["remove"])
        der = vector("rfc5934_tau_pem_text.b64")
        self.assertEqual(cms.ContentInfo.load(der).dump(force=True), der)
