"""``estctl publish symmetric-key | firmware | tamp``, ``estctl tamp anchors``
and ``estctl signer``: the RFC 8295 packages the appliance makes or checks
(symmetric keys from the token, firmware, TAMP messages), the trust anchor
record TAMP keeps for each client, and the token keys that sign them."""
from __future__ import annotations

import argparse

import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ..ca import ContentSigner, load_pem_certs, roles
from ..ca.setup import SetupError
from ..distribution import firmware_publishing
from ..distribution import symmetric_publishing, tamp_publishing
from ..pki import firmware, symkeys, tamp
from ..pki.asn1 import rfc6031
from ..pki.encoding import NotBase64OrDer, decode_body
from ..store import Store
from ..token import Token
from ..config import Config
from .package_commands import _load_certs, add_target_arguments, publish_commands, target_from_args

_OID = re.compile(r"^[0-2](\.\d+)+$")
TAMP_KINDS = {
    "status-query": "tamp_status_query", "update": "tamp_update", "apex-update": "tamp_apex_update",
    "community-update": "tamp_community_update", "sequence-adjust": "tamp_sequence_adjust",
}


def _oid(text: str) -> str:
    if not _OID.match(text):
        raise SystemExit(f"estctl: {text!r} is not an object identifier (e.g. 1.3.6.1.4.1.99999.1)")
    return text


def _fail(e: Exception) -> SystemExit:
    return SystemExit(f"estctl: {e}")


def _content_signer(config: Config, token: Token) -> ContentSigner:
    chain = load_pem_certs(config.ca.cert_file)
    if config.ca.chain_file and config.ca.chain_file.exists():
        chain += [c for c in load_pem_certs(config.ca.chain_file) if c not in chain]
    signer = ContentSigner(token, config.ca.signer_key_label, config.ca.signer_cert_file, chain)
    if config.ca.signer_cert_file is None or not config.ca.signer_cert_file.exists():
        raise SystemExit("estctl: the content signer is not set up (run 'estctl ca signer')")
    return signer


# -- symmetric keys --------------------------------------------------------------------


def _clients_of(args: argparse.Namespace, config: Config, store: Store) -> tuple[str, list[str]]:
    label, kind, target = target_from_args(args, config, store)
    if kind == "client":
        return label, [target]
    if kind == "group":
        members = store.groups.group_members(target)
    else:
        members = [c.name for c in store.clients.clients() if c.may_use(label)]
    if not members:
        raise SystemExit(f"estctl: {kind} {target!r} has no clients to encrypt the key for")
    return label, members


def cmd_publish_symmetric_key(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    label, clients = _clients_of(args, config, store)
    if not config.ca.cert_file.exists():
        raise SystemExit("estctl: the CA is not initialised (run 'estctl init')")
    token = Token.from_config(config.token)
    request = symmetric_publishing.SymmetricKeyRequest(
        label=label, clients=tuple(clients), algorithm=args.algorithm, key_id=args.key_id,
        form=args.form,
        usages=tuple(args.usage or ("Encrypt", "Decrypt")), valid_days=args.days,
        friendly_name=args.name or None, keep=args.keep or config.distribution.keep_symmetric_keys)
    try:
        queued = symmetric_publishing.publish(config, token, store, _content_signer(config, token), request)
    except (symmetric_publishing.PublishError, ValueError) as e:
        raise _fail(e) from None
    details = queued[0].details
    fate = "kept in the token, sealed (escrow)" if request.keep else "destroyed in the token"
    print(f"{args.algorithm} key {details['key_id']} made in the token, encrypted for {len(queued)} client(s),"
          f" then {fate}")
    for p in queued:
        print(f"package {p.id}: symmetric key for client {p.target} (label {p.label}, pkgID"
              f" {p.key_package_id.hex() if p.key_package_id else '-'}, {p.size} bytes, {p.details['form']})")


# -- firmware ---------------------------------------------------------------------------


def _read_cms(path: str) -> bytes:
    data = Path(path).read_bytes()
    if b"-----BEGIN" in data:
        data = b"".join(line for line in data.splitlines() if not line.startswith(b"-----"))
    try:
        return decode_body(data)
    except NotBase64OrDer as e:
        raise SystemExit(f"estctl: {path}: not a DER, PEM or base64 CMS package: {e}") from None


def cmd_publish_firmware(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    label, kind, target_name = target_from_args(args, config, store)
    target = firmware_publishing.Target(label, kind, target_name)
    try:
        if args.sign:
            if args.legacy_name:
                name = firmware.PackageName(legacy=args.legacy_name.encode())
            elif args.package_id and args.version is not None:
                name = firmware.PackageName(oid=_oid(args.package_id), version=args.version)
            else:
                raise SystemExit("estctl: --sign needs --package-id OID and --version N (or --legacy-name)")
            image = firmware_publishing.FirmwareImage(
                image=Path(args.file).read_bytes(), name=name, targets=tuple(_oid(h) for h in args.hardware or ()),
                description=args.description, stale_version=args.stale_version)
            package = firmware_publishing.sign_and_queue(config, Token.from_config(config.token), store, image, target)
        else:
            if args.hardware or args.package_id or args.legacy_name:
                raise SystemExit("estctl: --package-id, --version, --legacy-name and --hardware describe a raw"
                                 " image signed here (--sign); a signed package carries its own")
            package = firmware_publishing.import_signed(config, store, _read_cms(args.file), target)
    except (symmetric_publishing.PublishError, SetupError, ValueError) as e:
        raise _fail(e) from None
    d = package.details
    print(f"package {package.id}: {package.name} for {kind} {target_name} (label {label}), {package.size} bytes,"
          f" targets {', '.join(d['targets'])}, signed by {d['signer']} ({d['origin']})")


# -- TAMP --------------------------------------------------------------------------------


def _one_cert(path: str | None) -> x509.Certificate | None:
    if path is None:
        return None
    return _load_certs(path)[0]


def cmd_publish_tamp(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    label, kind, target_name = target_from_args(args, config, store)
    if args.to_hardware:
        msg_target = tamp.Target("hw_modules", hw_type=_oid(args.to_hardware),
                                 hw_serials=tuple(s.encode() for s in args.serial or ()))
    elif args.to_community:
        msg_target = tamp.Target("communities", communities=tuple(_oid(c) for c in args.to_community))
    else:
        msg_target = tamp.Target()
    request = tamp_publishing.TampRequest(
        kind=TAMP_KINDS[args.message], target=msg_target,
        add=tuple(c for p in args.add or () for c in _load_certs(p)),
        remove=tuple(c for p in args.remove or () for c in _load_certs(p)),
        apex=_one_cert(args.apex), clear_trust_anchors=args.clear_anchors, clear_communities=args.clear_communities,
        add_communities=tuple(_oid(c) for c in args.add_community or ()),
        remove_communities=tuple(_oid(c) for c in args.remove_community or ()), terse=args.terse)
    try:
        package = tamp_publishing.publish(config, Token.from_config(config.token), store, request,
                                       firmware_publishing.Target(label, kind, target_name))
    except (symmetric_publishing.PublishError, SetupError, ValueError) as e:
        raise _fail(e) from None
    print(f"package {package.id}: {package.name} for {kind} {target_name} (label {label}),"
          f" {package.media_type}, {package.size} bytes")


def cmd_tamp_anchors(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    anchors = store.tamp.client_anchors(args.client)
    state = store.tamp.client_tamp_state(args.client)
    if not anchors and state is None:
        print(f"no trust anchor record for {args.client!r} yet (it has answered no TAMP message)")
        return
    for a in anchors:
        print(f"{a.key_id.hex()}\t{'apex' if a.apex else 'anchor'}\t{a.title or '(known by key id only)'}"
              f"\t{a.updated_at}\t{a.source}")
    if state is not None and state.communities is not None:
        print(f"communities: {', '.join(state.communities) or '(none)'}")


# -- the signing keys --------------------------------------------------------------------


def cmd_signer(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    try:
        cert = roles.ensure(config, Token.from_config(config.token), store, args.role, renew=args.renew)
    except SetupError as e:
        raise _fail(e) from None
    r = roles.role(config, args.role)
    print(f"{r.title}: {cert.subject.rfc4514_string()} (key {r.key_label!r} in the token)")
    print(f"  certificate: {r.cert_file} (install it, or the CA, as a trust anchor on the devices)")
    print(f"  SHA-256 fingerprint: {cert.fingerprint(hashes.SHA256()).hex(':')}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    publish = publish_commands(sub)
    sk = publish.add_parser("symmetric-key", help="an AES key made in the token, encrypted for each client"
                                                  " (type 0024, RFC 6031)")
    add_target_arguments(sk)
    sk.add_argument("--algorithm", choices=sorted(symkeys.ALGORITHM_BITS), default="aes256")
    sk.add_argument("--key-id", help="the key's identifier (PSKC keyId; default a fresh UUID)")
    sk.add_argument("--usage", action="append", choices=rfc6031.KEY_USAGES,
                    help="PSKC key usage (repeatable; default Encrypt and Decrypt)")
    sk.add_argument("--days", type=int, help="key expiry date this many days from now")
    sk.add_argument("--form", choices=("auto", *symkeys.LAYERS), default="auto",
                    help="enveloped: SignedData -> EnvelopedData -> SignedData; encrypted-key-package: SignedData ->"
                         " EncryptedKeyPackage (RFC 6032) -> SignedData; auto (default): the latter for clients"
                         " that declared support (asked /serverkeygen for one, RFC 8295 8.1)")
    sk.add_argument("--keep", action="store_true", help="keep the key in the token (sealed) after packaging")
    sk.set_defaults(func=cmd_publish_symmetric_key)

    fw = publish.add_parser("firmware", help="a firmware package (type 0026, RFC 4108): vendor-signed, checked"
                                             " against [distribution] firmware_anchors, or signed here (--sign)")
    fw.add_argument("file", help="the signed package (DER, PEM or base64), or with --sign the raw image")
    add_target_arguments(fw)
    fw.add_argument("--sign", action="store_true", help="sign the raw image with the appliance's firmware signer")
    fw.add_argument("--package-id", help="with --sign: the firmware package OID (fwPkgID)")
    fw.add_argument("--version", type=int, help="with --sign: its version number (verNum)")
    fw.add_argument("--legacy-name", help="with --sign: a legacy package name instead of OID and version")
    fw.add_argument("--hardware", action="append", help="with --sign: target hardware module type OID (repeatable)")
    fw.add_argument("--description", help="with --sign: content-hints description")
    fw.add_argument("--stale-version", type=int, help="with --sign: versions up to this one are stale")
    fw.set_defaults(func=cmd_publish_firmware)

    tp = publish.add_parser("tamp", help="a TAMP message (types 0028-0036, RFC 5934) signed by the TAMP manager")
    tp.add_argument("message", choices=sorted(TAMP_KINDS))
    add_target_arguments(tp)
    tp.add_argument("--add", action="append", help="update: trust anchor certificate(s) to add (PEM/DER file)")
    tp.add_argument("--remove", action="append", help="update: trust anchor certificate(s) whose key to remove")
    tp.add_argument("--apex", help="apex-update: the new apex trust anchor certificate")
    tp.add_argument("--clear-anchors", action="store_true", help="apex-update: clear the other trust anchors")
    tp.add_argument("--clear-communities", action="store_true", help="apex-update: clear the communities")
    tp.add_argument("--add-community", action="append", help="community-update: community OID to join")
    tp.add_argument("--remove-community", action="append", help="community-update: community OID to leave")
    tp.add_argument("--to-hardware", help="TAMP target: hardware module type OID (default: all modules)")
    tp.add_argument("--serial", action="append", help="with --to-hardware: serial number(s) (default all)")
    tp.add_argument("--to-community", action="append", help="TAMP target: community OID(s)")
    tp.add_argument("--terse", action="store_true", help="ask for terse answers")
    tp.set_defaults(func=cmd_publish_tamp)

    ta = sub.add_parser("tamp", help="what TAMP answers told about each client").add_subparsers(
        dest="tamp_command", required=True)
    an = ta.add_parser("anchors", help="a client's trust anchors and communities, as it last reported them")
    an.add_argument("client")
    an.set_defaults(func=cmd_tamp_anchors)

    sg = sub.add_parser("signer", help="the token keys that sign TAMP messages and firmware")
    sg.add_argument("role", choices=("tamp", "firmware"))
    sg.add_argument("--renew", action="store_true", help="issue a new certificate for the key")
    sg.set_defaults(func=cmd_signer)


__all__ = ["register"]
