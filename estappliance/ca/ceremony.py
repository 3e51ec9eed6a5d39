"""The CA key ceremonies ``estctl ca rollover | switch | retire | renew``.

Each step is recorded (and audited) in the store before the next begins, so
a ceremony interrupted anywhere is resumed by running the same command
again, or undone before the switch (``estctl ca rollover --abort``). Until
the switch commits, every process keeps signing with the old key. New keys
are made in the token sensitive and not extractable; none ever leaves it.

Each step ends by bringing the node's own files (the CA certificate, the
TLS server, content-signer and role certificates, the chain after the TLS
certificate) in line with the store: ``update_node_files``. On every other
node sharing the store, the server's watch runs the same function when it
sees the step (``CaWatch.follow``), so ``estctl`` works on any node.

Blocking code for ``estctl`` (and the server's token thread); it runs without a reactor.
"""
from __future__ import annotations

import datetime
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..config import Config
from ..files import exclusive, write_atomically
from ..pki import certs
from ..pki.rollover import authority_key_identifier, key_identifier, link, root_update_validity
from ..store import Store
from ..store.generations import Generation
from ..token import KEY_SPECS, Token
from . import roles, setup
from .authority import load_pem_certs
from .signer import TokenSigner
from .crl import CrlIssuer
from .generations import WATCH_SECONDS, certs_pem, crl_suffix, from_files
from .setup import SetupError

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _cert(data: bytes | None) -> x509.Certificate:
    if data is None:
        raise SetupError("this generation has no certificate yet")
    return x509.load_der_x509_certificate(data)


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _generation(store: Store, gen_id: int) -> Generation:
    """A generation this ceremony step has just read or written."""
    gen = store.generations.generation(gen_id)
    if gen is None:
        raise SetupError(f"generation {gen_id} is gone from the store")
    return gen


def _is_root(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and authority_key_identifier(cert) in (key_identifier(cert), None)


def recorded(config: Config, store: Store) -> list[Generation]:
    """The generations, generation 1 recorded from the CA files first if the
    store has none yet (a CA made before generations)."""
    found = store.generations.generations()
    if found:
        return found
    if not config.ca.cert_file.exists():
        raise SetupError("the CA is not initialised (run 'estctl init')")
    g = from_files(config)
    store.generations.add_generation(key_label=g.key_label, key_type=g.key_type, state="current", cert=g.cert, chain=g.chain,
                         detail=f"generation recorded from {config.ca.cert_file} (key {g.key_label!r})")
    return store.generations.generations()


def _current(gens: list[Generation]) -> Generation:
    return next(g for g in gens if g.state == "current")


def _next(gens: list[Generation]) -> Generation | None:
    return next((g for g in gens if g.state == "next"), None)


def _new_label(config: Config) -> str:
    return f"{config.ca.key_label}-{uuid.uuid4().hex[:8]}"


def _key_matches(token: Token, label: str, cert: x509.Certificate) -> bool:
    return token.public_key_der(label) == _spki(cert.public_key())


# -- root key update (RFC 4210 4.4) ----------------------------------------------------------

def rollover(config: Config, token: Token, store: Store, key_type: str | None = None) -> Generation:
    """Begin (or resume) a root key update: the new key in the token, then
    NewWithNew, then NewWithOld and OldWithNew; each recorded as it is made."""
    gens = recorded(config, store)
    cur = _current(gens)
    old = _cert(cur.cert)
    if not _is_root(old):
        raise SetupError("this CA is a subordinate: its parent certifies a new key (estctl ca renew --csr-out FILE)")
    nxt = _next(gens)
    if nxt is not None and nxt.csr is not None:
        raise SetupError(f"a renewal is under way (generation {nxt.id}): finish it or abort it first")
    retiring = [g for g in gens if g.state == "retiring"]
    if nxt is None and retiring:
        raise SetupError(f"generation {retiring[0].id} is still retiring: one key update at a time"
                         " (estctl ca retire once nothing depends on it)")
    if nxt is None:
        kind = key_type or cur.key_type
        if kind not in KEY_SPECS:
            raise SetupError(f"unknown key type {kind!r}; known: {', '.join(KEY_SPECS)}")
        nxt = store.generations.add_generation(key_label=_new_label(config), key_type=kind, state="next",
                                   detail=f"rollover begun: new generation, key type {kind}")
    elif key_type is not None and key_type != nxt.key_type:
        raise SetupError(f"a rollover to {nxt.key_type} is under way (generation {nxt.id}); abort it to change the key type")
    if not token.has_key(nxt.key_label):
        if nxt.cert is not None:
            raise SetupError(f"the key {nxt.key_label!r} of generation {nxt.id} is gone from the token: abort the rollover")
        token.generate_keypair(nxt.key_label, KEY_SPECS[nxt.key_type], extractable=False)
        store.generations.audit_ca("ok", f"rollover: key {nxt.key_label!r} ({nxt.key_type}) generated in the token,"
                             " sensitive and not extractable")
    new_signer = TokenSigner(token, nxt.key_label)
    new_key = new_signer.key().public_key()
    if nxt.cert is None:
        builder = certs.root_ca(old.subject, new_key, x509.random_serial_number(), _now(), config.ca.validity_days)
        nwn = new_signer.sign_certificate(builder)
        nxt = store.generations.update_generation(nxt.id, f"rollover: NewWithNew issued, serial {nwn.serial_number:x}",
                                      cert=nwn.public_bytes(DER))
    nwn = _cert(nxt.cert)
    if nxt.new_with_old is None or nxt.old_with_new is None:
        (nwo_from, nwo_to), (own_from, own_to) = root_update_validity(old, nwn)
        nwo = TokenSigner(token, cur.key_label).sign_certificate(link(
            subject=nwn.subject, public_key=new_key, issuer=old, serial=x509.random_serial_number(),
            not_before=nwo_from, not_after=nwo_to))
        own = new_signer.sign_certificate(link(
            subject=old.subject, public_key=old.public_key(), issuer=nwn, serial=x509.random_serial_number(),
            not_before=own_from, not_after=own_to))
        nxt = store.generations.update_generation(
            nxt.id, f"rollover: links issued, NewWithOld serial {nwo.serial_number:x},"
                    f" OldWithNew serial {own.serial_number:x}",
            new_with_old=nwo.public_bytes(DER), old_with_new=own.public_bytes(DER))
    update_node_files(config, token, store)  # OldWithNew follows the server certificate during the overlap
    return nxt


def abort(config: Config, token: Token, store: Store) -> Generation:
    """Undo a rollover or renewal not yet switched: the generation is marked
    aborted (first: the CA never serves it again), then its key destroyed."""
    gens = recorded(config, store)
    nxt = _next(gens)
    if nxt is None:
        raise SetupError("no rollover or renewal is under way (after 'estctl ca switch' there is nothing to abort)")
    store.generations.set_generation_state(nxt.id, "aborted", f"generation {nxt.id} aborted before its switch")
    update_node_files(config, token, store)
    _sweep_keys(token, store)
    return _generation(store, nxt.id)


def _sweep_keys(token: Token, store: Store) -> list[str]:
    """Destroy the keys of aborted and retired generations that no live
    generation uses (finishes an abort or retire interrupted before it)."""
    gens = store.generations.generations()
    in_use = {g.key_label for g in gens if g.state in ("next", "current", "retiring")}
    destroyed = []
    for g in gens:
        if g.state in ("aborted", "retired") and g.key_label not in in_use and g.key_label not in destroyed \
                and token.has_key(g.key_label):
            token.destroy_keypair(g.key_label)
            destroyed.append(g.key_label)
            store.generations.audit_ca("ok", f"key {g.key_label!r} of generation {g.id} ({g.state}) destroyed in the token")
    return destroyed


# -- the switch --------------------------------------------------------------------------

def switch(config: Config, token: Token, store: Store) -> Generation:
    """Make the next generation current (one commit: every process sees it
    within seconds), then re-issue what the CA's own services present."""
    gens = recorded(config, store)
    nxt = _next(gens)
    if nxt is not None:
        if nxt.cert is None:
            raise SetupError(f"generation {nxt.id} waits for its certificate: import the parent's answer"
                             " (estctl ca import CERT --chain FILE)" if nxt.csr else
                             f"generation {nxt.id} is not complete: run 'estctl ca rollover' again to finish it")
        new = _cert(nxt.cert)
        if _is_root(new) and (nxt.new_with_old is None or nxt.old_with_new is None):
            raise SetupError(f"generation {nxt.id} has no links yet: run 'estctl ca rollover' again to finish it")
        if not token.has_key(nxt.key_label) or not _key_matches(token, nxt.key_label, new):
            raise SetupError(f"the token key {nxt.key_label!r} is not generation {nxt.id}'s certificate key")
        same_key = nxt.key_label == _current(gens).key_label
        store.generations.switch_generation(nxt.id, old_state="retired" if same_key else "retiring",
                                detail=f"switch: generation {nxt.id} (key {nxt.key_label!r}) signs from now on")
    elif not _needs_finishing(config, _current(gens)):
        raise SetupError("no rollover or renewal is ready to switch")
    update_node_files(config, token, store)
    return _current(store.generations.generations())


def _needs_finishing(config: Config, cur: Generation) -> bool:
    if not _holds(config.ca.cert_file, _cert(cur.cert)):
        return True
    return any(_issued_by_other(path, cur) for path in _service_cert_files(config))


def _service_cert_files(config: Config) -> list[Path]:
    d = config.distribution
    return [p for p in (config.server.tls_cert, config.ca.signer_cert_file, d.tamp_cert_file,
                        d.firmware_signer_cert_file) if p is not None and p.exists()]


def _issued_by_other(path: Path, cur: Generation) -> bool:
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    return authority_key_identifier(cert) != key_identifier(_cert(cur.cert))


def _holds(path: Path, cert: x509.Certificate) -> bool:
    """The PEM file exists and its first certificate is ``cert``."""
    if not path.exists():
        return False
    found = x509.load_pem_x509_certificates(path.read_bytes())
    return bool(found) and found[0] == cert


def node_files_lock(config: Config) -> Path:
    """One process of a node at a time rewrites its CA files (beside the CA certificate)."""
    return config.ca.cert_file.with_name(".ca-files.lock")


def update_node_files(config: Config, token: Token, store: Store, *, wait: bool = True) -> bool:
    """This node's files as the store's generations say (idempotent): the CA
    certificate and chain files, then the TLS server, content-signer and role
    certificates under the current key, then the chain that follows the TLS
    certificate (running servers re-read both within seconds). Nothing
    before any ceremony (no generation recorded: the files are estctl
    init's). With ``wait=False`` it returns False at once, writing nothing,
    while another process of this node is at it."""
    with exclusive(node_files_lock(config), wait=wait) as held:
        if not held:
            return False
        gens = store.generations.generations()
        if gens:
            _update_node_files(config, token, store, gens)
        return True


def _update_node_files(config: Config, token: Token, store: Store, gens: list[Generation]) -> None:
    cur = _current(gens)
    cert = _cert(cur.cert)
    chain = certs_pem(cur.chain)
    signer = TokenSigner(token, cur.key_label)
    if not _holds(config.ca.cert_file, cert):
        write_atomically(config.ca.cert_file, cert.public_bytes(PEM))
        if config.ca.chain_file is not None:
            write_atomically(config.ca.chain_file, b"".join(c.public_bytes(PEM) for c in chain))
        store.generations.audit_ca("ok", f"switch: {config.ca.cert_file} now holds generation {cur.id}'s certificate")
    if _issued_by_other(config.server.tls_cert, cur):
        setup.issue_tls_server(config, signer, cert, store, chain=_tls_chain(gens, cur))
        store.generations.audit_ca("ok", f"switch: TLS server certificate {config.server.tls_cert} re-issued"
                                         " under the new key")
    if config.ca.signer_cert_file is not None and config.ca.signer_cert_file.exists() \
            and _issued_by_other(config.ca.signer_cert_file, cur):
        setup.issue_content_signer(config, token, signer, cert, store)
        store.generations.audit_ca("ok", f"switch: content-signer certificate {config.ca.signer_cert_file}"
                                         " re-issued under the new key")
    for name in ("tamp", "firmware"):
        r = roles.role(config, name)
        if r.cert_file is not None and r.cert_file.exists() and _issued_by_other(r.cert_file, cur):
            roles.ensure(config, token, store, name, renew=True)
            store.generations.audit_ca("ok", f"switch: {r.title} certificate {r.cert_file} re-issued under the new key")
    _rewrite_tls_chain(config, gens)  # e.g. a renewal with the same key: the new CA certificate follows


def _tls_chain(gens: list[Generation], cur: Generation) -> list[x509.Certificate]:
    """What follows the TLS server certificate, so that a client trusting
    either root of a key update finds a path (OpenSSL looks in its own
    store first, then matches the chain by key identifier): during the
    overlap OldWithNew (the server certificate is the old key's), after the
    switch NewWithOld while the old root retires, else the CA chain."""
    nxt = _next(gens)
    if nxt is not None and nxt.old_with_new:
        return [_cert(nxt.old_with_new)]
    if any(g.state == "retiring" for g in gens) and cur.new_with_old:
        return [_cert(cur.new_with_old)]
    return [_cert(cur.cert), *certs_pem(cur.chain)]


def _rewrite_tls_chain(config: Config, gens: list[Generation]) -> None:
    """The same TLS server certificate with the chain ``_tls_chain`` gives
    (running servers re-read the file within seconds)."""
    tls = config.server.tls_cert
    if not tls.exists():
        return
    found = x509.load_pem_x509_certificates(tls.read_bytes())
    data = found[0].public_bytes(PEM) + b"".join(c.public_bytes(PEM) for c in _tls_chain(gens, _current(gens)))
    if data != tls.read_bytes():
        write_atomically(tls, data)


# -- retirement --------------------------------------------------------------------------

def dependents(store: Store, gens: list[Generation], old: Generation,
               now: datetime.datetime) -> list[tuple[int, str]]:
    """(serial, notAfter) of the valid certificates the old key issued."""
    after = [g.switched_at for g in gens if g.id > old.id and g.switched_at]
    # Workers sign with the old key until they see the switch (WATCH_SECONDS).
    until = None
    if after:
        until = (datetime.datetime.fromisoformat(min(after))
                 + datetime.timedelta(seconds=WATCH_SECONDS * 12)).isoformat(timespec="seconds")
    key_id = key_identifier(_cert(old.cert))
    return [(serial, not_after) for serial, not_after, der in store.generations.valid_certificates_since(until, now)
            if authority_key_identifier(_cert(der)) == key_id]


def retire(config: Config, token: Token, store: Store) -> list[Generation]:
    """Retire the retiring generations nothing valid depends on any more:
    a last CRL and ARL (in force until the last certificate they list
    expires), then the state, then the key destroyed in the token."""
    gens = recorded(config, store)
    retiring = [g for g in gens if g.state == "retiring"]
    if not retiring:
        if _sweep_keys(token, store):
            return []
        raise SetupError("no generation is retiring")
    now = _now()
    for old in retiring:
        left = dependents(store, gens, old, now)
        if left:
            last = max(na for _, na in left)
            raise SetupError(f"generation {old.id} (key {old.key_label!r}) still answers for {len(left)} valid"
                             f" certificate(s), the last valid until {last[:10]}: revoke them or wait;"
                             " nothing was changed")
    done = []
    for old in retiring:
        cert = _cert(old.cert)
        issuer = CrlIssuer(TokenSigner(token, old.key_label), cert, store, validity_hours=config.crl.validity_hours,
                           key_id=key_identifier(cert), suffix=crl_suffix(config, old.key_label))
        for kind in ("crl", "arl"):
            revoked_until = [na for serial, _, _, na, der in store.generations.revoked_certificates_with_der(
                ca_certificates=kind == "arl") if authority_key_identifier(_cert(der)) == key_identifier(cert)]
            in_force_until = max([datetime.datetime.fromisoformat(na) for na in revoked_until]
                                 + [now + issuer.validity]).replace(microsecond=0)
            record = issuer.issue_blocking(kind, next_update=in_force_until)
            store.generations.audit_ca("ok", f"retire: last {kind.upper()} of generation {old.id}, number {record.number},"
                                 f" in force until {record.next_update}")
        store.generations.set_generation_state(old.id, "retired", f"generation {old.id} (key {old.key_label!r}) retired")
        done.append(_generation(store, old.id))
    _sweep_keys(token, store)
    update_node_files(config, token, store)  # NewWithOld no longer follows the server certificate
    return done


# -- subordinate renewal -----------------------------------------------------------------

def renew(config: Config, token: Token, store: Store, csr_out: Path, *, same_key: bool = False,
          key_type: str | None = None) -> Generation:
    """A CSR for the parent CA: a new key in the token (or the current one,
    ``same_key``). The parent's answer goes in with ``import_renewal``."""
    gens = recorded(config, store)
    cur = _current(gens)
    if _is_root(_cert(cur.cert)):
        raise SetupError("this CA is a root: it makes its own new key (estctl ca rollover)")
    nxt = _next(gens)
    if nxt is not None and nxt.csr is None:
        raise SetupError(f"a rollover is under way (generation {nxt.id}): finish it or abort it first")
    retiring = [g for g in gens if g.state == "retiring"]
    if nxt is None and retiring and not same_key:
        raise SetupError(f"generation {retiring[0].id} is still retiring: one new key at a time"
                         " (estctl ca retire once nothing depends on it)")
    if nxt is None:
        label = cur.key_label if same_key else _new_label(config)
        kind = cur.key_type if same_key else (key_type or cur.key_type)
        if kind not in KEY_SPECS:
            raise SetupError(f"unknown key type {kind!r}; known: {', '.join(KEY_SPECS)}")
        nxt = store.generations.add_generation(key_label=label, key_type=kind, state="next",
                                   detail=f"renewal begun: {'the same key' if same_key else 'a new key'} ({kind})")
    if not token.has_key(nxt.key_label):
        token.generate_keypair(nxt.key_label, KEY_SPECS[nxt.key_type], extractable=False)
        store.generations.audit_ca("ok", f"renewal: key {nxt.key_label!r} ({nxt.key_type}) generated in the token,"
                             " sensitive and not extractable")
    if nxt.csr is None:
        subject = _cert(cur.cert).subject
        builder = (x509.CertificateSigningRequestBuilder().subject_name(subject)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(certs.key_usage(("digitalSignature", "keyCertSign", "cRLSign")), critical=True))
        csr = TokenSigner(token, nxt.key_label).sign_csr(builder)
        nxt = store.generations.update_generation(nxt.id, f"renewal: CSR made for generation {nxt.id}", csr=csr.public_bytes(PEM))
    assert nxt.csr is not None  # made just above if it was missing
    write_atomically(csr_out, nxt.csr)
    return nxt


def import_renewal(config: Config, token: Token, store: Store, cert_path: Path,
                   chain_path: Path | None) -> Generation:
    """The parent's answer to ``renew``: checked (key, CA, chain), recorded,
    then switched to at once."""
    gens = recorded(config, store)
    nxt = _next(gens)
    if nxt is None or nxt.csr is None:
        raise SetupError("no renewal waits for a certificate (estctl ca renew --csr-out FILE)")
    try:
        found = load_pem_certs(cert_path)
        chain = load_pem_certs(chain_path) if chain_path else []
    except (OSError, ValueError) as e:
        raise SetupError(f"cannot read certificates: {e}") from None
    if not found:
        raise SetupError(f"no certificate in {cert_path}")
    cert, chain = found[0], [*found[1:], *chain]
    if not _key_matches(token, nxt.key_label, cert):
        raise SetupError(f"the certificate is not for generation {nxt.id}'s key {nxt.key_label!r}")
    setup.check_parent_answer(cert, chain)
    store.generations.update_generation(nxt.id, f"renewal: the parent's certificate for generation {nxt.id} imported,"
                                    f" serial {cert.serial_number:x}",
                            cert=cert.public_bytes(DER), chain=b"".join(c.public_bytes(PEM) for c in chain))
    return switch(config, token, store)


def new_crl_issuers(config: Config, token: Token, store: Store) -> list[CrlIssuer]:
    """For ``estctl crl issue``: the issuer of every key that still signs CRLs."""
    gens = store.generations.generations() or [from_files(config)]
    several = len([g for g in gens if g.state in ("current", "retiring", "retired")]) > 1
    out = []
    for g in sorted(gens, key=lambda g: g.state != "current"):
        if g.state in ("current", "retiring"):
            cert = _cert(g.cert)
            out.append(CrlIssuer(TokenSigner(token, g.key_label), cert, store, key_id=key_identifier(cert)
                                 if several else None, suffix=crl_suffix(config, g.key_label)))
    return out
