"""Typed settings, loaded from a TOML file (stdlib tomllib).

Relative paths in the file are resolved against the directory that holds the
file, so a config can sit next to the state it describes. Secrets (the token
PIN) are never in the file itself: it names a file or an environment variable.
"""
from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from typing import Any, overload
from dataclasses import dataclass, field
from pathlib import Path

from .operations import OpsConfig, ops_config  # [admin], [health], [log], [metrics]

DEFAULT_LABEL = "default"

KEY_TYPES = ("ec-p256", "ec-p384", "ec-p521", "rsa2048", "rsa3072", "rsa4096")
AUTH_MODES = ("basic", "digest", "cert")
# RFC 7616 Digest algorithms, strongest first: the order their challenges go in.
DIGEST_ALGORITHMS = ("SHA-256", "MD5")
# Which WWW-Authenticate challenges come first on a 401 (see Label.challenge_order).
CHALLENGE_ORDERS = ("compatible", "strict")
SAN_TYPES = ("DNS", "IP", "email", "URI")
EXTENSION_NAMES = ("subjectAltName",)
APPROVAL_MODES = ("auto", "manual")
# /serverkeygen key forms (RFC 7030 4.4.2, RFC 8295 8.1 and 8.3).
SERVERKEYGEN_FORMS = ("pkcs8", "enveloped", "encrypted-key-package", "pkcs12")
# RFC 7030 3.2.2: a label must not equal an operation path segment.
RESERVED_LABELS = frozenset({
    "cacerts", "simpleenroll", "simplereenroll", "fullcmc", "serverkeygen", "csrattrs",
    "pal", "eecerts", "crls", "symmetrickeys", "firmware", "tamp",
})


class ConfigError(ValueError):
    """The configuration file is missing something or holds a bad value."""


def read_secret(env: str | None, file: Path | None, what: str) -> str | None:
    """A secret the config only points at: the environment variable ``env``
    if set, else the file's content (stripped); None when neither is configured."""
    if env and os.environ.get(env):
        return os.environ[env]
    if file is not None:
        try:
            return file.read_text().strip()
        except OSError as e:
            raise ConfigError(f"{what} file unreadable: {file}: {e.strerror}") from None
    return None


@dataclass(frozen=True)
class TokenConfig:
    module: Path
    label: str
    pin_file: Path | None = None
    pin_env: str | None = None
    softhsm2_conf: Path | None = None
    # Seconds a token call may take before its request is answered 503 (token/call_thread.py).
    call_timeout: float = 30.0

    def read_pin(self) -> str:
        pin = read_secret(self.pin_env, self.pin_file, "token PIN")
        if pin is None:
            raise ConfigError("token: set pin_file or pin_env (the PIN is never stored in the config)")
        return pin


@dataclass(frozen=True)
class StoreConfig:
    """Where the store is: a SQLite file (``path``, the default), or a
    PostgreSQL database (``url``) shared by several nodes. Its password is
    read from a file or the environment, never from the config; TLS to the
    database is set in the URL (``sslmode=verify-full&sslrootcert=...``).
    ``path``'s directory is this node's own state (metrics, backups) either way."""
    path: Path
    url: str | None = None
    password_file: Path | None = None
    password_env: str | None = None

    @property
    def where(self) -> str:
        return self.url if self.url is not None else str(self.path)

    def password(self) -> str | None:
        return read_secret(self.password_env, self.password_file, "store password")


def _store_config(raw: dict, base: Path) -> StoreConfig:
    st = raw.get("store", {})
    url = st.get("url")
    if url is not None:
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("store: url must be a postgresql:// URL (leave it out for the SQLite file at path)")
        if urllib.parse.urlsplit(url).password:
            raise ConfigError("store: no password in the url; use password_file or password_env")
    return StoreConfig(path=_path(base, st.get("path", "est.sqlite")), url=url,
                       password_file=_path(base, st.get("password_file")), password_env=st.get("password_env"))


@dataclass(frozen=True)
class CAConfig:
    key_label: str
    key_type: str
    subject: str
    validity_days: int
    cert_file: Path
    chain_file: Path | None
    # The key that signs CMS content (key packages, CMC responses, packages):
    # a token key with a certificate from this CA.
    signer_key_label: str = "est-signer"
    signer_cert_file: Path | None = None


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    tls_key: Path
    tls_cert: Path
    server_names: tuple[str, ...]
    max_body: int
    realm: str
    retry_after: int
    # SCHED_BATCH for the serving processes: a thread woken (the PKCS#11 or
    # store thread) no longer preempts the reactor thread holding the GIL.
    batch_scheduling: bool = True


@dataclass(frozen=True)
class Profile:
    name: str
    validity_days: int
    key_types: tuple[str, ...]
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    copy_san: bool
    # None: the CSR subject as is; else an RFC 4514 template such as
    # "CN={CN},O=Example" ({RDN} from the CSR subject, {client} the identity).
    subject_template: str | None = None
    required_rdns: tuple[str, ...] = ()
    # (RDN short name or SAN type, regex the whole value must match)
    name_patterns: tuple[tuple[str, str], ...] = ()
    required_extensions: tuple[str, ...] = ()
    allow_subject_change: bool = False  # on /simplereenroll
    csrattrs: bool = True  # False: /csrattrs answers 204


@dataclass(frozen=True)
class Label:
    name: str
    profile: Profile
    auth: tuple[str, ...]
    cert_anchors: tuple[str, ...]
    # Digest algorithms offered and accepted, strongest first (RFC 7616 3.7).
    digest_algorithms: tuple[str, ...] = DIGEST_ALGORITHMS
    # "compatible": Basic first, then Digest: clients that read only the first
    # WWW-Authenticate (Bouncy Castle, libest) find a scheme they can answer.
    # "strict": Digest first, strongest algorithm first, then Basic, for
    # clients that pick the strongest challenge offered.
    challenge_order: str = "compatible"
    pop_linking: bool = False  # require challengePassword = channel binding
    approval: str = "auto"  # or "manual": 202 until an operator approves
    # /serverkeygen: the key forms allowed; what a request naming none gets
    # ("pkcs8", "pkcs12" or None: refused); keep the key in the token after
    # delivery; ask for RFC 7191 receipts; PKCS#12 PBKDF2 iterations.
    serverkeygen_forms: tuple[str, ...] = SERVERKEYGEN_FORMS
    serverkeygen_default: str | None = "pkcs8"
    escrow: bool = False
    serverkeygen_receipts: bool = False
    pkcs12_iterations: int = 600_000
    # /fullcmc: take an unsigned PKIData from a TLS-authenticated client; RAs
    # are id-kp-cmcRA certificates of this CA (cmc_ra_eku) and certificates
    # with these subjects; may RAs revoke the label's certificates; "auto":
    # RA-signed requests skip manual approval ("label": the label decides).
    fullcmc_unsigned: bool = False
    cmc_ra_eku: bool = True
    cmc_ra_subjects: tuple[str, ...] = ()
    cmc_ra_revoke: bool = False
    cmc_ra_approval: str = "label"
    # /csrattrs also carries the profile as a CSR template (RFC 9908, and
    # RFC 8295 Appendix B's form); CSRs that contradict it are refused.
    csr_template: bool = False


@dataclass(frozen=True)
class CrlConfig:
    validity_hours: int = 24  # thisUpdate to nextUpdate
    reissue_before_hours: int = 6  # the schedule re-issues this long before nextUpdate
    check_minutes: int = 10  # how often the schedule looks
    # The schedule's lease (ca/lease.py): the holder renews it every third of
    # this; another node takes over within this plus a third once it dies.
    lease_seconds: int = 45


@dataclass(frozen=True)
class PalConfig:
    max_entries: int = 32  # past this, the last entry (type 0001) points to the next page
    renew_before_days: int = 30  # announce re-enrollment (0010/0017) this long before expiry
    history_days: int = 30  # completed deliveries stay listed, with their date, this long


def _crl_config(t: dict) -> CrlConfig:
    c = CrlConfig(validity_hours=_int(t, "validity_hours", 24, "crl", 1),
                  reissue_before_hours=_int(t, "reissue_before_hours", 6, "crl", 0),
                  check_minutes=_int(t, "check_minutes", 10, "crl", 1),
                  lease_seconds=_int(t, "lease_seconds", 45, "crl", 3))
    if c.reissue_before_hours >= c.validity_hours:
        raise ConfigError("[crl] reissue_before_hours must be less than validity_hours")
    return c


def _pal_config(t: dict) -> PalConfig:
    return PalConfig(max_entries=_int(t, "max_entries", 32, "pal", 2),
                     renew_before_days=_int(t, "renew_before_days", 30, "pal", 0),
                     history_days=_int(t, "history_days", 30, "pal", 0))


@dataclass(frozen=True)
class DistributionConfig:
    """RFC 8295 packages the appliance signs (TAMP, firmware) or checks (imported firmware)."""

    firmware_anchors: tuple[str, ...] = ()  # [trust_anchors] names (or "ca") that may sign imported firmware
    firmware_signer_key_label: str = "est-firmware-signer"  # token key when the appliance signs firmware
    firmware_signer_cert_file: Path | None = None
    tamp_key_label: str = "est-tamp-manager"  # token key of the TAMP trust anchor manager
    tamp_cert_file: Path | None = None
    keep_symmetric_keys: bool = False  # escrow: keep published symmetric keys (sealed) in the token


def _distribution_config(t: dict, base: Path, anchors: dict[str, Path], ca_dir: Path) -> DistributionConfig:
    """Certificates default to files next to the CA certificate."""
    names = tuple(t.get("firmware_anchors", ()))
    for name in names:
        if name != "ca" and name not in anchors:
            raise ConfigError(f"[distribution] firmware_anchors names unknown trust anchor {name!r}")
    return DistributionConfig(
        firmware_anchors=names,
        firmware_signer_key_label=t.get("firmware_signer_key_label", "est-firmware-signer"),
        firmware_signer_cert_file=_path(base, t.get("firmware_signer_cert_file",
                                                    str(ca_dir / "firmware-signer.pem"))),
        tamp_key_label=t.get("tamp_key_label", "est-tamp-manager"),
        tamp_cert_file=_path(base, t.get("tamp_cert_file", str(ca_dir / "tamp-manager.pem"))),
        keep_symmetric_keys=bool(t.get("keep_symmetric_keys", False)),
    )


@dataclass(frozen=True)
class Config:
    path: Path
    server: ServerConfig
    token: TokenConfig
    ca: CAConfig
    store: StoreConfig
    trust_anchors: dict[str, Path]
    profiles: dict[str, Profile]
    labels: dict[str, Label]
    workers: int = 1
    extra: dict = field(default_factory=dict)
    crl: CrlConfig = CrlConfig()
    pal: PalConfig = PalConfig()
    distribution: DistributionConfig = DistributionConfig()
    ops: OpsConfig = field(default_factory=OpsConfig)  # [admin], [health], [log], [metrics]

    def label(self, name: str | None) -> Label | None:
        return self.labels.get(name or DEFAULT_LABEL)


@overload
def _path(base: Path, value: str) -> Path: ...
@overload
def _path(base: Path, value: str | None) -> Path | None: ...
def _path(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _int(table: dict, key: str, default: int, where: str, minimum: int = 0) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 10)
        except ValueError:
            raise ConfigError(f"[{where}] {key} must be a whole number, not {value!r}") from None
    if value < minimum:
        raise ConfigError(f"[{where}] {key} must be at least {minimum}")
    return value


def _bool(table: dict, key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"[{where}] {key} must be true or false, not {value!r}")
    return value


def _positive_float(table: dict, key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"[{where}] {key} must be a number of seconds above 0, not {value!r}")
    return float(value)


def _require(table: dict[str, Any], key: str, where: str) -> Any:
    if key not in table:
        raise ConfigError(f"[{where}] needs '{key}'")
    return table[key]


def _profile(name: str, t: dict) -> Profile:
    from ..pki import certs  # pure; imported here to keep config importable alone

    where = f"[profiles.{name}]"
    key_types = tuple(t.get("key_types", KEY_TYPES))
    for k in key_types:
        if k not in KEY_TYPES:
            raise ConfigError(f"{where} unknown key type {k!r}; known: {', '.join(KEY_TYPES)}")
    if not key_types:
        raise ConfigError(f"{where} key_types is empty")
    key_usage = tuple(t.get("key_usage", ("digitalSignature", "keyEncipherment")))
    eku = tuple(t.get("extended_key_usage", ("clientAuth",)))
    try:
        certs.key_usage(key_usage)
        certs.extended_key_usage(eku)
    except ValueError as e:
        raise ConfigError(f"{where} {e}") from None
    template = t.get("subject_template")
    if template is not None:
        try:
            certs.parse_name(template.replace("{", "").replace("}", ""))
        except ValueError as e:
            raise ConfigError(f"{where} subject_template: {e}") from None
    patterns = []
    for key, pattern in dict(t.get("name_patterns", {})).items():
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"{where} name_patterns.{key}: bad regular expression: {e}") from None
        patterns.append((key, pattern))
    required_ext = tuple(t.get("required_extensions", ()))
    for ext in required_ext:
        if ext not in EXTENSION_NAMES:
            raise ConfigError(f"{where} unknown extension {ext!r}; known: {', '.join(EXTENSION_NAMES)}")
    return Profile(
        name=name,
        validity_days=_int(t, "validity_days", 365, f"profiles.{name}", 1),
        key_types=key_types,
        key_usage=key_usage,
        extended_key_usage=eku,
        copy_san=bool(t.get("copy_san", True)),
        subject_template=template,
        required_rdns=tuple(t.get("required_rdns", ())),
        name_patterns=tuple(patterns),
        required_extensions=required_ext,
        allow_subject_change=bool(t.get("allow_subject_change", False)),
        csrattrs=bool(t.get("csrattrs", True)),
    )


def _label(name: str, t: dict, profiles: dict[str, Profile], anchors: dict[str, Path]) -> Label:
    if name in RESERVED_LABELS or not re.fullmatch(r"[A-Za-z0-9._~-]+", name):
        raise ConfigError(f"[labels.{name}] a label is letters, digits and . _ ~ - only, and not an EST"
                          " operation name")
    pname = t.get("profile", "default")
    if pname not in profiles:
        raise ConfigError(f"[labels.{name}] names unknown profile {pname!r}")
    auth = tuple(t.get("auth", AUTH_MODES))
    for a in auth:
        if a not in AUTH_MODES:
            raise ConfigError(f"[labels.{name}] unknown auth mode {a!r}; known: {', '.join(AUTH_MODES)}")
    cert_anchors = tuple(t.get("cert_anchors", ("ca",)))
    for a in cert_anchors:
        if a != "ca" and a not in anchors:
            raise ConfigError(f"[labels.{name}] names unknown trust anchor {a!r}")
    digest_algorithms = t.get("digest_algorithms", DIGEST_ALGORITHMS)
    if (not isinstance(digest_algorithms, list | tuple) or not digest_algorithms
            or any(a not in DIGEST_ALGORITHMS for a in digest_algorithms)):
        raise ConfigError(f"[labels.{name}] digest_algorithms: one or more of {', '.join(DIGEST_ALGORITHMS)}")
    challenge_order = t.get("challenge_order", "compatible")
    if challenge_order not in CHALLENGE_ORDERS:
        raise ConfigError(f"[labels.{name}] challenge_order must be one of {', '.join(CHALLENGE_ORDERS)}")
    approval = t.get("approval", "auto")
    if approval not in APPROVAL_MODES:
        raise ConfigError(f"[labels.{name}] approval must be one of {', '.join(APPROVAL_MODES)}")
    forms = tuple(t.get("serverkeygen_forms", SERVERKEYGEN_FORMS))
    if set(forms) - set(SERVERKEYGEN_FORMS):
        raise ConfigError(f"[labels.{name}] serverkeygen_forms: known forms are {', '.join(SERVERKEYGEN_FORMS)}")
    default = t.get("serverkeygen_default", next((f for f in ("pkcs8", "pkcs12") if f in forms), None))
    if default is not None and (default not in ("pkcs8", "pkcs12") or default not in forms):
        raise ConfigError(f"[labels.{name}] serverkeygen_default must be 'pkcs8' or 'pkcs12', and allowed")
    return Label(name=name, profile=profiles[pname], auth=auth, cert_anchors=cert_anchors,
                 digest_algorithms=tuple(a for a in DIGEST_ALGORITHMS if a in digest_algorithms),
                 challenge_order=challenge_order,
                 pop_linking=bool(t.get("pop_linking", False)), approval=approval, serverkeygen_forms=forms,
                 serverkeygen_default=default, escrow=bool(t.get("escrow", False)),
                 serverkeygen_receipts=bool(t.get("serverkeygen_receipts", False)),
                 pkcs12_iterations=_int(t, "pkcs12_iterations", 600_000, f"labels.{name}", 10_000),
                 csr_template=_bool(t, "csr_template", False, f"labels.{name}"),
                 **_fullcmc_options(name, t))


def _fullcmc_options(name: str, t: dict) -> dict:
    from ..pki import certs  # pure; imported here to keep config importable alone

    subjects = tuple(t.get("cmc_ra_subjects", ()))
    for s in subjects:
        try:
            certs.parse_name(s)
        except ValueError as e:
            raise ConfigError(f"[labels.{name}] cmc_ra_subjects: {s!r}: {e}") from None
    approval = t.get("cmc_ra_approval", "label")
    if approval not in ("label", "auto"):
        raise ConfigError(f"[labels.{name}] cmc_ra_approval must be 'label' or 'auto'")
    return dict(fullcmc_unsigned=bool(t.get("fullcmc_unsigned", False)), cmc_ra_eku=bool(t.get("cmc_ra_eku", True)),
                cmc_ra_subjects=subjects, cmc_ra_revoke=bool(t.get("cmc_ra_revoke", False)),
                cmc_ra_approval=approval)


def load(path: str | os.PathLike) -> Config:
    path = Path(path).resolve()
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    return from_dict(raw, path)


def from_dict(raw: dict, path: Path) -> Config:
    base = path.parent
    s = raw.get("server", {})
    server = ServerConfig(
        host=s.get("host", "127.0.0.1"),
        port=_int(s, "port", 8443, "server"),
        tls_key=_path(base, s.get("tls_key", "tls/server.key")),
        tls_cert=_path(base, s.get("tls_cert", "tls/server.pem")),
        server_names=tuple(s.get("server_names", ("localhost", "127.0.0.1"))),
        max_body=_int(s, "max_body", 64 * 1024, "server", 1024),
        realm=s.get("realm", "estappliance"),
        retry_after=_int(s, "retry_after", 10, "server", 1),
        batch_scheduling=_bool(s, "batch_scheduling", True, "server"),
    )
    t = raw.get("token")
    if not t:
        raise ConfigError("the config needs a [token] table")
    token = TokenConfig(
        module=_path(base, _require(t, "module", "token")),
        label=_require(t, "label", "token"),
        pin_file=_path(base, t.get("pin_file")),
        pin_env=t.get("pin_env"),
        softhsm2_conf=_path(base, t.get("softhsm2_conf")),
        call_timeout=_positive_float(t, "call_timeout", 30.0, "token"),
    )
    c = raw.get("ca", {})
    key_type = c.get("key_type", "ec-p256")
    if key_type not in KEY_TYPES:
        raise ConfigError(f"[ca] unknown key_type {key_type!r}; known: {', '.join(KEY_TYPES)}")
    ca_file = _path(base, c.get("cert_file", "ca/ca.pem"))
    ca = CAConfig(
        key_label=c.get("key_label", "est-ca"),
        key_type=key_type,
        subject=c.get("subject", "CN=estappliance CA"),
        validity_days=_int(c, "validity_days", 3650, "ca", 1),
        cert_file=ca_file,
        chain_file=_path(base, c.get("chain_file", str(ca_file.parent / "chain.pem"))),
        signer_key_label=c.get("signer_key_label", "est-signer"),
        # Next to the CA certificate unless said otherwise.
        signer_cert_file=_path(base, c.get("signer_cert_file", str(ca_file.parent / "signer.pem"))),
    )
    anchors = {n: _path(base, p) for n, p in raw.get("trust_anchors", {}).items()}
    if "ca" in anchors:
        raise ConfigError("[trust_anchors] 'ca' is reserved for this appliance's own CA")
    profiles = {"default": _profile("default", {})}
    for name, pt in raw.get("profiles", {}).items():
        profiles[name] = _profile(name, pt)
    labels_raw = dict(raw.get("labels", {}))
    labels_raw.setdefault(DEFAULT_LABEL, {})
    labels = {n: _label(n, lt, profiles, anchors) for n, lt in labels_raw.items()}
    return Config(
        path=path,
        server=server,
        token=token,
        ca=ca,
        store=_store_config(raw, base),
        trust_anchors=anchors,
        profiles=profiles,
        labels=labels,
        workers=_int(s, "workers", 1, "server", 1),
        crl=_crl_config(raw.get("crl", {})),
        pal=_pal_config(raw.get("pal", {})),
        distribution=_distribution_config(raw.get("distribution", {}), base, anchors, ca.cert_file.parent),
        ops=_ops_config(raw, base),
    )


def _ops_config(raw: dict, base: Path) -> OpsConfig:
    return ops_config(raw, base, _path(base, raw.get("store", {}).get("path", "est.sqlite")))
