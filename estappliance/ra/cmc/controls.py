"""/fullcmc controls that ask for something other than a certificate:
revokeRequest (RFC 5272 6.11), getCert (6.9) and getCRL (6.10)."""
from __future__ import annotations

from typing import Any, Generator

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from twisted.internet import defer

from ...ca import CertificateAuthority
from ...ca.crl import CrlIssuer
from ...config import Label
from ...pki import cmc
from ...store import CertificateRecord, CrlRecord, Store, on_store_thread
from ..auth import OWN_CA
from .common import Refusal, Requester

# CRLReason (asn1crypto names) to the reason names estctl cert revoke takes.
REASONS = {
    "unspecified": "unspecified",
    "key_compromise": "keyCompromise",
    "ca_compromise": "cACompromise",
    "affiliation_changed": "affiliationChanged",
    "superseded": "superseded",
    "cessation_of_operation": "cessationOfOperation",
    "certificate_hold": "certificateHold",
    "privilege_withdrawn": "privilegeWithdrawn",
    "aa_compromise": "aACompromise",
}
# Identities proven by the requester itself, not by a certificate a device
# may hold for the client that enrolled it.
_ACCOUNT_METHODS = ("basic", "digest", "cmc-identity-proof")


class CmcControls:
    def __init__(self, ca: CertificateAuthority, store: Store, crls: CrlIssuer) -> None:
        self.ca = ca
        self.store = store
        self.crls = crls
        self._ca_name = asn1_x509.Name.load(ca.certificate.subject.public_bytes())

    # -- revokeRequest --------------------------------------------------------------

    @defer.inlineCallbacks
    def revoke(self, control: cmc.Control, ref: cmc.BodyPartRef, label: Label, requester: Requester
               ) -> Generator[defer.Deferred[Any], Any, tuple[cmc.Status, bool]]:
        """Fires with (Status, True if a certificate was revoked now)."""
        try:
            value = control.value
            if value is None:
                raise Refusal("bad_request", "revokeRequest without a value")
            if value["issuer_name"] != self._ca_name:
                raise Refusal("bad_cert_id", "revokeRequest names another issuer than this CA")
            serial = int(value["serial_number"].native)
            reason = REASONS.get(value["reason"].native)
            if reason is None:
                raise Refusal("bad_request", f"revocation reason {value['reason'].native} is not supported")
            record = yield on_store_thread(self.store.certificates.certificate, serial)
            if record is None:
                raise Refusal("bad_cert_id", f"no certificate with serial {serial:x} was issued here")
            if record.label.startswith("("):
                raise Refusal("bad_request", "the appliance's own certificates are revoked with estctl")
            if not self._may_revoke(record, label, requester):
                raise Refusal("bad_request", f"not authorized to revoke certificate {serial:x}")
            before = yield on_store_thread(self.store.certificates.revoke, serial, reason)
        except Refusal as e:
            return e.status_for((ref,)), False
        if before.revoked:
            return cmc.Status("success", (ref,), f"certificate {serial:x} was already revoked"), False
        return cmc.Status("success", (ref,)), True

    @staticmethod
    def _may_revoke(record: CertificateRecord, label: Label, requester: Requester) -> bool:
        """The certificate itself signed the request (or authenticated the TLS
        session); the account that enrolled it asked with its own password or
        shared secret; or an RA whose label policy lets it revoke."""
        identity = requester.identity
        if requester.signer is not None and requester.signer.serial_number == record.serial:
            return True
        if (identity.method == "cert" and identity.anchor == OWN_CA and identity.certificate is not None
                and identity.certificate.serial_number == record.serial and not requester.is_ra):
            return True
        if identity.method in _ACCOUNT_METHODS and record.client == identity.name and not requester.vouched:
            return True
        return requester.is_ra and label.cmc_ra_revoke and record.label == label.name

    # -- getCert --------------------------------------------------------------------

    @defer.inlineCallbacks
    def get_cert(self, control: cmc.Control, ref: cmc.BodyPartRef, label: Label, requester: Requester
                 ) -> Generator[defer.Deferred[Any], Any, tuple[cmc.Status, x509.Certificate | None]]:
        """Fires with (Status, certificate or None)."""
        try:
            value = control.value
            if value is None:
                raise Refusal("bad_request", "getCert without a value")
            issuer = value["issuer_name"]
            if issuer.name != "directory_name" or issuer.chosen != self._ca_name:
                raise Refusal("bad_cert_id", "getCert names another issuer than this CA")
            serial = int(value["serial_number"].native)
            record = yield on_store_thread(self.store.certificates.certificate, serial)
            if record is None:
                raise Refusal("bad_cert_id", f"no certificate with serial {serial:x} was issued here")
            identity = requester.identity
            own = record.client == identity.name and not record.label.startswith("(")
            ra = requester.is_ra and record.label == label.name
            held = identity.certificate is not None and identity.certificate.serial_number == serial
            if not (own or ra or held):
                raise Refusal("bad_request", f"not authorized to fetch certificate {serial:x}")
        except Refusal as e:
            return e.status_for((ref,)), None
        return cmc.Status("success", (ref,)), x509.load_der_x509_certificate(record.der)

    # -- getCRL ---------------------------------------------------------------------

    @defer.inlineCallbacks
    def get_crl(self, control: cmc.Control, ref: cmc.BodyPartRef
                ) -> Generator[defer.Deferred[Any], Any, tuple[cmc.Status, bytes | None]]:
        """Fires with (Status, CRL DER or None): the current CRL."""
        try:
            value = control.value
            if value is None:
                raise Refusal("bad_request", "getCRL without a value")
            if value["issuer_name"] != self._ca_name:
                raise Refusal("bad_request", "no CRL from that issuer here")
        except Refusal as e:
            return e.status_for((ref,)), None
        record = yield self.current_crl()
        return cmc.Status("success", (ref,)), record.der

    def current_crl(self) -> defer.Deferred[CrlRecord | None]:
        """The current CRL; the issuer signs a new one first when a revocation
        is missing from it (so a revocation shows in the very next CRL)."""
        return self.crls.current("crl")
