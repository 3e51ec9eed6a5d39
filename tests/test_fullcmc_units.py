"""/fullcmc policy pieces without TLS: the label options, pendTokens, how
statuses are grouped and which HTTP status goes with them, and that the
revocation reasons agree with estctl's."""
from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from estappliance.admin.cli import REVOCATION_REASONS
from estappliance.client import cmc_commands as client_fullcmc
from estappliance.config import ConfigError, from_dict
from estappliance.pki import cmc
from estappliance.ra.cmc import common as cmc_common
from estappliance.ra.cmc import controls as cmc_controls
from estappliance.ra.cmc import requests as fullcmc
from estappliance.ra.cmc.common import Outcome, Verdict


def label(**options):
    raw = {"token": {"module": "/nonexistent.so", "label": "t"}, "labels": {"x": options}}
    return from_dict(raw, Path("/tmp/estappliance.toml")).labels["x"]


class OptionTests(unittest.TestCase):
    def test_defaults_and_values(self):
        plain = label()
        self.assertEqual((plain.fullcmc_unsigned, plain.cmc_ra_eku, plain.cmc_ra_subjects, plain.cmc_ra_revoke,
                          plain.cmc_ra_approval), (False, True, (), False, "label"))
        set_ = label(fullcmc_unsigned=True, cmc_ra_eku=False, cmc_ra_subjects=["CN=RA 1,O=Example"],
                     cmc_ra_revoke=True, cmc_ra_approval="auto")
        self.assertEqual((set_.fullcmc_unsigned, set_.cmc_ra_eku, set_.cmc_ra_subjects, set_.cmc_ra_revoke,
                          set_.cmc_ra_approval), (True, False, ("CN=RA 1,O=Example",), True, "auto"))

    def test_bad_values_are_config_errors(self):
        with self.assertRaises(ConfigError) as caught:
            label(cmc_ra_approval="sometimes")
        self.assertIn("cmc_ra_approval", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            label(cmc_ra_subjects=["not a name"])
        self.assertIn("cmc_ra_subjects", str(caught.exception))


class StatusTests(unittest.TestCase):
    def test_pend_tokens_name_the_pending_request(self):
        token = cmc_common.pend_token(4711)
        self.assertEqual((len(token), cmc_common.pending_id(token)), (8, 4711))
        self.assertIsNone(cmc_common.pending_id(b"short"))
        self.assertIsNone(cmc_common.pending_id(None))
        status = cmc_common.pending_status(((3, 1),), 4711, 10)
        self.assertEqual((status.status, status.body_list, status.pend_token), ("pending", ((3, 1),), token))

    def test_plain_successes_share_one_status(self):
        grouped = fullcmc._grouped([cmc.Status("success", (1,)), cmc.Status("failed", (2,), "no", "bad_request"),
                                    cmc.Status("success", ((9, 3),)), cmc.Status("success", (4,), "already")])
        self.assertEqual([(s.status, s.body_list) for s in grouped],
                         [("success", (1, (9, 3))), ("failed", (2,)), ("success", (4,))])

    def test_verdict_follows_the_outcome(self):
        def verdict(*kinds):
            return fullcmc._verdict(Outcome(statuses=[cmc.Status(k, (n,)) for n, k in enumerate(kinds)]))
        self.assertEqual(verdict("success", "failed", "pending"), Verdict.SUCCESS)
        self.assertEqual(verdict("pending", "failed"), Verdict.PENDING)
        self.assertEqual(verdict("failed", "no_support"), Verdict.BAD_REQUEST)

    def test_the_web_layer_has_a_status_for_every_verdict(self):
        from estappliance.web.fullcmc_routes import HTTP_STATUS
        self.assertEqual(set(HTTP_STATUS), set(Verdict))
        self.assertEqual([HTTP_STATUS[v] for v in Verdict], [200, 202, 400, 401, 403])

    def test_revocation_reasons_agree_with_estctl(self):
        self.assertEqual(sorted(cmc_controls.REASONS.values()), sorted(REVOCATION_REASONS))
        self.assertEqual(sorted(client_fullcmc._CRL_REASON), sorted(REVOCATION_REASONS))
        self.assertEqual(sorted(client_fullcmc._CRL_REASON.values()), sorted(cmc_controls.REASONS))
