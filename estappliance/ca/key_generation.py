"""Keys made for a device (RFC 7030 4.4, RFC 8295 8): generated in the
token, certified, and delivered once in the form the RA chose.

The order of events is what keeps the token and the store honest:

1. the package is recorded (state ``generating``, with the token label the
   key is about to get) before the token makes the key;
2. the key pair is generated in the token: sensitive, extractable only by
   wrapping (``Token.export_private_key``);
3. the CA issues the certificate (durably recorded, as every issuance);
4. the key is wrapped out and packaged: plain PKCS#8, signed and enveloped
   (RFC 7030), a signed Encrypted Key Package (RFC 8295) or PKCS#12;
5. the key is destroyed in the token (or sealed non-extractable when the
   label escrows keys);
6. ``delivered`` is committed; only then does the answer leave.

Any failure on the way destroys the key, marks the package ``failed`` and
revokes a certificate already issued for it, so nothing half-made is left
usable or marked delivered. Keys a crash left behind are swept later.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Generator

from asn1crypto import cms
from cryptography import x509
from twisted.internet import defer, threads
from twisted.logger import Logger

from ..config import Label
from ..errors import EstError, TokenCannot, Unavailable
from ..pki import envelope, keypackages
from ..pki.certs import load_subject_public_key
from ..pki.asn1 import rfc5958
from ..store import Store, on_store_thread
from ..store.keygen_tables import KeyPackageRecord
from ..token import KEY_SPECS, Token, TokenRefused, on_token_thread
from ..token import symmetric
from ..token.policy import MechanismPolicy
from .authority import CertificateAuthority, IssueRequest
from .content import ContentSigner
from .shared_secrets import sealing_key_label

log = Logger()

FORMS = ("pkcs8", "enveloped", "encrypted-key-package", "pkcs12")
MEDIA_TYPES = {
    "pkcs8": "application/pkcs8",
    "enveloped": "application/pkcs7-mime; smime-type=server-generated-key",
    # RFC 7193: the layers from the outside in, then what they carry.
    "encrypted-key-package": 'application/cms; encapsulatingContent="encryptedKeyPkg, signedData";'
                             " innerContent=aKeyPackage",
    "pkcs12": "application/pkcs12",
}
# A key still 'generating' after this long belongs to a request that died.
ORPHAN_AFTER = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class KekProtection:
    """Encrypt to a symmetric KEK in the token (kekri)."""

    key_id: bytes
    token_label: str
    size: int


@dataclass(frozen=True)
class CertificateProtection:
    """Encrypt to the key of a certificate the client holds (ktri / kari)."""

    certificate: x509.Certificate
    key_id: bytes  # the AsymmetricDecryptKeyIdentifier, used as the rid SKI
    wrap_algorithm: str = "aes256_wrap"
    kdf_hash: str = "sha256"
    oaep_hash: str = "sha256"


@dataclass(frozen=True)
class KeyOrder:
    """What the RA decided: the key, its certificate, and how it travels."""

    label: Label
    client: str
    subject: x509.Name
    san: x509.SubjectAlternativeName | None
    key_type: str  # a KEY_SPECS name
    form: str  # one of FORMS
    protection: KekProtection | CertificateProtection | None = None
    cipher: str = "aes256_cbc"
    pkcs12_password: bytes | None = None
    replaces: int | None = None
    pending_id: int | None = None


@dataclass(frozen=True)
class DeliveredKey:
    pkg_id: bytes
    form: str
    media_type: str  # of the key part (or of the whole answer, for PKCS#12)
    key_der: bytes  # PKCS#8, ContentInfo(EnvelopedData | EncryptedKeyPackage) or PFX
    certificate: x509.Certificate


class ServerKeyGenerator:
    def __init__(self, token: Token, ca: CertificateAuthority, content_signer: ContentSigner, store: Store,
                 key_prefix: str) -> None:
        """``key_prefix`` namespaces this appliance's token labels (device
        keys, KEKs, the sealing key)."""
        self.token = token
        self.ca = ca
        self.content_signer = content_signer
        self.store = store
        self.key_prefix = key_prefix
        self._swept = False

    @property
    def sealing_key_label(self) -> str:
        return sealing_key_label(self.key_prefix)

    def kek_label(self, key_id: bytes) -> str:
        return f"{self.key_prefix}-kek-{key_id.hex()[:48]}-{os.urandom(4).hex()}"

    # -- PKCS#12 passwords the operator set --------------------------------------

    @defer.inlineCallbacks
    def pkcs12_password(self, client: str) -> Generator[defer.Deferred[Any], Any, bytes | None]:
        """The operator-set PKCS#12 password of ``client`` (bytes), or None."""
        sealed: bytes | None = yield on_store_thread(self.store.keygen.pkcs12_password, client)
        if sealed is None:
            return None
        try:
            password: bytes = yield on_token_thread(symmetric.unseal, self.token, self.sealing_key_label, sealed,
                                                    client.encode())
            return password
        except ValueError:
            log.error("the PKCS#12 password of {client} does not open: set it again", client=client)
            raise Unavailable("this client's PKCS#12 password cannot be read; the operator must set it again")

    def set_pkcs12_password_blocking(self, client: str, password: bytes) -> None:
        """For estctl (no reactor): seal in the token, keep in the store."""
        symmetric.ensure_sealing_key(self.token, self.sealing_key_label)
        self.store.keygen.set_pkcs12_password(client, symmetric.seal(self.token, self.sealing_key_label, password,
                                                              client.encode()))

    # -- delivery -------------------------------------------------------------------

    @defer.inlineCallbacks
    def deliver(self, order: KeyOrder) -> Generator[defer.Deferred[Any], Any, DeliveredKey]:
        """Fires with a DeliveredKey once it is recorded as delivered."""
        if not self._swept:
            self._swept = True
            yield self.sweep()
        policy: MechanismPolicy = yield on_token_thread(self.token.policy)
        self._check_token(policy, order)
        pkg_id = os.urandom(16)
        key_label = f"{self.key_prefix}-skg-{pkg_id.hex()}"
        receipts = order.label.serverkeygen_receipts and order.form in ("enveloped", "encrypted-key-package")
        yield on_store_thread(self.store.keygen.key_package_started, pkg_id=pkg_id, client=order.client,
                              label=order.label.name, key_label=key_label, form=order.form,
                              receipt_requested=receipts)
        cert: x509.Certificate | None = None
        try:
            spki: bytes = yield on_token_thread(self.token.generate_keypair, key_label, KEY_SPECS[order.key_type],
                                         extractable=True)
            cert = yield self.ca.issue(IssueRequest(
                subject=order.subject, public_key=load_subject_public_key(spki), san=order.san,
                profile=order.label.profile, label=order.label.name, client=order.client, replaces=order.replaces,
                pending_id=order.pending_id))
            yield on_store_thread(self.store.keygen.key_package_certified, pkg_id, cert.serial_number)
            pkcs8 = keypackages.complete_pkcs8((yield on_token_thread(self.token.export_private_key, key_label)))
            key_der: bytes = yield self._package(order, pkg_id, pkcs8, cert, receipts)
            del pkcs8
            if order.label.escrow:
                yield on_token_thread(self.token.seal, key_label)
            else:
                yield on_token_thread(self.token.destroy_keypair, key_label)
            yield on_store_thread(self.store.keygen.key_package_delivered, pkg_id, escrowed=order.label.escrow)
        except Exception as e:
            yield self._abandon(pkg_id, key_label, cert, e)
            if isinstance(e, TokenRefused):
                raise Unavailable("the token refused to export the new key") from e
            raise
        return DeliveredKey(pkg_id, order.form, MEDIA_TYPES[order.form], key_der, cert)

    @staticmethod
    def _check_token(policy: MechanismPolicy, order: KeyOrder) -> None:
        """Refuse (400, named in the log) what this token cannot do, before
        anything is recorded or made."""
        try:
            policy.require_key_type(order.key_type, "/serverkeygen")
            policy.require(policy.export_problem(), "/serverkeygen")
            if isinstance(order.protection, KekProtection):
                policy.require(policy.kek_problem(), "/serverkeygen to a KEK (kekri)")
        except TokenCannot as e:
            log.warn("token cannot serve this request: {reason}", reason=e.reason)
            raise

    @defer.inlineCallbacks
    def _package(self, order: KeyOrder, pkg_id: bytes, pkcs8: bytes, cert: x509.Certificate, receipts: bool
                 ) -> Generator[defer.Deferred[Any], Any, bytes]:
        if order.form == "pkcs8":
            return pkcs8
        if order.form == "pkcs12":
            names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            friendly = (str(names[0].value) if names else cert.subject.rfc4514_string())[:64].encode() or None
            assert order.pkcs12_password is not None, "a pkcs12 order carries its password"
            pfx: bytes = yield threads.deferToThread(
                keypackages.pkcs12, pkcs8, cert, self.ca.ca_certificates(), order.pkcs12_password,
                iterations=order.label.pkcs12_iterations, friendly_name=friendly)
            return pfx
        receipts_to = self.content_signer.certificate.subject if receipts else None
        signed: bytes = yield self.content_signer.sign(
            rfc5958.CONTENT_TYPE, keypackages.asymmetric_key_package(pkcs8),
            signed_attrs=[keypackages.receipt_request(pkg_id, receipts_to)])
        signed_data: bytes = cms.ContentInfo.load(signed)["content"].untag().dump()
        encrypted: bytes = yield on_token_thread(self._encrypt, order, signed_data)
        return encrypted

    def _encrypt(self, order: KeyOrder, signed_data: bytes) -> bytes:
        """The encryption layer (on the PKCS#11 thread: a KEK wraps in the token)."""
        protection = order.protection
        recipient: envelope.KekRecipient | envelope.KeyTransRecipient | envelope.KeyAgreeRecipient
        if isinstance(protection, KekProtection):
            recipient = envelope.KekRecipient(
                protection.key_id, lambda cek: symmetric.wrap_with_kek(self.token, protection.token_label, cek),
                protection.size)
        elif isinstance(protection, CertificateProtection):
            recipient = envelope.recipient_for_certificate(
                protection.certificate, rid=envelope.RecipientId(ski=protection.key_id),
                wrap_algorithm=protection.wrap_algorithm, kdf_hash=protection.kdf_hash,
                oaep_hash=protection.oaep_hash)
        else:
            raise ValueError("an encrypted key form needs a recipient")
        if order.form == "enveloped":
            return envelope.enveloped_data("signed_data", signed_data, [recipient], cipher=order.cipher)
        return envelope.encrypted_key_package("signed_data", signed_data, [recipient], cipher=order.cipher)

    @defer.inlineCallbacks
    def _abandon(self, pkg_id: bytes, key_label: str, cert: x509.Certificate | None, error: Exception
                 ) -> Generator[defer.Deferred[Any], Any, None]:
        """After a failure: no key left in the token, nothing marked delivered,
        no usable certificate for a key nobody has. Best effort, each step."""
        reason = error.reason if isinstance(error, EstError) else type(error).__name__
        destroyed = False
        try:
            yield on_token_thread(self.token.destroy_keypair, key_label)
            destroyed = True
        except Exception:  # the token may be what failed: the sweep retries
            log.warn("could not destroy {label} after a failed delivery; it will be swept", label=key_label)
        try:
            yield on_store_thread(self.store.keygen.key_package_failed, pkg_id, reason, key_destroyed=destroyed)
            if cert is not None:
                yield on_store_thread(self.store.certificates.revoke, cert.serial_number, "cessationOfOperation")
        except Exception:
            log.failure("recording the failed key package {pkg}", pkg=pkg_id.hex())

    def sweep_blocking(self) -> int:
        """The same for estctl (no reactor): one pass, blocking."""
        count = 0
        for record in self.store.keygen.orphan_key_packages(_orphan_cutoff()):
            self.token.destroy_keypair(record.key_label)
            self._swept_one(record)
            count += 1
        return count

    def _swept_one(self, record: KeyPackageRecord) -> None:
        """Store side of sweeping one key (blocking, on the store thread)."""
        if record.state == "generating":
            self.store.keygen.key_package_failed(record.pkg_id, "abandoned (the request never finished)",
                                          key_destroyed=True)
            if record.serial is not None:
                self.store.certificates.revoke(record.serial, "cessationOfOperation")
        else:
            self.store.keygen.key_package_destroyed(record.pkg_id)

    @defer.inlineCallbacks
    def sweep(self) -> Generator[defer.Deferred[Any], Any, int]:
        """Destroy keys of failed or abandoned deliveries still in the token."""
        orphans: list[KeyPackageRecord] = yield on_store_thread(self.store.keygen.orphan_key_packages, _orphan_cutoff())
        for record in orphans:
            try:
                yield on_token_thread(self.token.destroy_keypair, record.key_label)
                yield on_store_thread(self._swept_one, record)
            except Exception:
                log.warn("sweeping {label} failed; trying again later", label=record.key_label)
                self._swept = False
                return len(orphans)
        return len(orphans)


def _orphan_cutoff() -> str:
    return (datetime.datetime.now(datetime.timezone.utc) - ORPHAN_AFTER).isoformat(timespec="seconds")


__all__ = ["FORMS", "MEDIA_TYPES", "CertificateProtection", "DeliveredKey", "KekProtection", "KeyOrder",
           "ServerKeyGenerator"]
