"""[distribution] settings: firmware anchors must be known trust anchors (or
"ca"), role certificates default to files next to the CA certificate."""
from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from estappliance.config import ConfigError, from_dict

BASE = {"token": {"module": "/usr/lib/softhsm/libsofthsm2.so", "label": "t"},
        "ca": {"cert_file": "../state/ca/ca.pem"}}


class DistributionConfigTests(unittest.TestCase):
    def test_defaults(self):
        c = from_dict(BASE, Path("/etc/est/estappliance.toml")).distribution
        self.assertEqual(c.firmware_anchors, ())
        self.assertEqual(c.tamp_cert_file, Path("/etc/state/ca/tamp-manager.pem"))
        self.assertEqual(c.firmware_signer_cert_file, Path("/etc/state/ca/firmware-signer.pem"))
        self.assertFalse(c.keep_symmetric_keys)

    def test_firmware_anchors_are_checked(self):
        raw = {**BASE, "trust_anchors": {"vendor": "vendor.pem"},
               "distribution": {"firmware_anchors": ["vendor", "ca"], "keep_symmetric_keys": True,
                                "tamp_cert_file": "tamp.pem"}}
        c = from_dict(raw, Path("/etc/est/estappliance.toml")).distribution
        self.assertEqual((c.firmware_anchors, c.keep_symmetric_keys, c.tamp_cert_file),
                         (("vendor", "ca"), True, Path("/etc/est/tamp.pem")))
        raw["distribution"] = {"firmware_anchors": ["nobody"]}
        err = self.assertRaises(ConfigError, from_dict, raw, Path("/etc/est/estappliance.toml"))
        self.assertIn("nobody", str(err))
