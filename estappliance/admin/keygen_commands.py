"""``estctl serverkeygen``: what protects server-generated keys on their way
(RFC 7030 4.4.1, RFC 8295 8.3) and where each one went.

* ``kek add|list|remove``: symmetric KEKs named by a DecryptKeyIdentifier,
  kept in the token (sensitive, never extractable, wrap only). ``add
  --generate --out FILE`` makes a fresh AES-256 key and writes it once for
  provisioning the device; ``add --import FILE`` takes one the device has.
* ``recipient add|list|remove``: a client's encryption certificate for
  AsymmetricDecryptKeyIdentifier, when this CA did not issue it.
* ``pkcs12-password CLIENT``: the PKCS#12 password agreed with a client,
  sealed by a token key (the store never holds it in clear).
* ``list``: every key made, its form, state (delivered, confirmed by an RFC
  7191 receipt, error...) and certificate; ``sweep`` destroys keys left by
  failed deliveries.
"""
from __future__ import annotations

import argparse

import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..ca.key_generation import ServerKeyGenerator
from ..store import Store
from ..store.keygen_tables import DuplicateKek
from ..token import Token
from ..token import symmetric
from ..config import Config

MIN_PKCS12_PASSWORD = 8



def _generator(config: Config, store: Store) -> ServerKeyGenerator:
    """Enough of the generator for blocking operator work (no CA needed:
    sweeping keys, sealing PKCS#12 passwords never touch the CA or the signer)."""
    return ServerKeyGenerator(Token.from_config(config.token), None, None, store,  # type: ignore[arg-type]
                              key_prefix=config.ca.key_label)


def _token_can(problem: str | None, what: str) -> None:
    if problem:
        raise SystemExit(f"estctl: this token cannot hold {what}: {problem} (see 'estctl token check')")


def _key_id(text: str) -> bytes:
    try:
        value = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise SystemExit(f"estctl: key identifier {text!r} is not hexadecimal") from None
    if not value:
        raise SystemExit("estctl: empty key identifier")
    return value


def _read_key(path: str) -> bytes:
    data = Path(path).read_bytes()
    if len(data) in symmetric.AES_SIZES:
        return data
    try:
        value = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        value = b""
    if len(value) not in symmetric.AES_SIZES:
        raise SystemExit(f"estctl: {path} must hold an AES key of 16, 24 or 32 octets (raw or hex)")
    return value


def cmd_kek_add(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    key_id = _key_id(args.id) if args.id else os.urandom(16)
    if store.keygen.kek(key_id) is not None:
        raise SystemExit(f"estctl: a KEK {key_id.hex()} is already registered")
    if args.import_file:
        value = _read_key(args.import_file)
    elif args.generate:
        if not args.out:
            raise SystemExit("estctl: --generate needs --out FILE (the device must receive the key once)")
        value = os.urandom(args.bits // 8)
    else:
        raise SystemExit("estctl: give --import FILE or --generate --out FILE")
    generator = _generator(config, store)
    _token_can(generator.token.policy().kek_problem(), "a KEK")
    label = generator.kek_label(key_id)
    size = symmetric.create_kek(generator.token, label, value)
    try:
        store.keygen.add_kek(key_id, args.client, label, size)
    except DuplicateKek:
        generator.token.destroy_keypair(label)
        raise SystemExit(f"estctl: a KEK {key_id.hex()} is already registered") from None
    if args.generate:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value.hex().encode() + b"\n")
    del value
    print(f"KEK {key_id.hex()} ({size * 8} bits) for client {args.client!r} is in the token"
          + (f"; the key is in {args.out} (hex): give it to the device, then delete the file" if args.generate
             else ""))


def cmd_kek_list(args: argparse.Namespace, config: Config) -> None:
    for k in Store(config.store).keygen.keks():
        print(f"{k.key_id.hex()}\t{k.client}\t{k.size * 8} bits\t{k.created_at}")


def cmd_kek_remove(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    record = store.keygen.remove_kek(_key_id(args.id))
    if record is None:
        raise SystemExit(f"estctl: no KEK {args.id}")
    Token.from_config(config.token).destroy_keypair(record.token_label)
    print(f"KEK {record.key_id.hex()} removed and destroyed in the token")


def cmd_recipient_add(args: argparse.Namespace, config: Config) -> None:
    try:
        cert = x509.load_pem_x509_certificates(Path(args.cert).read_bytes())[0]
    except (OSError, ValueError, IndexError) as e:
        raise SystemExit(f"estctl: cannot read a PEM certificate from {args.cert}: {e}") from None
    if not isinstance(cert.public_key(), (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise SystemExit("estctl: an encryption certificate has an RSA or EC key")
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        raise SystemExit("estctl: the certificate has no subject key identifier to be named by") from None
    Store(config.store).keygen.add_recipient(ski, args.client, cert.public_bytes(serialization.Encoding.DER),
                                      cert.subject.rfc4514_string(), cert.not_valid_after_utc.isoformat())
    print(f"encryption certificate {cert.subject.rfc4514_string()} (SKI {ski.hex()}) registered for {args.client!r}")


def cmd_recipient_list(args: argparse.Namespace, config: Config) -> None:
    for r in Store(config.store).keygen.recipients():
        print(f"{r.ski.hex()}\t{r.client}\t{r.not_after}\t{r.subject}")


def cmd_recipient_remove(args: argparse.Namespace, config: Config) -> None:
    if not Store(config.store).keygen.remove_recipient(_key_id(args.ski)):
        raise SystemExit(f"estctl: no registered certificate {args.ski}")
    print(f"recipient {args.ski} removed")


def cmd_pkcs12_password(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    if args.clear:
        if not store.keygen.clear_pkcs12_password(args.client):
            raise SystemExit(f"estctl: client {args.client!r} has no PKCS#12 password")
        print(f"PKCS#12 password of {args.client!r} cleared")
        return
    if not args.password_file:
        raise SystemExit("estctl: --password-file FILE (or --clear)")
    text = sys.stdin.read() if args.password_file == "-" else Path(args.password_file).read_text()
    password = text.rstrip("\r\n")
    if len(password) < MIN_PKCS12_PASSWORD:
        raise SystemExit(f"estctl: a PKCS#12 password has at least {MIN_PKCS12_PASSWORD} characters")
    generator = _generator(config, store)
    _token_can(generator.token.policy().sealing_problem(), "a sealed PKCS#12 password")
    generator.set_pkcs12_password_blocking(args.client, password.encode("utf-8"))
    print(f"PKCS#12 password of {args.client!r} set (sealed by the token)")


def cmd_list(args: argparse.Namespace, config: Config) -> None:
    for p in Store(config.store).keygen.key_packages(args.client):
        serial = f"{p.serial:x}" if p.serial is not None else "-"
        flags = ",".join(f for f, on in (("escrowed", p.escrowed), ("receipt-requested", p.receipt_requested)) if on)
        print(f"{p.pkg_id.hex()}\t{p.state}\t{p.form}\t{p.client}\t{p.label}\t{serial}\t{p.created_at}"
              f"\t{flags or '-'}\t{p.error_code or ''}")


def cmd_sweep(args: argparse.Namespace, config: Config) -> None:
    count = _generator(config, Store(config.store)).sweep_blocking()
    print(f"{count} abandoned key(s) destroyed")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    skg = sub.add_parser("serverkeygen", help="server-generated keys: KEKs, recipients, PKCS#12 passwords, deliveries")
    cmds = skg.add_subparsers(dest="serverkeygen_command", required=True)

    kek = cmds.add_parser("kek", help="symmetric KEKs (DecryptKeyIdentifier)").add_subparsers(
        dest="kek_command", required=True)
    add = kek.add_parser("add", help="register a KEK for a client, in the token")
    add.add_argument("client")
    add.add_argument("--id", help="the DecryptKeyIdentifier, hex (default: 16 random octets)")
    add.add_argument("--import", dest="import_file", help="file holding the key (16/24/32 octets, raw or hex)")
    add.add_argument("--generate", action="store_true", help="make a fresh key")
    add.add_argument("--bits", type=int, choices=(128, 192, 256), default=256, help="size of a generated key")
    add.add_argument("--out", help="with --generate: write the key here once (hex, 0600, must not exist)")
    add.set_defaults(func=cmd_kek_add)
    kek.add_parser("list", help="list KEKs").set_defaults(func=cmd_kek_list)
    rm = kek.add_parser("remove", help="forget a KEK and destroy it in the token")
    rm.add_argument("id")
    rm.set_defaults(func=cmd_kek_remove)

    rcp = cmds.add_parser("recipient", help="client encryption certificates (AsymmetricDecryptKeyIdentifier)"
                          ).add_subparsers(dest="recipient_command", required=True)
    radd = rcp.add_parser("add", help="register a client's encryption certificate")
    radd.add_argument("client")
    radd.add_argument("cert", help="PEM certificate")
    radd.set_defaults(func=cmd_recipient_add)
    rcp.add_parser("list", help="list registered certificates").set_defaults(func=cmd_recipient_list)
    rrm = rcp.add_parser("remove", help="forget a registered certificate")
    rrm.add_argument("ski", help="its subject key identifier, hex")
    rrm.set_defaults(func=cmd_recipient_remove)

    pw = cmds.add_parser("pkcs12-password", help="set the PKCS#12 password agreed with a client")
    pw.add_argument("client")
    pw.add_argument("--password-file", help="file holding the password ('-' for stdin)")
    pw.add_argument("--clear", action="store_true", help="remove it (the client's HTTP password is used then)")
    pw.set_defaults(func=cmd_pkcs12_password)

    ls = cmds.add_parser("list", help="keys made for clients and their delivery state")
    ls.add_argument("--client")
    ls.set_defaults(func=cmd_list)
    cmds.add_parser("sweep", help="destroy keys left in the token by failed deliveries").set_defaults(func=cmd_sweep)
