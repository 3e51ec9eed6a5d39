"""Publishing a symmetric key (RFC 8295 5.1, RFC 6031): made in the token,
out of it only encrypted for each client it is meant for.

``publish`` (blocking, for ``estctl publish symmetric-key``):

1. finds, for every client, a key that can receive it: a KEK registered for
   the client (kekri, the wrap done in the token), a certificate the
   operator registered for the client's encryption key, or the newest valid
   certificate this CA issued to the client whose key usage allows it
   (keyEncipherment for RSA: RSAES-OAEP; keyAgreement for EC: ECDH). A
   client without one stops the publication before any key is made;
2. generates the AES key in the token and exports it once;
3. builds the SymmetricKeyPackage and signs it with the content signer,
   naming it (pkgID) and asking for a receipt (RFC 7191);
4. per client: encrypts that SignedData (EnvelopedData, or an RFC 6032
   EncryptedKeyPackage for a client that declared support for it) and signs
   the result again. A client declares support the way RFC 8295 8.1 has it
   do so: by asking /serverkeygen for an Encrypted Key Package (the CSR
   contentType attribute), which the appliance records; the operator may
   also choose the form for all; one package per client in the queue (a key encrypted
   for one client is no use to another, and a client joining a group later
   must not be shown a package it cannot open);
5. destroys the key in the token, or seals it there (escrow) when the
   policy keeps keys. The destruction runs whatever happened before it.
"""
from __future__ import annotations

import datetime
import os
import uuid
from dataclasses import dataclass
from functools import partial

from cryptography import x509

from ..ca.content import ContentSigner
from ..config import Config
from ..pki import envelope, symkeys
from ..store import Store
from ..store.package_tables import Package
from ..token import Token
from ..token.symmetric import wrap_with_kek
from ..pki import pal_types


class PublishError(Exception):
    """The package cannot be published; the message says why."""


@dataclass(frozen=True)
class SymmetricKeyRequest:
    label: str
    clients: tuple[str, ...]
    algorithm: str = "aes256"
    key_id: str | None = None  # the PSKC keyId; a fresh one by default
    form: str = "auto"  # "enveloped", "encrypted-key-package", or per client: what it declared
    usages: tuple[str, ...] = ("Encrypt", "Decrypt")
    valid_days: int | None = None  # PSKC keyExpiryDate
    friendly_name: str | None = None
    keep: bool = False  # escrow the key (sealed) in the token


def declared_encrypted_key_package(store: Store, client: str) -> bool:
    """Did the client ever ask /serverkeygen for an Encrypted Key Package (RFC 8295 8.1)?"""
    return any(p.form == "encrypted-key-package" for p in store.keygen.key_packages(client))


def form_for(store: Store, client: str, requested: str) -> str:
    if requested != "auto":
        return requested
    return "encrypted-key-package" if declared_encrypted_key_package(store, client) else "enveloped"


def recipients_for(store: Store, token: Token, client: str) -> list[envelope.Recipient]:
    """Every key ``client`` can open a package with (see the module notes)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    found: list[envelope.Recipient] = []
    # KEKs only where the token has AES key wrap (kekri); the rest still serve.
    keks = store.keygen.keks() if token.policy().kek_problem() is None else []
    for kek in keks:
        if kek.client == client:
            found.append(envelope.KekRecipient(kek.key_id, partial(wrap_with_kek, token, kek.token_label), kek.size))
    for registered in store.keygen.recipients():
        if registered.client == client:
            cert = x509.load_der_x509_certificate(registered.der)
            if cert.not_valid_after_utc > now and envelope.can_encrypt_to(cert):
                found.append(envelope.recipient_for_certificate(cert))
    for record in store.certificates.latest_valid_certificates(client, now):
        cert = x509.load_der_x509_certificate(record.der)
        if envelope.can_encrypt_to(cert):
            found.append(envelope.recipient_for_certificate(cert))
            break
    return found


def publish(config: Config, token: Token, store: Store, signer: ContentSigner,
            request: SymmetricKeyRequest) -> list[Package]:
    """Queue one key package per client; returns the queued packages."""
    if config.label(request.label) is None:
        raise PublishError(f"no label {request.label!r} in the config")
    if request.algorithm not in symkeys.ALGORITHM_BITS:
        raise PublishError(f"unknown algorithm {request.algorithm!r}; known: {', '.join(symkeys.ALGORITHM_BITS)}")
    if request.form != "auto" and request.form not in symkeys.LAYERS:
        raise PublishError(f"unknown form {request.form!r}")
    if not request.clients:
        raise PublishError("no client to publish the key for")
    if token.policy().export_problem():
        raise PublishError(f"symmetric keys: {token.policy().export_problem()}")
    recipients = {}
    for client in request.clients:
        record = store.clients.client(client)  # None: a client known by its certificate only
        if record is not None and not record.may_use(request.label):
            raise PublishError(f"client {client!r} may not use label {request.label!r}")
        recipients[client] = recipients_for(store, token, client)
        if not recipients[client]:
            raise PublishError(f"client {client!r} has no key to receive a symmetric key: no KEK, no registered"
                               " encryption certificate, and no valid certificate from this CA whose key usage"
                               " allows keyEncipherment (RSA) or keyAgreement (EC)")
    key_id = request.key_id or uuid.uuid4().hex
    token_label = f"symkey-{key_id}"
    pkg_id = os.urandom(20)
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=request.valid_days)
               if request.valid_days else None)
    token.generate_secret_key(token_label, symkeys.ALGORITHM_BITS[request.algorithm], extractable=True)
    queued: list[Package] = []
    try:
        key = token.export_secret_key(token_label)
        package = symkeys.key_package(key, algorithm=request.algorithm, key_id=key_id,
                                      issuer=signer.ca_chain[0].subject.rfc4514_string(),
                                      friendly_name=request.friendly_name, usages=request.usages, expires=expires)
        del key
        inner = signer.sign_blocking(symkeys.SKEY_PACKAGE, package, signed_attrs=[
            symkeys.receipt_request(pkg_id, signer.certificate.subject)])
        bodies = {}
        for client in request.clients:
            form = form_for(store, client, request.form)
            content_type, layer = symkeys.encrypt_for(inner, recipients[client], form=form)
            bodies[client] = (form, signer.sign_blocking(content_type, layer))
        for client, (form, body) in bodies.items():
            queued.append(store.packages.queue_package(
                label=request.label, pal_type=pal_types.SYMMETRIC_KEY, target_kind="client", target=client,
                content=body, media_type=symkeys.media_type(form),
                name=f"{request.algorithm} key {key_id}", receipt_requested=True, key_package_id=pkg_id,
                details={"key_id": key_id, "algorithm": request.algorithm, "form": form,
                         "escrowed": request.keep, "token_label": token_label if request.keep else None}))
    finally:
        if request.keep:
            token.seal(token_label)
        else:
            token.destroy_keypair(token_label)
    return queued


__all__ = ["PublishError", "SymmetricKeyRequest", "declared_encrypted_key_package", "form_for", "publish",
           "recipients_for"]
