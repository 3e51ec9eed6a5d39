"""A label's certificate profile applied to a CSR: names, key, extensions.

Pure functions over cryptography objects; each refusal names the rule.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Protocol

from cryptography import x509

from ..config import Profile
from ..errors import MalformedRequest, PolicyRefused
from ..pki import csr as csrs

_SAN_TYPES = {"DNS": x509.DNSName, "IP": x509.IPAddress, "email": x509.RFC822Name,
              "URI": x509.UniformResourceIdentifier}
_EXTENSIONS = {"subjectAltName": x509.SubjectAlternativeName}


def attribute_names(attr: x509.NameAttribute[str | bytes]) -> set[str]:
    """The names a config may use for an RDN type: 'CN', 'commonName', '2.5.4.3'."""
    names = {attr.oid.dotted_string, attr.oid._name}
    try:
        names.add(attr.rfc4514_attribute_name)
    except AttributeError:
        pass
    return names


def load_checked(der: bytes, profile: Profile) -> x509.CertificateSigningRequest:
    """Parse a CSR and apply the profile's rules; raises on the first refusal."""
    try:
        csr = csrs.load_csr(der)
    except csrs.BadCSR as e:
        raise MalformedRequest(str(e)) from None
    if not csrs.signature_ok(csr):
        raise MalformedRequest("CSR signature does not verify (proof of possession failed)")
    key_type = csrs.key_type(csr.public_key())
    if key_type not in profile.key_types:
        raise PolicyRefused(f"key type {key_type} not allowed by profile {profile.name!r}"
                            f" (allowed: {', '.join(profile.key_types)})")
    check_requested_names(csr, profile)
    return csr


def check_requested_names(csr: x509.CertificateSigningRequest, profile: Profile) -> None:
    """The profile's rules on what a CSR asks for: subject, subjectAltName,
    required RDNs and extensions (its key is judged apart)."""
    san = csrs.requested_san(csr)
    if not len(csr.subject) and san is None:
        raise PolicyRefused("CSR has neither a subject nor a subjectAltName")
    for rdn in profile.required_rdns:
        if not any(rdn in attribute_names(a) for a in csr.subject):
            raise PolicyRefused(f"profile {profile.name!r} requires {rdn} in the subject")
    for ext in profile.required_extensions:
        try:
            csr.extensions.get_extension_for_class(_EXTENSIONS[ext])
        except x509.ExtensionNotFound:
            raise PolicyRefused(f"profile {profile.name!r} requires the {ext} extension") from None
    check_names(csr.subject, san, profile)


def check_names(subject: x509.Name, san: x509.SubjectAlternativeName | None, profile: Profile) -> None:
    if san is not None and profile.copy_san:
        check_san_forms(san)
    for key, pattern in profile.name_patterns:
        if key in _SAN_TYPES:
            values: list[str | bytes] = ([str(n.value) for n in san if isinstance(n, _SAN_TYPES[key])]
                                         if san is not None else [])
        else:
            values = [a.value for a in subject if key in attribute_names(a)]
        for value in values:
            if not isinstance(value, str) or not re.fullmatch(pattern, value):
                raise PolicyRefused(f"{key} {value!r} does not match the pattern of profile {profile.name!r}")


def check_san_forms(san: x509.SubjectAlternativeName) -> None:
    """Only the name forms a profile can judge (name_patterns) are copied
    into a certificate: an otherName (a Windows UPN, say), directoryName or
    registeredID would be certified unchecked; an IP is an address."""
    for name in san:
        if not isinstance(name, tuple(_SAN_TYPES.values())):
            raise PolicyRefused(f"subjectAltName {type(name).__name__} is not certified here"
                                f" (only {', '.join(_SAN_TYPES)})")
        if isinstance(name, x509.IPAddress) and not isinstance(name.value, (ipaddress.IPv4Address,
                                                                             ipaddress.IPv6Address)):
            raise PolicyRefused(f"subjectAltName IP {name.value} is a network, not an address")


class HasSubject(Protocol):
    @property
    def subject(self) -> x509.Name: ...


def subject_for(csr: HasSubject, profile: Profile, client: str) -> x509.Name:
    """The subject to issue: the CSR's, or the profile's template filled in."""
    if profile.subject_template is None:
        return csr.subject
    values: dict[str, str | bytes] = {"client": client}
    for attr in csr.subject:
        for name in attribute_names(attr):
            values.setdefault(name, attr.value)
    out = []
    for attr in x509.Name.from_rfc4514_string(profile.subject_template):
        try:
            text = str(attr.value).format_map(values)  # a parsed RFC 4514 string: str
        except (KeyError, ValueError) as e:
            raise PolicyRefused(f"profile {profile.name!r} needs {e} in the CSR subject") from None
        out.append(x509.NameAttribute(attr.oid, text))
    return x509.Name(out)
