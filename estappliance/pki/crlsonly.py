"""The "crls-only" degenerate SignedData of RFC 8295 section 4: CRLs (and
ARLs) in ``crls [1]``, no content, no signers, no certificates. Like the
certs-only form of RFC 7030 4.1.3 it needs no signature of its own: each CRL
carries its issuer's."""
from __future__ import annotations

from typing import Sequence

from asn1crypto import cms, core
from asn1crypto import crl as asn1_crl

from .errors import PkiError
from .encoding import der


class NotCrlsOnly(PkiError):
    """The bytes are not a SignedData holding CRLs."""


def crls_only(crls: Sequence[bytes]) -> bytes:
    """DER ContentInfo(SignedData v1) holding the DER CRLs given (crls is a
    SET OF: DER puts them in the order of their encodings)."""
    if not crls:
        raise ValueError("a crls-only SignedData needs at least one CRL")
    sd = cms.SignedData({
        "version": "v1",  # RFC 5652 5.1: only X.509 CRLs, id-data, no signers
        "digest_algorithms": [],
        "encap_content_info": {"content_type": "data"},
        "crls": [cms.RevocationInfoChoice(name="crl", value=asn1_crl.CertificateList.load(crl)) for crl in crls],
        "signer_infos": [],
    })
    return der(cms.ContentInfo({"content_type": "signed_data", "content": sd}))


def read_crls_only(der: bytes) -> list[bytes]:
    """The DER CRLs of a degenerate SignedData (certificates in it are ignored)."""
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise NotCrlsOnly("not a SignedData")
        crls = info["content"]["crls"]
        if isinstance(crls, core.Void):
            raise NotCrlsOnly("the SignedData holds no CRLs")
        out = []
        for choice in crls:
            if choice.name != "crl":
                continue
            out.append(choice.chosen.dump())
            choice.chosen.native  # parse now: reject malformed CRLs here, not later
        return out
    except (ValueError, TypeError, KeyError) as e:
        if isinstance(e, NotCrlsOnly):
            raise
        raise NotCrlsOnly(f"unreadable SignedData: {e}") from None
