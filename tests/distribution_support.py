"""Helpers for the RFC 8295 distribution tests: small certificate
hierarchies made in software, and the independent pyasn1 decoding check."""
from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pyasn1_alt_modules import rfc5652

from .support import decode_exact, pyasn1alt_vector

NOW = datetime.datetime.now(datetime.timezone.utc)
vector = pyasn1alt_vector  # the published samples the distribution tests read


def certificate(name: str, key=None, *, issuer: tuple | None = None, ca: bool = False,
                days: int = 30, not_before: datetime.datetime | None = None):
    """(key, certificate): self-signed, or issued by ``issuer`` = (key, cert)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name.from_rfc4514_string(name)
    issuer_key, issuer_cert = issuer if issuer else (key, None)
    start = not_before or NOW - datetime.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return key, builder.sign(issuer_key, hashes.SHA256())


class Asn1Check:
    """Decode with pyasn1-alt-modules: no trailing bytes, byte-exact re-encoding."""

    def pyasn1(self, der: bytes, spec):
        return decode_exact(self, der, spec)

    def signed_content(self, der: bytes, content_type, spec):
        """ContentInfo(SignedData) -> (SignedData, decoded eContent), all checked."""
        ci = self.pyasn1(der, rfc5652.ContentInfo())
        self.assertEqual(ci["contentType"], rfc5652.id_signedData)
        sd = self.pyasn1(bytes(ci["content"]), rfc5652.SignedData())
        self.assertEqual(int(sd["version"]), 3)
        self.assertEqual(sd["encapContentInfo"]["eContentType"], content_type)
        econtent = bytes(sd["encapContentInfo"]["eContent"])
        return sd, (self.pyasn1(econtent, spec) if spec is not None else econtent)

    def signed_attr_types(self, sd) -> list:
        return [a["attrType"] for a in sd["signerInfos"][0]["signedAttrs"]]
