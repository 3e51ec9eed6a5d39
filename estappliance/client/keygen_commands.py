"""Client side of /serverkeygen (RFC 7030 4.4, RFC 8295 8) and
/serverkeygen/return: ask for a key in any form, open what comes back with
the key the client holds, and send RFC 7191 receipts and errors.

Also the ``est serverkeygen`` and ``est return`` sub-commands.
"""
from __future__ import annotations

import argparse

import base64
import binascii
import sys
from dataclasses import dataclass
from typing import Any
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12

from ..pki import envelope, keygen_request, keypackages, multipart
from ..pki.asn1 import rfc6032, rfc7191
from ..pki.cms import NotCertsOnly, read_certs_only
from ..pki.encoding import NotBase64OrDer, decode_body
from . import pemfiles
from .est import EstClient, EstClientError, _first_line, new_key
from .cli_support import client_from_args, write_output

FORM_OF_MEDIA_TYPE = {
    "application/pkcs8": "pkcs8",
    "application/pkcs7-mime": "enveloped",  # smime-type=server-generated-key
    "application/cms": "encrypted-key-package",
}


@dataclass(frozen=True)
class KeygenAnswer:
    """The answer as received: the key part (still protected) and the certificate."""

    form: str  # pkcs8 | enveloped | encrypted-key-package | pkcs12
    key_media_type: str
    key_der: bytes
    certificate: x509.Certificate | None  # None for PKCS#12 until opened


@dataclass(frozen=True)
class ServerKey:
    """The private key made for us, its certificate, and what the package said."""

    key: PrivateKeyTypes
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    form: str
    pkg_id: bytes | None = None
    receipt_requested: bool = False
    signer: x509.Certificate | None = None


def request_key(client: EstClient, csr_der: bytes, *, pkcs12: bool | None = None) -> KeygenAnswer:
    """POST the CSR to /serverkeygen. ``pkcs12`` True asks for PKCS#12, False
    for the RFC 7030 multipart answer (Accept); None leaves it to the label."""
    accept = {True: "application/pkcs12", False: "multipart/mixed", None: "*/*"}[pkcs12]
    resp = client.request("POST", "serverkeygen", base64.encodebytes(csr_der), "application/pkcs10",
                           accept=accept)
    if resp.status != 200:
        raise EstClientError(f"serverkeygen: HTTP {resp.status} {_first_line(resp)}", resp.status)
    content_type = resp.header("content-type") or ""
    essence = content_type.split(";", 1)[0].strip().lower()
    try:
        if essence == "application/pkcs12":
            return KeygenAnswer("pkcs12", content_type, decode_body(resp.body), None)
        parts = multipart.parse(content_type, resp.body)
    except (multipart.BadMultipart, NotBase64OrDer) as e:
        raise EstClientError(f"serverkeygen: unreadable answer: {e}") from None
    key_parts = [p for p in parts if p.media_type in FORM_OF_MEDIA_TYPE
                 and "certs-only" not in p.content_type.replace(" ", "").lower()]
    cert_parts = [p for p in parts if p.media_type == "application/pkcs7-mime" and p not in key_parts]
    if len(key_parts) != 1 or len(cert_parts) != 1:
        raise EstClientError(f"serverkeygen: expected a key part and a certificate part, got"
                             f" {[p.content_type for p in parts]}")
    try:
        certs = read_certs_only(cert_parts[0].der)
    except NotCertsOnly as e:
        raise EstClientError(f"serverkeygen: unreadable certificate part: {e}") from None
    if len(certs) != 1:
        raise EstClientError(f"serverkeygen: expected one certificate, got {len(certs)}")
    key_part = key_parts[0]
    return KeygenAnswer(FORM_OF_MEDIA_TYPE[key_part.media_type], key_part.content_type, key_part.der, certs[0])


def open_answer(answer: KeygenAnswer, *, anchors: list[x509.Certificate],
                recipient: envelope.RecipientKey | None = None, pkcs12_password: bytes | None = None) -> ServerKey:
    """Decrypt and check: the key must be the certificate's, a signed package
    must be signed by someone the anchors vouch for."""
    if answer.form == "pkcs12":
        if pkcs12_password is None:
            raise EstClientError("serverkeygen: the PKCS#12 answer needs its password")
        try:
            key, cert, chain = crypto_pkcs12.load_key_and_certificates(answer.key_der, pkcs12_password)
        except ValueError as e:
            raise EstClientError(f"serverkeygen: the PKCS#12 does not open ({e})") from None
        if key is None or cert is None:
            raise EstClientError("serverkeygen: the PKCS#12 lacks the key or the certificate")
        result = ServerKey(key, cert, tuple(chain), "pkcs12")
    elif answer.certificate is None:
        raise EstClientError("serverkeygen: the answer carries no certificate for the key")
    elif answer.form == "pkcs8":
        try:
            key = serialization.load_der_private_key(answer.key_der, None)
        except ValueError as e:
            raise EstClientError(f"serverkeygen: unreadable PKCS#8 key: {e}") from None
        result = ServerKey(key, answer.certificate, (), "pkcs8")
    else:
        if recipient is None:
            raise EstClientError("serverkeygen: the key came encrypted; give the key to decrypt it with")
        try:
            opened = keypackages.open_key_package(answer.key_der, recipient, anchors)
        except keypackages.BadKeyPackage as e:
            raise EstClientError(f"serverkeygen: {e}") from None
        if len(opened.keys) != 1:
            raise EstClientError(f"serverkeygen: expected one key in the package, got {len(opened.keys)}")
        result = ServerKey(opened.keys[0], answer.certificate, (), answer.form, opened.pkg_id,
                           opened.receipt_requested, opened.signer)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if result.key.public_key().public_bytes(serialization.Encoding.DER, spki) != \
            result.certificate.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise EstClientError("serverkeygen: the key delivered is not the certificate's key")
    return result


def send_return(client: EstClient, der: bytes) -> None:
    """POST a receipt or error to /serverkeygen/return (204 expected)."""
    resp = client.request("POST", "serverkeygen/return", base64.encodebytes(der), "application/cms")
    if resp.status != 204:
        raise EstClientError(f"serverkeygen/return: HTTP {resp.status} {_first_line(resp)}", resp.status)


def receipt_for(delivered: ServerKey) -> bytes:
    """The signed receipt for a delivered package, signed with the new key."""
    if delivered.pkg_id is None:
        raise EstClientError("this key came without a key package identifier: nothing to acknowledge")
    if not isinstance(delivered.key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise EstClientError(f"a {type(delivered.key).__name__} cannot sign the receipt")
    return keypackages.receipt_message(delivered.pkg_id, delivered.certificate.subject, delivered.key,
                                       delivered.certificate)


# -- est serverkeygen / est return -------------------------------------------------------


def _read_secret(path: str) -> bytes:
    """A KEK file: raw 16/24/32 octets, or the same in hex or base64 text."""
    data = Path(path).read_bytes()
    if len(data) in envelope.WRAP_FOR_SIZE:
        return data
    text = data.strip().decode("ascii", "replace")
    candidates = []
    try:
        candidates.append(bytes.fromhex(text))
    except ValueError:
        pass
    try:
        candidates.append(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        pass
    for value in candidates:
        if len(value) in envelope.WRAP_FOR_SIZE:
            return value
    raise SystemExit(f"est: {path} does not hold an AES key of 16, 24 or 32 octets (raw, hex or base64)")


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise SystemExit(f"est: {text!r} is not hexadecimal") from None


def _pem_key(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cmd_serverkeygen(args: argparse.Namespace) -> None:
    if not args.subject:
        raise SystemExit("est serverkeygen: --subject is required")
    if args.pkcs12 and (args.kek_id or args.recipient_cert or args.encrypted_key_package):
        raise SystemExit("est serverkeygen: PKCS#12 cannot be combined with an encryption key (RFC 8295 8.3)")
    if bool(args.kek_id) != bool(args.kek_file):
        raise SystemExit("est serverkeygen: --kek-id and --kek-file go together")
    if bool(args.recipient_cert) != bool(args.recipient_key):
        raise SystemExit("est serverkeygen: --recipient-cert and --recipient-key go together")
    if args.encrypted_key_package and not (args.kek_id or args.recipient_cert):
        raise SystemExit("est serverkeygen: --encrypted-key-package needs --kek-id or --recipient-cert")
    anchors = pemfiles.certificates(args.anchor) if args.anchor else []
    recipient = None
    kw: dict[str, Any] = {}  # build_csr's keyword options
    if args.kek_id:
        kek_id, kek = _hex(args.kek_id), _read_secret(args.kek_file)
        recipient = envelope.RecipientKey(kek=kek, kek_id=kek_id)
        kw["decrypt_key_id"] = kek_id
    if args.recipient_cert:
        cert, key = pemfiles.certificate_and_key(args.recipient_cert, args.recipient_key)
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise SystemExit("est serverkeygen: the recipient key must be RSA or EC")
        rid = envelope.RecipientId.from_certificate(cert)
        if rid.ski is None:
            raise SystemExit("est serverkeygen: the recipient certificate has no subject key identifier")
        recipient = envelope.RecipientKey.for_certificate(key, cert)
        kw["asymmetric_decrypt_key_id"] = rid.ski
    if args.encrypted_key_package:
        kw["content_type"] = rfc6032.OIDS["id-ct-KP-encryptedKeyPkg"]
    if recipient is not None:
        kw["capabilities"] = tuple(keygen_request.capability(c) for c in args.cipher or ("aes256_cbc",))
    password = None
    if args.pkcs12:
        if not args.p12_password_file:
            raise SystemExit("est serverkeygen: --pkcs12 needs --p12-password-file (the password agreed with the"
                             " operator, or your HTTP password)")
        password = pemfiles.password(args.p12_password_file).encode()
    with client_from_args(args) as c:
        link = args.link or (not args.no_link and bool((c.csrattrs() or _NoHints).challenge_password))
        csr = keygen_request.build_csr(
            x509.Name.from_rfc4514_string(args.subject), new_key(args.key_type or "ec-p256"),
            dns_names=tuple(args.dns or ()), challenge_password=c.channel_binding() if link else None, **kw)
        answer = request_key(c, csr, pkcs12=True if args.pkcs12 else None)
        if args.p12_out and answer.form == "pkcs12":
            write_output(args.p12_out, answer.key_der, mode=0o600)
        delivered = open_answer(answer, anchors=anchors, recipient=recipient, pkcs12_password=password)
        if args.key_out:
            write_output(args.key_out, _pem_key(delivered.key), mode=0o600)
        write_output(args.out, delivered.certificate.public_bytes(serialization.Encoding.PEM))
        note = f" (key package {delivered.pkg_id.hex()})" if delivered.pkg_id else ""
        print(f"server-generated key ({delivered.form}) for {delivered.certificate.subject.rfc4514_string()}, serial"
              f" {delivered.certificate.serial_number:x}{note}", file=sys.stderr)
        if delivered.pkg_id is not None and (args.send_receipt or delivered.receipt_requested):
            send_return(c, receipt_for(delivered))
            print(f"receipt sent for key package {delivered.pkg_id.hex()}", file=sys.stderr)


class _NoHints:
    challenge_password = False


def cmd_return(args: argparse.Namespace) -> None:
    if bool(args.sign_cert) != bool(args.sign_key):
        raise SystemExit("est return: --sign-cert and --sign-key go together")
    key = cert = None
    if args.sign_cert:
        cert, key = pemfiles.certificate_and_key(args.sign_cert, args.sign_key)
    pkg_id = _hex(args.pkg_id) if args.pkg_id else None
    if args.error is None:
        if key is None or cert is None or pkg_id is None:
            raise SystemExit("est return: a receipt needs --pkg-id and --sign-cert/--sign-key (receipts are signed)")
        der = keypackages.receipt_message(pkg_id, cert.subject, key, cert)
    else:
        code = int(args.error) if args.error.isdigit() else args.error
        if isinstance(code, str) and code not in set(rfc7191.ERROR_CODES.values()):
            raise SystemExit(f"est return: unknown RFC 7191 error code {args.error!r}")
        by = cert.subject if cert is not None else x509.Name.from_rfc4514_string(args.by or "")
        der = keypackages.error_message(pkg_id, by, code, key, cert)
    with client_from_args(args) as c:
        send_return(c, der)
    print("accepted", file=sys.stderr)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    sk = subparsers.add_parser("serverkeygen", parents=[common],
                               help="have the server make a key pair and certificate (RFC 7030 4.4, RFC 8295 8)")
    sk.add_argument("--subject", help="subject of the request, e.g. 'CN=device-1'")
    sk.add_argument("--dns", action="append", help="subjectAltName DNS name (repeatable)")
    sk.add_argument("--key-type", help="key type to ask for (ec-p256, rsa2048 ...; the label's profile decides)")
    sk.add_argument("--kek-id", help="DecryptKeyIdentifier (hex) of a symmetric KEK shared with the server")
    sk.add_argument("--kek-file", help="the KEK: 16/24/32 octets, raw, hex or base64")
    sk.add_argument("--recipient-cert", help="PEM certificate of our encryption key (AsymmetricDecryptKeyIdentifier)")
    sk.add_argument("--recipient-key", help="PEM private key of --recipient-cert")
    sk.add_argument("--encrypted-key-package", action="store_true",
                    help="ask for an RFC 6032 Encrypted Key Package (RFC 8295 8.1)")
    sk.add_argument("--cipher", action="append", choices=sorted(keygen_request.CONTENT_CIPHERS.values()),
                    help="content encryption we accept, most preferred first (SMIMECapabilities)")
    sk.add_argument("--pkcs12", action="store_true", help="ask for PKCS#12 (RFC 8295 8.3)")
    sk.add_argument("--p12-password-file", help="the PKCS#12 password")
    sk.add_argument("--p12-out", help="also keep the PKCS#12 file as received")
    sk.add_argument("--key-out", help="write the private key here (PEM PKCS#8, 0600)")
    sk.add_argument("-o", "--out", help="write the certificate (PEM) here (default stdout)")
    sk.add_argument("--link", action="store_true", help="put the TLS channel binding in challengePassword")
    sk.add_argument("--no-link", action="store_true", help="never link, whatever /csrattrs says")
    sk.add_argument("--send-receipt", action="store_true",
                    help="acknowledge the key package even if the server did not ask (RFC 7191)")
    sk.set_defaults(func=cmd_serverkeygen)

    rt = subparsers.add_parser("return", parents=[common],
                               help="send an RFC 7191 receipt or error for a server-generated key package")
    rt.add_argument("--pkg-id", help="the key package identifier (hex)")
    rt.add_argument("--error", help="send an error with this RFC 7191 code (name or number) instead of a receipt")
    rt.add_argument("--sign-cert", help="PEM certificate to sign with (a receipt must be signed)")
    rt.add_argument("--sign-key", help="PEM private key of --sign-cert")
    rt.add_argument("--by", help="errorBy name (RFC 4514) for an unsigned error")
    rt.set_defaults(func=cmd_return)


__all__ = ["KeygenAnswer", "ServerKey", "open_answer", "receipt_for", "register", "request_key", "send_return"]
