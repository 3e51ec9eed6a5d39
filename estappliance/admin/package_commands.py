"""``estctl publish``, ``estctl packages`` and ``estctl group``: queue RFC 8295
packages for a client, a group or a whole label, see where each stands for
every client, and manage the groups.

Other package kinds add their own ``publish`` sub-commands::

    def register(sub):
        p = publish_commands(sub).add_parser("firmware", help=...)
        add_target_arguments(p)
        ...  # in the command: label, kind, target = target_from_args(args, config)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..config import DEFAULT_LABEL, Config
from ..pki import pal_types
from ..store import Store


def publish_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]
                     ) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The sub-commands of ``estctl publish`` (made on first use)."""
    parser = sub.choices.get("publish")
    if parser is None:
        parser = sub.add_parser("publish", help="queue a package (RFC 8295) for clients to fetch")
        parser.set_defaults(func=lambda args, config: parser.error("say what to publish"))
        # Kept on the parser: every package kind adds its publish command to it.
        parser._publish_commands = parser.add_subparsers(  # type: ignore[attr-defined]
            dest="publish_command", metavar="KIND", required=True)
    commands: argparse._SubParsersAction[argparse.ArgumentParser]
    commands = parser._publish_commands  # type: ignore[attr-defined]
    return commands


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label", default=DEFAULT_LABEL, help=f"CA label it is served under (default {DEFAULT_LABEL})")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--client", help="for one client (its name, or a certificate's subject DN)")
    who.add_argument("--group", help="for every member of a group (estctl group)")
    who.add_argument("--all", action="store_true", help="for every client of the label")
    parser.add_argument("--name", default="", help="a description shown by 'estctl packages list'")


def target_from_args(args: argparse.Namespace, config: Config, store: Store | None = None) -> tuple[str, str, str]:
    """(label, target kind, target) from the --label/--client/--group/--all options."""
    if args.label not in config.labels:
        raise SystemExit(f"estctl: no label {args.label!r} in {config.path}")
    if args.all:
        return args.label, "label", args.label
    if args.group:
        if store is not None and not store.groups.group_members(args.group):
            print(f"note: group {args.group!r} has no members yet; members added later get the package")
        return args.label, "group", args.group
    if store is not None:
        record = store.clients.client(args.client)
        if record is None:
            print(f"note: no password client {args.client!r}; a client authenticating by certificate"
                  " under that name will get it")
        elif not record.may_use(args.label):
            raise SystemExit(f"estctl: client {args.client!r} may not use label {args.label!r}")
    return args.label, "client", args.client


def _load_certs(path: str) -> list[x509.Certificate]:
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise SystemExit(f"estctl: {path}: not a certificate (PEM or DER): {e}") from None


def cmd_publish_eecert(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    certs = _load_certs(args.file)
    for cert in certs:
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if ca:
            raise SystemExit(f"estctl: {cert.subject.rfc4514_string()} is a CA certificate; /eecerts carries"
                             " end-entity certificates (CA certificates travel in /cacerts)")
    label, kind, target = target_from_args(args, config, store)
    for cert in certs:
        name = args.name or cert.subject.rfc4514_string()
        package = store.packages.queue_package(label=label, pal_type=pal_types.EE_CERTIFICATE, target_kind=kind, target=target,
                                      content=cert.public_bytes(serialization.Encoding.DER),
                                      media_type="application/pkcs7-mime", name=name)
        print(f"package {package.id}: EE certificate {cert.subject.rfc4514_string()} for {kind} {target}"
              f" (label {label})")


def cmd_packages_list(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    reports = store.packages.package_report(args.label, args.client, include_withdrawn=args.all)
    if not reports:
        print("no packages")
        return
    for report in reports:
        p = report.package
        head = f"{p.id}\t{p.pal_type}\t{p.label}\t{p.target_kind}:{p.target}"
        tail = f"{p.size}B{'' if not p.receipt_requested else ' receipt-requested'}" \
               f"{'' if p.withdrawn_at is None else ' withdrawn ' + p.withdrawn_at}\t{p.name}"
        if not report.deliveries:
            print(f"{head}\t-\tno client yet\t{tail}")
        for client, d in report.deliveries:
            if d is None:
                print(f"{head}\t{client}\tqueued\t{tail}")
                continue
            events = [f"offered {d.offered_at}"] if d.offered_at else []
            if d.downloaded_at:
                events.append(f"downloaded {d.downloaded_at} (x{d.downloads})")
            if d.receipt_at:
                events.append(f"receipt {d.receipt_at}")
            if d.error_at:
                events.append(f"error {d.error_code} {d.error_at}")
            print(f"{head}\t{client}\t{d.state}\t{'; '.join(events)}\t{tail}")


def cmd_packages_withdraw(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    if store.packages.package(args.id) is None:
        raise SystemExit(f"estctl: no package {args.id}")
    if not store.packages.withdraw_package(args.id):
        raise SystemExit(f"estctl: package {args.id} was already withdrawn")
    print(f"package {args.id} withdrawn: no longer offered (what was delivered stays on record)")


def cmd_group_add(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    unknown = [c for c in args.clients if store.clients.client(c) is None]
    for c in unknown:
        print(f"note: no password client {c!r} (a certificate subject may still be a member)")
    added = store.groups.add_to_group(args.group, args.clients)
    print(f"group {args.group!r}: {added} added, members: {', '.join(store.groups.group_members(args.group))}")


def cmd_group_remove(args: argparse.Namespace, config: Config) -> None:
    store = Store(config.store)
    removed = store.groups.remove_from_group(args.group, args.clients or None)
    if not removed:
        raise SystemExit(f"estctl: nothing to remove from group {args.group!r}")
    left = store.groups.group_members(args.group)
    print(f"group {args.group!r}: {removed} removed" + (f", members: {', '.join(left)}" if left else ", now empty"))


def cmd_group_list(args: argparse.Namespace, config: Config) -> None:
    groups = Store(config.store).groups.groups()
    if not groups:
        print("no groups")
    for name, members in groups.items():
        print(f"{name}\t{', '.join(members)}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ee = publish_commands(sub).add_parser("eecert", help="peer end-entity certificate(s) for /eecerts (type 0003)")
    ee.add_argument("file", help="PEM (one or more certificates) or DER")
    add_target_arguments(ee)
    ee.set_defaults(func=cmd_publish_eecert)

    pk = sub.add_parser("packages", help="queued packages and their delivery to each client").add_subparsers(
        dest="packages_command", required=True)
    ls = pk.add_parser("list", help="every package, one line per targeted client with its state")
    ls.add_argument("--label")
    ls.add_argument("--client")
    ls.add_argument("--all", action="store_true", help="include withdrawn packages")
    ls.set_defaults(func=cmd_packages_list)
    wd = pk.add_parser("withdraw", help="stop offering a package")
    wd.add_argument("id", type=int)
    wd.set_defaults(func=cmd_packages_withdraw)

    grp = sub.add_parser("group", help="groups of clients that packages can target").add_subparsers(
        dest="group_command", required=True)
    ga = grp.add_parser("add", help="add clients to a group (made on first use)")
    ga.add_argument("group")
    ga.add_argument("clients", nargs="+")
    ga.set_defaults(func=cmd_group_add)
    gr = grp.add_parser("remove", help="remove clients from a group (all of them if none named)")
    gr.add_argument("group")
    gr.add_argument("clients", nargs="*")
    gr.set_defaults(func=cmd_group_remove)
    grp.add_parser("list", help="groups and their members").set_defaults(func=cmd_group_list)
