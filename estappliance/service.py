"""Builds the Twisted service tree for ``twistd est`` from the config."""
from __future__ import annotations

import dataclasses
import datetime
import functools
import gc
import os
import signal
import sys
from dataclasses import dataclass
from typing import TypeVar

from twisted.application import internet, service
from twisted.internet import defer
from twisted.internet.interfaces import IProtocolFactory
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from .ca import CertificateAuthority, ContentSigner, TokenSigner, load_pem_certs
from .ca import ceremony, generations
from .ca.crl import CrlSchedule
from .ca.digest_credentials import Ha1Opener
from .ca.lease import LeaseKeeper
from .ca.shared_secrets import FetchLater, SharedSecrets, fetch_at_start
from .ca.generations import CaCrls, CaWatch, LiveGeneration
from .config import Config, ConfigError, load
from .errors import StoreUnavailable, TokenUnavailable
from .distribution import PackageQueue
from .distribution.builder import PalBuilder, StandingItems
from .ra import Authenticator, Registrar, TrustAnchors
from .ra.delivery import PackageDelivery
from .ra.package_access import Distribution
from .ca.identity_proofs import IdentityProofs
from .ra.cmc import FullCmc
from .ra.results import EnrollmentResults
from .ra.keygen_requests import KeygenRegistrar
from .store import READ_CALLS, READ_THREAD, STORE_CALLS, STORE_THREAD, SchemaMismatch, Store
from .store import deadline as store_deadline
from .token import Token, on_token_thread
from .token.session import drop_all as drop_all_sessions
from .token.call_thread import TOKEN_CALLS
from .web import ServerContextFactory, distribution_routes, enroll_routes, fullcmc_routes, make_site, serverkeygen_routes
from .web import package_routes
from .worker_pool import WorkerPool
from .ops.admin import operated, prepare_metrics_dir, workers_readiness
from .ops.health import ReadinessProbe
from .ops.logs import watch_audit
from .ops.reload import ReloadOnHangup, reload_appliance
from .web.health import routes as health_routes
from .web.ticket_keys import SessionTicketKeys, TicketKeyRotation

log = Logger()
DEFAULT_CONFIG = "etc/estappliance.toml"
# Kept sealed in the store, the same in every worker and on every node (ca/shared_secrets.py):
# the key of the Digest nonces' MAC, the secret the TLS session-ticket keys derive from.
SHARED_SECRETS = ("digest", "tls-ticket")

T = TypeVar("T")


class Options(usage.Options):
    optParameters = [
        ["config", "c", os.environ.get("EST_CONFIG", DEFAULT_CONFIG), "path to estappliance.toml"],
        ["port", "p", None, "override [server] port (0 picks a free one)", int],
    ]


@dataclass
class Appliance:
    """The wired-up parts, for the service and for tests."""

    config: Config
    token: Token
    store: Store
    ca: CertificateAuthority
    registrar: Registrar
    content_signer: ContentSigner
    crls: CaCrls
    worker_index: int = 0
    packages: PackageQueue | None = None  # RFC 8295 package queue (set by build)
    distribution: Distribution | None = None  # /pal, /eecerts, /crls (set by build)
    keygen: KeygenRegistrar | None = None  # /serverkeygen and /serverkeygen/return (set by build)
    # Called with nothing after a CA generation change was applied (e.g. the TLS context reload).
    ca_listeners: list = dataclasses.field(default_factory=list)
    readiness: ReadinessProbe | None = None  # /readyz (set by build)
    secrets: SharedSecrets | None = None  # the secrets every node shares (set by build)
    secrets_later: list[str] = dataclasses.field(default_factory=list)  # not had at start: the token was away
    ticket_keys: SessionTicketKeys | None = None  # TLS session tickets every worker and node opens (set by build)

    def use_shared_secret(self, name: str, secret: bytes) -> None:
        """A shared secret had after start (FetchLater) replaces this process's own key."""
        if name == "digest":
            self.registrar.authenticator.digest.use_secret(secret)
        elif name == "tls-ticket" and self.ticket_keys is not None:
            self.ticket_keys.use_secret(secret)

    def apply_generations(self, gens: list[LiveGeneration]) -> None:
        """A ceremony step changed the CA (ca/generations.py): sign with the
        current key, trust every generation's certificates, serve every
        key's CRL, re-read the content signer and the TLS certificate."""
        self.ca.apply_generations(gens)
        self.registrar.authenticator.anchors.set_anchor("ca", generations.anchors(gens))
        self.crls.set_issuers(generations.crl_issuers(self.config, self.token, self.store, gens))
        self.content_signer.reload(self.ca.ca_certificates())
        for listener in self.ca_listeners:
            listener()

    def ca_watch(self) -> CaWatch:
        """Every process follows the CA's generations; the primary also keeps
        this node's CA, TLS and signer files in line with them."""
        watch = CaWatch(self.config, self.token, self.store, self.apply_generations,
                        follow=self.update_node_files if self.primary else None)
        watch.prime()
        return watch

    def update_node_files(self) -> defer.Deferred[bool]:
        """ceremony.update_node_files on the token thread, as estctl runs it
        (the token and its own connection to the store), without waiting for
        another process of the node that is at it (False)."""
        def run() -> bool:
            store = Store(self.config.store)
            try:
                return ceremony.update_node_files(self.config, self.token, store, wait=False)
            finally:
                store.close()
        return on_token_thread(run)

    @property
    def primary(self) -> bool:
        """The one process (of several workers) that runs the schedules."""
        return self.worker_index == 0

    def close(self) -> None:
        READ_THREAD.run(self.registrar.authenticator.reads.close)
        STORE_THREAD.run(self.store.close)


def build(config: Config, worker_index: int = 0) -> Appliance:
    token = Token.from_config(config.token)
    TOKEN_CALLS.timeout, TOKEN_CALLS.on_recovered = config.token.call_timeout, drop_all_sessions
    STORE_CALLS.timeout = READ_CALLS.timeout = store_deadline.SERVER_TIMEOUT  # a hung database: 503, not a hang
    store = Store(config.store)
    if not config.ca.cert_file.exists():
        raise ConfigError(f"no CA certificate at {config.ca.cert_file}: run 'estctl init' first")
    ca = CertificateAuthority.from_files(TokenSigner(token, config.ca.key_label), config.ca.cert_file,
                                         config.ca.chain_file, store)
    gens = generations.live(generations.records(config, store))
    ca.apply_generations(gens)
    anchors = {"ca": generations.anchors(gens)}
    for name, path in config.trust_anchors.items():
        anchors[name] = load_pem_certs(path)
    secrets = SharedSecrets(token, store, config.ca.key_label, legacy_dir=config.store.path.parent)
    shared, later = fetch_at_start(secrets, SHARED_SECRETS)
    authenticator = Authenticator(store, TrustAnchors(anchors), config.server.realm, shared.get("digest"),
                                  Ha1Opener(token, config.ca.key_label))
    registrar = Registrar(config, authenticator, ca, store)
    content_signer = ContentSigner(token, config.ca.signer_key_label, config.ca.signer_cert_file,
                                   ca.ca_certificates())
    crls = CaCrls(generations.crl_issuers(config, token, store, gens))
    packages = PackageQueue(store)
    standing = StandingItems(ca, crls, datetime.timedelta(hours=config.crl.reissue_before_hours))
    dist = Distribution(registrar, packages, standing, PalBuilder(store, standing, config.pal), config.pal)
    return Appliance(config, token, store, ca, registrar, content_signer, crls, worker_index=worker_index,
                     packages=packages, distribution=dist, keygen=KeygenRegistrar.build(registrar, content_signer),
                     readiness=ReadinessProbe(ca, store, config.ops.health), secrets=secrets, secrets_later=later,
                     ticket_keys=SessionTicketKeys(shared.get("tls-ticket")))


def site(appliance: Appliance) -> IProtocolFactory:
    """The HTTP site: every operation the appliance serves, under every label."""
    s = appliance.config.server
    distribution, keygen, readiness = appliance.distribution, appliance.keygen, appliance.readiness
    if distribution is None or keygen is None or readiness is None:
        raise ValueError("the appliance is not built: service.build sets its distribution, keygen and readiness")
    route_sets = [
        # RFC 7030 enrollment; /cacerts downloads are noted for the PAL
        distribution_routes.track_cacerts(enroll_routes.routes(appliance.registrar), distribution),
        # RFC 8295: /pal, /eecerts, /crls, GET on the enrollment paths
        distribution_routes.routes(distribution, EnrollmentResults(distribution)),
        serverkeygen_routes.routes(keygen),  # and /serverkeygen/return
        # /symmetrickeys, /firmware, /tamp and their returns
        package_routes.routes(PackageDelivery(distribution)),
        fullcmc_routes.routes(FullCmc(appliance.registrar, appliance.content_signer, appliance.crls,
                               IdentityProofs(appliance.token, appliance.store))),
    ]
    return make_site(route_sets, appliance.registrar.label, realm=s.realm, retry_after=s.retry_after,
                     max_body=s.max_body, plain=health_routes(readiness.check),
                     request_log=appliance.config.ops.log.requests)


def tls_factory(appliance: Appliance) -> ServerContextFactory:
    """The TLS context; re-made (for new connections only) when the CA
    generations change: a switch re-issues the server certificate."""
    s = appliance.config.server
    anchors = appliance.registrar.authenticator.anchors.certificates
    factory = ServerContextFactory(s.tls_key, s.tls_cert, anchors(), appliance.ticket_keys)
    appliance.ca_listeners.append(lambda: factory.reload(s.tls_key, s.tls_cert, anchors()))
    return factory


def quiet_gc() -> None:
    """Move everything built at start-up out of the collector's sight and
    collect the young generation less often: full collections over the
    long-lived objects were the longest pauses in the latency tail."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20000, 20, 50)


def batch_scheduling() -> bool:
    """SCHED_BATCH for every thread of this process (threads started later
    inherit it). Under load each enrollment wakes the PKCS#11 and store
    threads; with the normal policy the woken thread preempted the reactor
    thread, which held the GIL, so it ran only to block on the GIL again: a
    worker was preempted about once per request. SCHED_BATCH keeps the nice
    level and fairness and only drops that wake-up preemption (ten times
    fewer involuntary switches of the reactor thread measured under load)."""
    if not hasattr(os, "SCHED_BATCH"):
        return False
    try:
        for task in os.listdir("/proc/self/task"):
            os.sched_setscheduler(int(task), os.SCHED_BATCH, os.sched_param(0))
    except OSError as e:
        log.warn("could not set batch scheduling: {error}", error=e)
        return False
    return True


CRL_SCHEDULE_LEASE = "crl-schedule"


class ApplianceService(service.MultiService):
    def __init__(self, appliance: Appliance) -> None:
        super().__init__()
        self.appliance = appliance
        if appliance.primary:
            # One node of those sharing the store runs the CRL schedule: the lease's holder.
            c = appliance.config.crl
            schedule = CrlSchedule(appliance.crls, datetime.timedelta(hours=c.reissue_before_hours), c.check_minutes)
            schedule.lease = LeaseKeeper(appliance.store, CRL_SCHEDULE_LEASE, schedule.check,
                                         term=c.lease_seconds, renew_every=c.lease_seconds / 3)
            schedule.lease.setServiceParent(self)
            schedule.setServiceParent(self)
        appliance.ca_watch().setServiceParent(self)  # every process: a switch reaches every worker
        if appliance.ticket_keys is not None:
            TicketKeyRotation(appliance.ticket_keys).setServiceParent(self)
        if appliance.secrets is not None and appliance.secrets_later:
            FetchLater(appliance.secrets, {name: functools.partial(appliance.use_shared_secret, name)
                                           for name in appliance.secrets_later}).setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        quiet_gc()
        if self.appliance.config.server.batch_scheduling:
            batch_scheduling()
        d = self.appliance.ca.check_key_matches()
        d.addCallback(self._key_checked)
        d.addErrback(self._token_away)

    @staticmethod
    def _token_away(failure: Failure) -> None:
        failure.trap(TokenUnavailable)
        log.warn("token unavailable at start; signing answers 503 until it is back")

    def _key_checked(self, matches: bool) -> None:
        if matches:
            log.info("CA key found in the token and matches {subject}",
                     subject=self.appliance.ca.certificate.subject.rfc4514_string())
        else:
            log.error("the token key {label!r} is not the CA certificate's key",
                      label=self.appliance.config.ca.key_label)

    def stopService(self) -> defer.Deferred[None]:
        d = defer.maybeDeferred(super().stopService)

        def close(result: T) -> T:
            self.appliance.close()
            return result
        # The store closes once the children are done (a CRL being issued finishes first).
        d.addBoth(close)
        return d


def makeService(options: Options) -> service.IService:
    """One process serving, or (``[server] workers`` > 1) a master that runs
    that many worker processes on one listening socket."""
    try:
        config = load(options["config"])
        port = options["port"] if options["port"] is not None else config.server.port
        metrics_dir = prepare_metrics_dir(config)
        if config.workers > 1:
            if not config.ca.cert_file.exists():
                raise ConfigError(f"no CA certificate at {config.ca.cert_file}: run 'estctl init' first")
            Store(config.store).close()  # an older schema is refused here, not by each worker in turn
            pool = WorkerPool(str(config.path), config.workers, config.server.host, port)
            top = service.MultiService()
            pool.setServiceParent(top)
            ReloadOnHangup(lambda: pool.signal_workers(signal.SIGHUP)).setServiceParent(top)
            return operated(config, top, workers_readiness(pool.links), metrics_dir)
        appliance = build(config)
        if config.ops.log.syslog:
            watch_audit(appliance.store)
    except (ConfigError, OSError, ValueError, SchemaMismatch, StoreUnavailable) as e:
        sys.exit(f"est: {e}")
    top = ApplianceService(appliance)
    tls = tls_factory(appliance)
    listener = internet.SSLServer(port, site(appliance), tls, interface=config.server.host)
    listener.setServiceParent(top)
    ReloadOnHangup(lambda: reload_appliance(appliance, tls)).setServiceParent(top)
    assert appliance.readiness is not None  # build() sets it
    return operated(config, top, appliance.readiness.check, metrics_dir)
