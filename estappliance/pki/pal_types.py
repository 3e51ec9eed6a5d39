"""The RFC 8295 PAL package types (IANA "PAL Package Types", RFC 8295 2.1.1).

Each type names the path component (PC) its entry points to, its place in the
PAL's order of precedence (RFC 8295 2.3), whether it is a notification (size
0: the client must start a transaction or return something) and, for a
package that can be acknowledged, the type of the entry that asks for its
receipt or error.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import PkiError


@dataclass(frozen=True)
class PalType:
    code: str  # four digits, e.g. "0024"
    name: str  # the registry's spelling
    operation: str  # the PC the entry's URI points to, e.g. "symmetrickeys/return"
    tier: int  # RFC 8295 2.3 precedence: 1 cacerts/crls, 2 csrattrs, 3 enrollment, 4 the rest, 5 eecerts
    notification: bool  # size 0: asks the client to act, nothing to download
    receipt_type: str | None = None  # the entry that asks for this package's receipt or error

    @property
    def is_receipt_request(self) -> bool:
        return self.operation.endswith("/return")


def _t(code: str, name: str, operation: str, tier: int, notification: bool = False,
       receipt_type: str | None = None) -> PalType:
    return PalType(code, name, operation, tier, notification, receipt_type)


PAL_TYPES: dict[str, PalType] = {t.code: t for t in (
    _t("0001", "Additional PAL value present", "pal", 9, True),
    _t("0002", "X.509 CA certificate", "cacerts", 1),
    _t("0003", "X.509 EE certificate", "eecerts", 5),
    _t("0004", "X.509 ARL", "crls", 1),
    _t("0005", "X.509 CRL", "crls", 1),
    _t("0006", "Start DS certificate enrollment with CSR attribute", "csrattrs", 2, True),
    _t("0007", "Start DS certificate enrollment", "simpleenroll", 3, True),
    _t("0008", "DS certificate enrollment (success)", "simpleenroll", 3, True),
    _t("0009", "DS certificate enrollment (failure)", "simpleenroll", 3, True),
    _t("0010", "Start DS certificate re-enrollment", "simplereenroll", 3, True),
    _t("0011", "DS certificate re-enrollment (success)", "simplereenroll", 3, True),
    _t("0012", "DS certificate re-enrollment (failure)", "simplereenroll", 3, True),
    _t("0013", "Start KE certificate enrollment with CSR attribute", "csrattrs", 2, True),
    _t("0014", "Start KE certificate enrollment", "simpleenroll", 3, True),
    _t("0015", "KE certificate enrollment (success)", "simpleenroll", 3, True),
    _t("0016", "KE certificate enrollment (failure)", "simpleenroll", 3, True),
    _t("0017", "Start KE certificate re-enrollment", "simplereenroll", 3, True),
    _t("0018", "KE certificate re-enrollment (success)", "simplereenroll", 3, True),
    _t("0019", "KE certificate re-enrollment (failure)", "simplereenroll", 3, True),
    _t("0020", "Asymmetric Key Package (PKCS #8)", "serverkeygen", 3, False, "0023"),
    _t("0021", "Asymmetric Key Package (CMS)", "serverkeygen", 3, False, "0023"),
    _t("0022", "Asymmetric Key Package (PKCS #12)", "serverkeygen", 3, False, "0023"),
    _t("0023", "Asymmetric Key Package Receipt or Error", "serverkeygen/return", 3, True),
    _t("0024", "Symmetric Key Package", "symmetrickeys", 4, False, "0025"),
    _t("0025", "Symmetric Key Package Receipt or Error", "symmetrickeys/return", 4, True),
    _t("0026", "Firmware Package", "firmware", 4, False, "0027"),
    _t("0027", "Firmware Package Receipt or Error", "firmware/return", 4, True),
    _t("0028", "TAMP Status Query", "tamp", 4, False, "0029"),
    _t("0029", "TAMP Status Query Response or Error", "tamp/return", 4, True),
    _t("0030", "Trust Anchor Update", "tamp", 4, False, "0031"),
    _t("0031", "Trust Anchor Update Confirm or Error", "tamp/return", 4, True),
    _t("0032", "Apex Trust Anchor Update", "tamp", 4, False, "0033"),
    _t("0033", "Apex Trust Anchor Update Confirm or Error", "tamp/return", 4, True),
    _t("0034", "Community Update", "tamp", 4, False, "0035"),
    _t("0035", "Community Update Confirm or Error", "tamp/return", 4, True),
    _t("0036", "Sequence Number Adjust", "tamp", 4, False, "0037"),
    _t("0037", "Sequence Number Adjust Confirm or Error", "tamp/return", 4, True),
)}

# Named codes the rest of the code refers to.
NEXT_PAL = "0001"
CA_CERTIFICATES = "0002"
EE_CERTIFICATE = "0003"
ARL = "0004"
CRL = "0005"
SYMMETRIC_KEY = "0024"
FIRMWARE = "0026"
TAMP_TYPES = ("0028", "0030", "0032", "0034", "0036")

# Enrollment notifications by (operation, key use) -> (start, success, failure).
ENROLLMENT_TYPES = {
    ("simpleenroll", "DS"): ("0007", "0008", "0009"),
    ("simplereenroll", "DS"): ("0010", "0011", "0012"),
    ("simpleenroll", "KE"): ("0014", "0015", "0016"),
    ("simplereenroll", "KE"): ("0017", "0018", "0019"),
}
# Entries the server derives itself and never takes from the queue: the next-PAL
# pointer and the requests for receipts (raised from the package they follow).
DERIVED = frozenset({NEXT_PAL} | {t.receipt_type for t in PAL_TYPES.values() if t.receipt_type})


class UnknownPalType(PkiError):
    """Not a package type of the RFC 8295 registry."""


def pal_type(code: str) -> PalType:
    """The registry entry for a code given as "24", "0024" or 24."""
    text = str(code).strip()
    if text.isdigit() and len(text) <= 4:
        found = PAL_TYPES.get(text.zfill(4))
        if found is not None:
            return found
    raise UnknownPalType(f"{code!r} is not an RFC 8295 PAL package type (0001-0037)")


def types_for(operation: str) -> tuple[str, ...]:
    """The package types whose content a GET on ``operation`` serves."""
    return tuple(t.code for t in PAL_TYPES.values() if t.operation == operation and not t.notification)
