"""Builds the Twisted service tree for ``twistd est`` from the config."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from twisted.application import internet, service
from twisted.logger import Logger
from twisted.python import usage

from .ca import CertificateAuthority, ContentSigner, TokenSigner, load_pem_certs
from .ca.crl import CrlIssuer
from .config import Config, ConfigError, load
from .errors import TokenUnavailable
from .ra import Authenticator, Registrar, TrustAnchors
from .store import STORE_THREAD, Store
from .token import Token
from .web import ServerContextFactory, enroll, make_site

log = Logger()
DEFAULT_CONFIG = "etc/estappliance.toml"


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
    crls: CrlIssuer

    def close(self) -> None:
        STORE_THREAD.run(self.store.close)


def build(config: Config) -> Appliance:
    token = Token(config.token.module, config.token.label, config.token.read_pin, config.token.softhsm2_conf)
    store = Store(config.store)
    if not config.ca.cert_file.exists():
        raise ConfigError(f"no CA certificate at {config.ca.cert_file}: run 'estctl init' first")
    ca = CertificateAuthority.from_files(TokenSigner(token, config.ca.key_label), config.ca.cert_file,
                                         config.ca.chain_file, store)
    anchors = {"ca": [ca.certificate]}
    for name, path in config.trust_anchors.items():
        anchors[name] = load_pem_certs(path)
    registrar = Registrar(config, Authenticator(store, TrustAnchors(anchors), config.server.realm), ca, store)
    content_signer = ContentSigner(token, config.ca.signer_key_label, config.ca.signer_cert_file,
                                   ca.ca_certificates())
    crls = CrlIssuer(ca.signer, ca.certificate, store)
    return Appliance(config, token, store, ca, registrar, content_signer, crls)


def site(appliance: Appliance):
    """The HTTP site: every operation the appliance serves, under every label."""
    s = appliance.config.server
    route_sets = [enroll.routes(appliance.registrar)]
    return make_site(route_sets, appliance.registrar.label, realm=s.realm, retry_after=s.retry_after,
                     max_body=s.max_body)


def tls_factory(appliance: Appliance) -> ServerContextFactory:
    s = appliance.config.server
    anchors = appliance.registrar.authenticator.anchors.certificates()
    return ServerContextFactory(s.tls_key, s.tls_cert, anchors)


class ApplianceService(service.MultiService):
    def __init__(self, appliance: Appliance):
        super().__init__()
        self.appliance = appliance

    def startService(self):
        super().startService()
        d = self.appliance.ca.check_key_matches()
        d.addCallback(self._key_checked)
        d.addErrback(lambda f: f.trap(TokenUnavailable) and log.warn(
            "token unavailable at start; signing answers 503 until it is back"))

    def _key_checked(self, matches: bool) -> None:
        if matches:
            log.info("CA key found in the token and matches {subject}",
                     subject=self.appliance.ca.certificate.subject.rfc4514_string())
        else:
            log.error("the token key {label!r} is not the CA certificate's key", label=self.appliance.config.ca.key_label)

    def stopService(self):
        d = super().stopService()
        self.appliance.close()
        return d


def makeService(options: Options) -> service.IService:
    try:
        config = load(options["config"])
        appliance = build(config)
    except (ConfigError, OSError, ValueError) as e:
        sys.exit(f"est: {e}")
    port = options["port"] if options["port"] is not None else config.server.port
    top = ApplianceService(appliance)
    listener = internet.SSLServer(port, site(appliance), tls_factory(appliance), interface=config.server.host)
    listener.setServiceParent(top)
    return top
