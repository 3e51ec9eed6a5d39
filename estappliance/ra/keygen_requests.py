"""The policy of /serverkeygen (RFC 7030 4.4, RFC 8295 8) and of
/serverkeygen/return (RFC 8295 8.2): who may ask, which key form they get,
which key protects it, and whether a receipt or error is theirs to send.

How the key form is chosen, most specific first:

1. the CSR's PKCS#9 contentType attribute: id-ct-KP-encryptedKeyPkg asks
   for an RFC 6032 Encrypted Key Package (any other content type is refused,
   named);
2. a DecryptKeyIdentifier or AsymmetricDecryptKeyIdentifier attribute asks
   for RFC 7030's signed-then-enveloped key;
3. ``Accept: application/pkcs12`` preferred over multipart/mixed asks for
   PKCS#12 (RFC 8295 8.3);
4. otherwise the label's default (``serverkeygen_default``: pkcs8 or pkcs12).

The label's ``serverkeygen_forms`` must allow the form chosen.

The PKCS#12 password (RFC 8295 leaves its distribution open): the one the
operator set for the client (``estctl serverkeygen pkcs12-password``), or,
when there is none, the HTTP Basic password the client authenticated this
request with; never anything the server made up.
"""
from __future__ import annotations

import datetime
from typing import Any, Generator

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.internet import defer

from ..ca import ContentSigner
from ..ca.key_generation import CertificateProtection, DeliveredKey, KekProtection, KeyOrder, ServerKeyGenerator
from ..config import KEY_TYPES, Label
from ..errors import EstError, MalformedRequest, NotAuthorized, PolicyRefused
from ..pki import csr as csrs
from ..pki import envelope, keygen_request, keypackages
from ..store import AlreadyIssued, Store, on_store_thread
from . import profiles
from .approvals import Fulfilled, Submission
from .auth import Credentials, Identity
from .registrar import Body, Registrar


def check_keygen_csr(der: bytes, label: Label) -> x509.CertificateSigningRequest:
    """The CSR judged like an enrollment CSR, except that its public key and
    signature are ignored (RFC 7030 4.4.1: only there for code reuse)."""
    try:
        csr = csrs.load_csr(der)
    except csrs.BadCSR as e:
        raise MalformedRequest(str(e)) from None
    profiles.check_requested_names(csr, label.profile)
    return csr


def key_type_for(csr: x509.CertificateSigningRequest, label: Label) -> str:
    """The CSR's key type if the profile allows it, else the profile's first."""
    try:
        wanted = csrs.key_type(csr.public_key())
    except ValueError:
        wanted = None
    allowed = [k for k in label.profile.key_types if k in KEY_TYPES]
    return wanted if wanted in allowed else allowed[0]


def pkcs12_preference(accept: str | None) -> bool | None:
    """True: the client prefers application/pkcs12; False: it prefers
    multipart/mixed or refuses PKCS#12 (q=0); None: it does not say."""
    if not accept:
        return None
    q: dict[str, float] = {}
    for item in accept.split(","):
        fields = [f.strip() for f in item.split(";")]
        media = fields[0].lower()
        weight = 1.0
        for f in fields[1:]:
            if f.lower().startswith("q="):
                try:
                    weight = float(f[2:])
                except ValueError:
                    weight = 0.0
        q[media] = max(weight, q.get(media, 0.0))
    if "application/pkcs12" not in q:
        return False if "multipart/mixed" in q else None
    return q["application/pkcs12"] > 0 and q["application/pkcs12"] > q.get("multipart/mixed", 0.0)


def choose_form(attrs: keygen_request.KeygenAttributes, wants_pkcs12: bool | None, label: Label) -> str:
    encrypted = attrs.decrypt_key_id is not None or attrs.asymmetric_decrypt_key_id is not None
    if attrs.decrypt_key_id is not None and attrs.asymmetric_decrypt_key_id is not None:
        raise MalformedRequest("name one key: DecryptKeyIdentifier or AsymmetricDecryptKeyIdentifier, not both")
    form: str | None
    if attrs.content_types:
        if not attrs.wants_encrypted_key_package:
            raise PolicyRefused(f"key form {attrs.content_types[0]} (CSR contentType) is not supported; ask for"
                                " id-ct-KP-encryptedKeyPkg (2.16.840.1.101.2.1.2.78.2)")
        form = "encrypted-key-package"
        if not encrypted:
            raise PolicyRefused("an Encrypted Key Package needs DecryptKeyIdentifier or"
                                " AsymmetricDecryptKeyIdentifier in the CSR")
    elif encrypted:
        form = "enveloped"
    elif wants_pkcs12:
        form = "pkcs12"
    else:
        form = label.serverkeygen_default
        if form == "pkcs12" and wants_pkcs12 is False:
            form = "pkcs8"
        if form is None:
            raise PolicyRefused(f"label {label.name!r} delivers keys only encrypted: name the key in the CSR"
                                " (DecryptKeyIdentifier or AsymmetricDecryptKeyIdentifier)")
    if wants_pkcs12 and form != "pkcs12":
        raise PolicyRefused("PKCS#12 cannot be combined with DecryptKeyIdentifier, AsymmetricDecryptKeyIdentifier"
                            " or a CSR contentType (RFC 8295 8.3)")
    if form not in label.serverkeygen_forms:
        raise PolicyRefused(f"key form {form!r} is not allowed under label {label.name!r}"
                            f" (allowed: {', '.join(label.serverkeygen_forms) or 'none'})")
    return form


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class KeygenRegistrar:
    """The RA side of server-side key generation; delegates the making to
    ``ServerKeyGenerator`` and the common checks to the enrollment ``Registrar``."""

    def __init__(self, registrar: Registrar, generator: ServerKeyGenerator, store: Store) -> None:
        self.registrar = registrar
        self.generator = generator
        self.store = store

    @classmethod
    def build(cls, registrar: Registrar, content_signer: ContentSigner) -> "KeygenRegistrar":
        """Wired to the registrar's CA, token and store. Token labels of the
        keys made here (and of the sealing key) start with the configured CA
        key label, as estctl's do: the appliance's name in the token, which a
        CA key update does not change (the signing key's label does)."""
        ca = registrar.ca
        generator = ServerKeyGenerator(ca.signer.token, ca, content_signer, registrar.store,
                                       key_prefix=registrar.config.ca.key_label)
        return cls(registrar, generator, registrar.store)

    # -- /serverkeygen --------------------------------------------------------------

    @defer.inlineCallbacks
    def serverkeygen(self, label_name: str | None, creds: Credentials, body: Body, accept: str | None = None) -> Generator[defer.Deferred[Any], Any, DeliveredKey]:
        """Fires with a DeliveredKey."""
        label, identity = yield self.registrar.identify("serverkeygen", label_name, creds)
        try:
            der = body() if callable(body) else body
            csr = check_keygen_csr(der, label)
            self.registrar.check_linking(csr, label, creds, identity)
            subject = profiles.subject_for(csr, label.profile, identity.name)
            try:
                attrs = keygen_request.read(der)
            except keygen_request.BadKeygenRequest as e:
                raise MalformedRequest(str(e)) from None
            form = choose_form(attrs, pkcs12_preference(accept), label)
            protection, cipher = yield self._protection(form, attrs, identity)
            password = (yield self._pkcs12_password(identity, creds)) if form == "pkcs12" else None
            pending_id = None
            if label.approval == "manual":
                approvals = self.registrar.approvals
                decision = yield approvals.submit(Submission(
                    label=label.name, client=identity.name, operation="serverkeygen", subject=subject,
                    public_key=csr.public_key(), request=der))
                if isinstance(decision, Fulfilled):
                    raise PolicyRefused("this request was already fulfilled; a server-generated key is delivered"
                                        " once (send a new request for a new key)")
                pending_id = yield approvals.approved_id(decision)
            order = KeyOrder(label=label, client=identity.name, subject=subject, san=csrs.requested_san(csr),
                             key_type=key_type_for(csr, label), form=form, protection=protection, cipher=cipher,
                             pkcs12_password=password, pending_id=pending_id)
            try:
                delivered = yield self.generator.deliver(order)
            except AlreadyIssued:
                raise PolicyRefused(f"request {pending_id} was already fulfilled") from None
        except EstError as e:
            yield self.registrar.refused("serverkeygen", e, label, creds, identity)
            raise
        return delivered

    @defer.inlineCallbacks
    def _protection(self, form: str, attrs: keygen_request.KeygenAttributes, identity: Identity) -> Generator[defer.Deferred[Any], Any, tuple[KekProtection | CertificateProtection | None, str]]:
        """(KekProtection | CertificateProtection | None, content cipher)."""
        if form not in ("enveloped", "encrypted-key-package"):
            return None, "aes256_cbc"
        try:
            cipher = attrs.content_cipher(allow_gcm=form == "encrypted-key-package")
            if attrs.decrypt_key_id is not None:
                record = yield on_store_thread(self.store.keygen.kek, attrs.decrypt_key_id)
                if record is None or record.client != identity.name:
                    # Another client's KEK is as unknown to this one as a missing one.
                    raise PolicyRefused(f"unknown DecryptKeyIdentifier {attrs.decrypt_key_id.hex()}")
                attrs.kek_wrap(record.size)
                return KekProtection(attrs.decrypt_key_id, record.token_label, record.size), cipher
            ski = attrs.asymmetric_decrypt_key_id
            assert ski is not None  # choose_form: an encrypted form names one of the two keys
            cert = yield self._recipient_certificate(ski, identity)
            if isinstance(cert.public_key(), rsa.RSAPublicKey):
                return CertificateProtection(cert, ski, oaep_hash=attrs.key_transport()), cipher
            wrap, kdf = attrs.key_agreement()
            return CertificateProtection(cert, ski, wrap_algorithm=wrap,
                                         kdf_hash=kdf), cipher
        except keygen_request.BadKeygenRequest as e:
            raise PolicyRefused(str(e)) from None

    @defer.inlineCallbacks
    def _recipient_certificate(self, ski: bytes, identity: Identity) -> Generator[defer.Deferred[Any], Any, x509.Certificate]:
        """The client's encryption certificate with this subject key identifier:
        one the operator registered for it, one this CA issued to it, or the
        TLS client certificate it authenticated with. Current and usable for
        key transport or agreement."""
        candidates: list[x509.Certificate] = []
        registered = yield on_store_thread(self.store.keygen.recipient, ski)
        if registered is not None and registered.client == identity.name:
            candidates.append(x509.load_der_x509_certificate(registered.der))
        issued = yield on_store_thread(self.store.certificates.certificates, identity.name)
        for record in issued:
            if not record.revoked:
                cert = x509.load_der_x509_certificate(record.der)
                if _ski(cert) == ski:
                    candidates.append(cert)
        if identity.certificate is not None and _ski(identity.certificate) == ski:
            candidates.append(identity.certificate)
        now = _now()
        current = [c for c in candidates if c.not_valid_before_utc <= now <= c.not_valid_after_utc
                   and isinstance(c.public_key(), (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))]
        if not current:
            raise PolicyRefused(f"unknown AsymmetricDecryptKeyIdentifier {ski.hex()}")
        usable = [c for c in current if envelope.can_encrypt_to(c)]
        if not usable:
            raise PolicyRefused("the certificate named by AsymmetricDecryptKeyIdentifier does not allow key"
                                " transport or key agreement (key usage)")
        return usable[0]

    @defer.inlineCallbacks
    def _pkcs12_password(self, identity: Identity, creds: Credentials) -> Generator[defer.Deferred[Any], Any, bytes]:
        password = yield self.generator.pkcs12_password(identity.name)
        if password is not None:
            return password
        if identity.method == "basic" and creds.password:
            return creds.password.encode("utf-8")
        raise PolicyRefused(f"no PKCS#12 password is agreed for client {identity.name!r}: the operator sets one"
                            " ('estctl serverkeygen pkcs12-password'), or authenticate with HTTP Basic")

    # -- /serverkeygen/return ----------------------------------------------------------

    @defer.inlineCallbacks
    def key_return(self, label_name: str | None, creds: Credentials, body: Body) -> Generator[defer.Deferred[Any], Any, keypackages.KeyPackageReturn]:
        """Record an RFC 7191 receipt or error for a key package this client got."""
        label, identity = yield self.registrar.identify("serverkeygen/return", label_name, creds)
        try:
            der = body() if callable(body) else body
            trusted = yield self._client_certificates(identity)
            try:
                returned = keypackages.read_return(der, trusted)
            except keypackages.BadReturn as e:
                raise MalformedRequest(str(e)) from None
            if returned.signer is not None and returned.signer not in trusted:
                raise NotAuthorized("the receipt or error is signed by someone other than this client")
            if returned.pkg_id is not None:
                record = yield on_store_thread(self.store.keygen.key_package, returned.pkg_id)
                if record is None or record.state in ("generating", "failed"):
                    raise PolicyRefused(f"no key package {returned.pkg_id.hex()} was delivered")
                if record.client != identity.name:
                    raise NotAuthorized(f"key package {returned.pkg_id.hex()} was not delivered to this client")
            else:
                # An error naming no package is about a key this client got:
                # a client that was never sent one has nothing to report on.
                records = yield on_store_thread(self.store.keygen.key_packages, identity.name)
                if not any(r.state in ("delivered", "confirmed", "error") for r in records):
                    raise PolicyRefused("the error names no key package, and none was delivered to this client")
            yield on_store_thread(self.store.keygen.key_package_returned, returned.pkg_id, client=identity.name,
                                  kind=returned.kind, der=der, error_code=returned.error_code,
                                  signer=returned.signer.subject.rfc4514_string() if returned.signer else None)
        except EstError as e:
            yield self.registrar.refused("serverkeygen/return", e, label, creds, identity)
            raise
        return returned

    @defer.inlineCallbacks
    def _client_certificates(self, identity: Identity) -> Generator[defer.Deferred[Any], Any, list[x509.Certificate]]:
        """The certificates a receipt from this client may be signed with: the
        ones this CA issued to it (those of delivered keys among them) and the
        TLS client certificate it authenticated with."""
        records = yield on_store_thread(self.store.certificates.certificates, identity.name)
        certs = [x509.load_der_x509_certificate(r.der) for r in records if not r.revoked]
        if identity.certificate is not None and identity.certificate not in certs:
            certs.append(identity.certificate)
        return certs


__all__ = ["KeygenRegistrar", "check_keygen_csr", "choose_form", "key_type_for", "pkcs12_preference"]
