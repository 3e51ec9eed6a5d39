"""A label's profile as a CSR template (RFC 9908; RFC 8295 Appendix B):
what /csrattrs offers and what a CSR under that label may not contradict.

* subject: the RDNs of the profile's subject template (a fixed value as it
  is; one filled from the CSR, e.g. "CN={CN}", left to the client) and its
  required RDNs; absent when the profile asks nothing of the subject;
* key: the profile's key type when it allows exactly one (a template names
  one key; with a choice the classic attribute list names the preferred);
* extensions: subjectAltName left to the client when the profile requires
  it; keyUsage (critical) and extendedKeyUsage as the CA will set them.
"""
from __future__ import annotations

import re

from cryptography import x509

from ..config import Label, Profile
from ..pki import certs
from ..pki.csrtemplate import CsrTemplate, ExtensionSlot, RdnSlot, rdn_oid

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def _subject(profile: Profile) -> tuple[RdnSlot, ...] | None:
    slots: list[RdnSlot] = []
    if profile.subject_template is not None:
        for attr in x509.Name.from_rfc4514_string(profile.subject_template):
            value = str(attr.value)  # a parsed RFC 4514 string: str
            wanted = _PLACEHOLDER.findall(value)
            if not wanted:
                slots.append(RdnSlot(attr.oid.dotted_string, value))
                continue
            for name in wanted:
                if name != "client":  # the CA fills in the client's identity itself
                    slots.append(RdnSlot(rdn_oid(name), None))
    for name in profile.required_rdns:
        oid = rdn_oid(name)
        if not any(s.oid == oid for s in slots):
            slots.append(RdnSlot(oid, None))
    unique = list(dict.fromkeys(slots))
    return tuple(unique) or None


def _key_usage(profile: Profile) -> tuple[str, ...]:
    """The profile's key usages the CA will set for its one key type (as pki.certs.usable_key_usages)."""
    kind = profile.key_types[0]
    if kind.startswith("ec"):
        banned = {"keyEncipherment", "dataEncipherment"}
    elif kind.startswith("rsa"):
        banned = {"keyAgreement", "encipherOnly", "decipherOnly"}
    else:
        banned = {"keyEncipherment", "dataEncipherment", "keyAgreement", "encipherOnly", "decipherOnly"}
    return tuple(n for n in profile.key_usage if n not in banned)


def template_for(label: Label) -> CsrTemplate:
    profile = label.profile
    single = len(profile.key_types) == 1
    extensions: list[ExtensionSlot] = []
    if "subjectAltName" in profile.required_extensions:
        extensions.append(ExtensionSlot(x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string, False, None))
    usages = _key_usage(profile) if single else ()
    if usages:
        extensions.append(ExtensionSlot(x509.ExtensionOID.KEY_USAGE.dotted_string, True,
                                        certs.key_usage(usages).public_bytes()))
    if profile.extended_key_usage:
        extensions.append(ExtensionSlot(x509.ExtensionOID.EXTENDED_KEY_USAGE.dotted_string, False,
                                        certs.extended_key_usage(profile.extended_key_usage).public_bytes()))
    return CsrTemplate(_subject(profile), profile.key_types[0] if single else None, tuple(extensions))
