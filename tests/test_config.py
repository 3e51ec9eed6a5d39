"""estappliance.config: the sample file, defaults, and every refusal as a
ConfigError whose message names what is wrong."""
from __future__ import annotations

import json
import os
import tomllib
import uuid
from pathlib import Path

from twisted.trial import unittest

from estappliance import config
from estappliance.config import DEFAULT_LABEL, KEY_TYPES, ConfigError, from_dict, load

SAMPLE = Path(__file__).resolve().parent.parent / "etc" / "estappliance.toml"

MINIMAL_TOKEN = {"module": "/usr/lib/softhsm/libsofthsm2.so", "label": "est", "pin_file": "token.pin"}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string, for the plain text used here


def _toml(tables: dict) -> str:
    """Just enough TOML writing for these tests: nested tables of scalars and lists."""
    lines = []

    def emit(prefix, table):
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and (scalars or not subtables):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{json.dumps(k)} = {_toml_value(v)}")
        for k, v in subtables.items():
            emit(f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k), v)

    emit("", tables)
    return "\n".join(lines) + "\n"


class ConfigTestCase(unittest.TestCase):
    def write(self, tables: dict | None = None, text: str | None = None) -> Path:
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        path = directory / "estappliance.toml"
        path.write_text(text if text is not None else _toml(tables))
        return path

    def load_tables(self, **tables) -> config.Config:
        tables.setdefault("token", dict(MINIMAL_TOKEN))
        return load(self.write(tables))

    def assertConfigError(self, *fragments, **tables) -> ConfigError:
        tables.setdefault("token", dict(MINIMAL_TOKEN))
        path = self.write(tables)
        err = self.assertRaises(ConfigError, load, path)
        for fragment in fragments:
            self.assertIn(fragment, str(err))
        return err


class SampleConfigTests(ConfigTestCase):
    def test_sample_loads(self):
        cfg = load(SAMPLE)
        with open(SAMPLE, "rb") as f:
            raw = tomllib.load(f)
        self.assertEqual(cfg.path, SAMPLE)
        self.assertEqual(cfg.server.host, raw["server"]["host"])
        self.assertEqual(cfg.server.port, raw["server"]["port"])
        self.assertEqual(cfg.server.server_names, tuple(raw["server"]["server_names"]))
        self.assertEqual(cfg.server.max_body, raw["server"]["max_body"])
        self.assertEqual(cfg.server.retry_after, raw["server"]["retry_after"])
        self.assertEqual(cfg.token.label, raw["token"]["label"])
        self.assertEqual(cfg.token.module, Path(raw["token"]["module"]))
        self.assertEqual(cfg.ca.key_label, raw["ca"]["key_label"])
        self.assertEqual(cfg.ca.key_type, raw["ca"]["key_type"])
        self.assertEqual(cfg.ca.subject, raw["ca"]["subject"])
        self.assertEqual(cfg.ca.validity_days, raw["ca"]["validity_days"])
        self.assertEqual(set(cfg.labels), set(raw.get("labels", {})) | {DEFAULT_LABEL})
        default = cfg.labels[DEFAULT_LABEL]
        raw_default = raw.get("labels", {}).get(DEFAULT_LABEL, {})
        self.assertEqual(default.auth, tuple(raw_default.get("auth", config.AUTH_MODES)))
        self.assertEqual(default.profile.name, raw_default.get("profile", "default"))
        profile = cfg.profiles["default"]
        raw_profile = raw["profiles"]["default"]
        self.assertEqual(profile.key_types, tuple(raw_profile["key_types"]))
        self.assertEqual(profile.key_usage, tuple(raw_profile["key_usage"]))
        self.assertEqual(profile.extended_key_usage, tuple(raw_profile["extended_key_usage"]))
        self.assertEqual(profile.validity_days, raw_profile["validity_days"])

    def test_sample_as_shipped(self):
        """What `make run` relies on: port 8443, the est-ca key, one default label."""
        cfg = load(SAMPLE)
        self.assertEqual((cfg.server.host, cfg.server.port), ("127.0.0.1", 8443))
        self.assertEqual(cfg.ca.key_label, "est-ca")
        self.assertIn(DEFAULT_LABEL, cfg.labels)
        self.assertEqual(cfg.labels[DEFAULT_LABEL].cert_anchors, ("ca",))
        self.assertEqual(cfg.trust_anchors, {})

    def test_sample_paths_resolve_relative_to_the_file(self):
        cfg = load(SAMPLE)
        with open(SAMPLE, "rb") as f:
            raw = tomllib.load(f)
        here = SAMPLE.parent

        def expected(value):
            return (here / value).resolve()
        self.assertEqual(cfg.server.tls_key, expected(raw["server"]["tls_key"]))
        self.assertEqual(cfg.server.tls_cert, expected(raw["server"]["tls_cert"]))
        self.assertEqual(cfg.token.pin_file, expected(raw["token"]["pin_file"]))
        self.assertEqual(cfg.token.softhsm2_conf, expected(raw["token"]["softhsm2_conf"]))
        self.assertEqual(cfg.ca.cert_file, expected(raw["ca"]["cert_file"]))
        self.assertEqual(cfg.ca.chain_file, expected(raw["ca"]["chain_file"]))
        self.assertEqual(cfg.store.path, expected(raw["store"]["path"]))
        # The sample keeps its state in ../var/, next to etc/.
        var = (here / ".." / "var").resolve()
        self.assertEqual(cfg.store.path, var / "est.sqlite")
        self.assertEqual(cfg.ca.cert_file, var / "ca" / "ca.pem")

    def test_relative_paths_do_not_depend_on_the_working_directory(self):
        path = self.write({"token": MINIMAL_TOKEN, "store": {"path": "state/est.sqlite"}})
        elsewhere = Path(self.mktemp())
        elsewhere.mkdir()
        absolute = path.resolve()
        cwd = os.getcwd()
        os.chdir(elsewhere)
        try:
            cfg = load(absolute)
        finally:
            os.chdir(cwd)
        self.assertEqual(cfg.store.path, path.parent.resolve() / "state" / "est.sqlite")
        self.assertEqual(cfg.token.pin_file, path.parent.resolve() / "token.pin")

    def test_absolute_paths_are_kept(self):
        cfg = self.load_tables(store={"path": "/srv/est/est.sqlite"})
        self.assertEqual(cfg.store.path, Path("/srv/est/est.sqlite"))


class StoreTests(ConfigTestCase):
    def test_no_url_keeps_the_sqlite_file(self):
        cfg = self.load_tables(store={"path": "state/est.sqlite"})
        self.assertIsNone(cfg.store.url)
        self.assertEqual(cfg.store.where, str(cfg.store.path))

    def test_postgresql_url_with_password_from_file_or_environment(self):
        secret = Path(self.mktemp()).resolve()
        secret.write_text("s3cret\n")
        cfg = self.load_tables(store={"url": "postgresql://est@db.example/est?sslmode=verify-full",
                                      "password_file": str(secret)})
        self.assertEqual(cfg.store.url, "postgresql://est@db.example/est?sslmode=verify-full")
        self.assertEqual(cfg.store.password(), "s3cret")
        os.environ["EST_CONFIG_TEST_DB_PASSWORD"] = "from-env"
        self.addCleanup(os.environ.pop, "EST_CONFIG_TEST_DB_PASSWORD")
        cfg = self.load_tables(store={"url": "postgresql://est@db.example/est",
                                      "password_env": "EST_CONFIG_TEST_DB_PASSWORD"})
        self.assertEqual(cfg.store.password(), "from-env")

    def test_password_in_the_url_is_refused(self):
        self.assertConfigError("store", "no password in the url", "password_file",
                               store={"url": "postgresql://est:hunter2@db.example/est"})

    def test_url_of_another_kind_is_refused(self):
        self.assertConfigError("store", "postgresql://", store={"url": "mysql://db.example/est"})


class DefaultsTests(ConfigTestCase):
    def test_minimal_config_gets_defaults(self):
        path = self.write({"token": MINIMAL_TOKEN})
        cfg = load(path)
        base = path.parent.resolve()
        self.assertEqual((cfg.server.host, cfg.server.port), ("127.0.0.1", 8443))
        self.assertEqual(cfg.server.tls_key, base / "tls" / "server.key")
        self.assertEqual(cfg.server.tls_cert, base / "tls" / "server.pem")
        self.assertEqual(cfg.server.max_body, 64 * 1024)
        self.assertEqual(cfg.server.retry_after, 10)
        self.assertEqual(cfg.ca.key_label, "est-ca")
        self.assertEqual(cfg.ca.key_type, "ec-p256")
        self.assertEqual(cfg.ca.validity_days, 3650)
        self.assertEqual(cfg.ca.cert_file, base / "ca" / "ca.pem")
        self.assertEqual(cfg.store.path, base / "est.sqlite")
        self.assertEqual(cfg.workers, 1)
        self.assertTrue(cfg.server.batch_scheduling)
        profile = cfg.profiles["default"]
        self.assertEqual(profile.validity_days, 365)
        self.assertEqual(profile.key_types, KEY_TYPES)
        self.assertEqual(profile.key_usage, ("digitalSignature", "keyEncipherment"))
        self.assertTrue(profile.copy_san)

    def test_batch_scheduling_can_be_turned_off_and_must_be_a_boolean(self):
        self.assertFalse(self.load_tables(server={"batch_scheduling": False}).server.batch_scheduling)
        self.assertConfigError("[server]", "batch_scheduling", "true or false", server={"batch_scheduling": "no"})

    def test_token_call_timeout(self):
        self.assertEqual(self.load_tables().token.call_timeout, 30.0)
        self.assertEqual(self.load_tables(token={**MINIMAL_TOKEN, "call_timeout": 2.5}).token.call_timeout, 2.5)
        for bad in (0, -1, "soon", True):
            self.assertConfigError("[token]", "call_timeout", "seconds above 0",
                                   token={**MINIMAL_TOKEN, "call_timeout": bad})

    def test_crl_lease_seconds(self):
        """The CRL schedule's lease term (several nodes on one store)."""
        self.assertEqual(self.load_tables().crl.lease_seconds, 45)
        self.assertEqual(self.load_tables(crl={"lease_seconds": 6}).crl.lease_seconds, 6)
        self.assertConfigError("[crl]", "lease_seconds", "at least 3", crl={"lease_seconds": 2})

    def test_default_label_always_present(self):
        cfg = self.load_tables(labels={"iot": {"auth": ["basic"]}})
        self.assertEqual(set(cfg.labels), {"iot", DEFAULT_LABEL})
        default = cfg.label(None)
        self.assertIs(default, cfg.labels[DEFAULT_LABEL])
        self.assertEqual(default.auth, config.AUTH_MODES)
        self.assertEqual(default.cert_anchors, ("ca",))
        self.assertEqual(default.profile.name, "default")
        self.assertEqual(cfg.label("iot").auth, ("basic",))
        self.assertIsNone(cfg.label("nosuch"))

    def test_default_label_can_be_configured(self):
        cfg = self.load_tables(profiles={"strict": {"key_types": ["ec-p384"]}},
                               labels={"default": {"profile": "strict", "auth": ["cert"]}})
        self.assertEqual(cfg.label(None).profile.key_types, ("ec-p384",))
        self.assertEqual(cfg.label(None).auth, ("cert",))

    def test_named_trust_anchor_usable_by_a_label(self):
        cfg = self.load_tables(trust_anchors={"maker": "anchors/maker.pem"},
                               labels={"factory": {"auth": ["cert"], "cert_anchors": ["maker", "ca"]}})
        self.assertEqual(cfg.labels["factory"].cert_anchors, ("maker", "ca"))
        self.assertEqual(cfg.trust_anchors["maker"], cfg.path.parent / "anchors" / "maker.pem")


class RefusalTests(ConfigTestCase):
    def test_unknown_ca_key_type(self):
        self.assertConfigError("[ca]", "'ec-p999'", "ec-p256", ca={"key_type": "ec-p999"})

    def test_unknown_profile_key_type(self):
        self.assertConfigError("[profiles.tight]", "'dsa1024'",
                               profiles={"tight": {"key_types": ["ec-p256", "dsa1024"]}})

    def test_unknown_auth_mode(self):
        self.assertConfigError("[labels.iot]", "'kerberos'", ", ".join(config.AUTH_MODES),
                               labels={"iot": {"auth": ["basic", "kerberos"]}})

    def test_unknown_profile(self):
        self.assertConfigError("[labels.iot]", "'nosuch'", labels={"iot": {"profile": "nosuch"}})

    def test_unknown_trust_anchor(self):
        self.assertConfigError("[labels.iot]", "'maker'", labels={"iot": {"cert_anchors": ["maker"]}})

    def test_label_named_after_an_est_operation(self):
        for name in ("cacerts", "simpleenroll", "simplereenroll", "csrattrs", "serverkeygen", "fullcmc"):
            self.assertConfigError(f"[labels.{name}]", "EST operation", labels={name: {}})

    def test_label_with_a_slash(self):
        self.assertConfigError("[labels.a/b]", "letters, digits", labels={"a/b": {}})
        self.assertConfigError("[labels.a,b]", "letters, digits", labels={"a,b": {}})

    def test_empty_label_name(self):
        self.assertConfigError("letters, digits", labels={"": {}})

    def test_ca_is_reserved_as_a_trust_anchor_name(self):
        self.assertConfigError("[trust_anchors]", "'ca'", trust_anchors={"ca": "/etc/other-ca.pem"})

    def test_missing_token_table(self):
        path = self.write({"ca": {"key_type": "ec-p256"}})
        err = self.assertRaises(ConfigError, load, path)
        self.assertIn("[token]", str(err))

    def test_token_table_needs_module_and_label(self):
        self.assertConfigError("[token]", "'module'", token={"label": "x", "pin_file": "p"})
        self.assertConfigError("[token]", "'label'", token={"module": "/lib/x.so", "pin_file": "p"})

    def test_missing_file(self):
        path = Path(self.mktemp()) / "nope.toml"
        err = self.assertRaises(ConfigError, load, path)
        self.assertIn("cannot read config", str(err))
        self.assertIn("nope.toml", str(err))

    def test_invalid_toml(self):
        path = self.write(text="[server\nport = 1\n")
        err = self.assertRaises(ConfigError, load, path)
        self.assertIn(str(path.resolve()), str(err))

    def test_unknown_key_usage_in_profile(self):
        """A typo in a profile's key_usage is caught when the config loads,
        not on the first enrollment (where certs.key_usage raises ValueError)."""
        self.assertConfigError("[profiles.typo]", "digitalSignatur",
                               profiles={"typo": {"key_usage": ["digitalSignatur"]}})

    def test_unknown_extended_key_usage_in_profile(self):
        self.assertConfigError("[profiles.typo]", "clientAuthh",
                               profiles={"typo": {"extended_key_usage": ["clientAuthh"]}})

    def test_non_numeric_port(self):
        """A bad number is a ConfigError (estctl reports ConfigError, not ValueError)."""
        self.assertConfigError("port", server={"port": "https"})


class PinTests(ConfigTestCase):
    def setUp(self):
        self.env = f"EST_TEST_PIN_{uuid.uuid4().hex[:8].upper()}"
        self.addCleanup(os.environ.pop, self.env, None)

    def pin_file(self, text: str) -> Path:
        path = Path(self.mktemp())
        path.write_text(text)
        return path

    def test_pin_from_file_is_stripped(self):
        path = self.pin_file("1234-5678\n")
        cfg = self.load_tables(token={**MINIMAL_TOKEN, "pin_file": str(path.resolve())})
        self.assertEqual(cfg.token.read_pin(), "1234-5678")

    def test_pin_env_preferred_over_file(self):
        path = self.pin_file("from-file\n")
        cfg = self.load_tables(token={**MINIMAL_TOKEN, "pin_file": str(path.resolve()), "pin_env": self.env})
        os.environ[self.env] = "from-env"
        self.assertEqual(cfg.token.read_pin(), "from-env")

    def test_unset_pin_env_falls_back_to_file(self):
        path = self.pin_file("from-file\n")
        cfg = self.load_tables(token={**MINIMAL_TOKEN, "pin_file": str(path.resolve()), "pin_env": self.env})
        self.assertEqual(cfg.token.read_pin(), "from-file")

    def test_pin_env_alone(self):
        token = {k: v for k, v in MINIMAL_TOKEN.items() if k != "pin_file"}
        cfg = self.load_tables(token={**token, "pin_env": self.env})
        os.environ[self.env] = "only-env"
        self.assertEqual(cfg.token.read_pin(), "only-env")
        del os.environ[self.env]
        err = self.assertRaises(ConfigError, cfg.token.read_pin)
        self.assertIn("pin_file or pin_env", str(err))

    def test_unreadable_pin_file(self):
        missing = Path(self.mktemp()).resolve() / "no.pin"
        cfg = self.load_tables(token={**MINIMAL_TOKEN, "pin_file": str(missing)})
        err = self.assertRaises(ConfigError, cfg.token.read_pin)
        self.assertIn("PIN file unreadable", str(err))
        self.assertIn(str(missing), str(err))

    def test_no_pin_source(self):
        token = {k: v for k, v in MINIMAL_TOKEN.items() if k != "pin_file"}
        cfg = self.load_tables(token=token)
        err = self.assertRaises(ConfigError, cfg.token.read_pin)
        self.assertIn("never stored in the config", str(err))

    def test_pin_never_read_from_config_itself(self):
        token = {k: v for k, v in MINIMAL_TOKEN.items() if k != "pin_file"}
        cfg = self.load_tables(token={**token, "pin": "1234"})
        self.assertRaises(ConfigError, cfg.token.read_pin)


class FromDictTests(unittest.TestCase):
    def test_from_dict_resolves_against_the_given_path(self):
        base = Path(self.mktemp()).resolve()
        cfg = from_dict({"token": MINIMAL_TOKEN}, base / "estappliance.toml")
        self.assertEqual(cfg.token.pin_file, base / "token.pin")
        self.assertEqual(cfg.path, base / "estappliance.toml")
