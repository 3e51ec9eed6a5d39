"""RFC 5914 Trust Anchor Format (TrustAnchorInfo, TrustAnchorChoice), in
asn1crypto style; TAMP (RFC 5934) carries these."""
from __future__ import annotations

from asn1crypto import core, keys, x509

from ..signeddata import register_content_type

OIDS = {
    "id-ct-trustAnchorList": "1.2.840.113549.1.9.16.1.34",
}


class CertPolicyFlags(core.BitString):
    _map = {0: "inhibit_policy_mapping", 1: "require_explicit_policy", 2: "inhibit_any_policy"}


class CertPathControls(core.Sequence):
    _fields = [
        ("ta_name", x509.Name),
        ("certificate", x509.Certificate, {"implicit": 0, "optional": True}),
        ("policy_set", x509.CertificatePolicies, {"implicit": 1, "optional": True}),
        ("policy_flags", CertPolicyFlags, {"implicit": 2, "optional": True}),
        ("name_constr", x509.NameConstraints, {"implicit": 3, "optional": True}),
        ("path_len_constraint", core.Integer, {"implicit": 4, "optional": True}),
    ]


class TrustAnchorInfoVersion(core.Integer):
    _map = {1: "v1"}


class TrustAnchorInfo(core.Sequence):
    _fields = [
        ("version", TrustAnchorInfoVersion, {"default": "v1"}),
        ("pub_key", keys.PublicKeyInfo),
        ("key_id", core.OctetString),
        ("ta_title", core.UTF8String, {"optional": True}),
        ("cert_path", CertPathControls, {"optional": True}),
        ("exts", x509.Extensions, {"explicit": 1, "optional": True}),
        ("ta_title_lang_tag", core.UTF8String, {"implicit": 2, "optional": True}),
    ]


class TrustAnchorChoice(core.Choice):
    _alternatives = [
        ("certificate", x509.Certificate),
        ("tbs_cert", x509.TbsCertificate, {"explicit": 1}),
        ("ta_info", TrustAnchorInfo, {"explicit": 2}),
    ]


class TrustAnchorList(core.SequenceOf):
    _child_spec = TrustAnchorChoice


register_content_type("trust_anchor_list", OIDS["id-ct-trustAnchorList"], TrustAnchorList)

__all__ = ["CertPathControls", "OIDS", "TrustAnchorChoice", "TrustAnchorInfo", "TrustAnchorList"]
