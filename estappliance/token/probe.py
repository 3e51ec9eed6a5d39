"""``estctl token check``: try, with throw-away session objects, what the
appliance would ask of the configured token, and judge each feature by the
mechanism policy (policy.py) and by what really worked.

Nothing is stored in the token: every probe key is a session object
(CKA_TOKEN false), destroyed at the end of its probe. Blocking.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from .policy import HMAC, Feature, MechanismPolicy, name
from .key_specs import KEY_SPECS, KeySpec
from .session import _DIGEST_INFO, Token, _der_length, _rsa_spki

# The probe's key objects are Any: python-pkcs11 composes their classes at run
# time from what each key may do, and probing what they may do is the point here.
PKCS11Key = Any

# Keys bigger than this are judged by the token's stated range, not generated (seconds each).
PROBE_RSA_BITS = 2048


@dataclass
class Probe:
    """What was tried and how it went: (what, ok, detail)."""

    token: str = ""
    mechanisms: list[str] = field(default_factory=list)
    results: list[tuple[str, bool, str]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # feature key -> why it failed for real
    features: list[Feature] = field(default_factory=list)

    def note(self, what: str, ok: bool, detail: str, key: str | None = None) -> None:
        self.results.append((what, ok, detail))
        if not ok and key:
            self.failed.setdefault(key, f"{what} failed: {detail}")


def _error(e: Exception) -> str:
    return type(e).__name__ + (f": {e}" if str(e) else "")


def _session_keypair(session: pkcs11.Session, spec: KeySpec, *, extractable: bool) -> tuple[PKCS11Key, PKCS11Key]:
    private = {Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: extractable,
               Attribute.SIGN: True, Attribute.DECRYPT: False, Attribute.UNWRAP: False}
    public = {Attribute.TOKEN: False, Attribute.VERIFY: True, Attribute.ENCRYPT: False, Attribute.WRAP: False}
    if spec.kind == "ec":
        assert spec.curve is not None  # every EC spec names its curve
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(spec.curve)}, local=True)
        return params.generate_keypair(store=False, public_template=public, private_template=private)
    return session.generate_keypair(KeyType.RSA, spec.bits, store=False, public_template=public,
                                    private_template=private)


def _signature_verifies(session: pkcs11.Session, policy: MechanismPolicy, spec: KeySpec, pub: PKCS11Key,
                        priv: PKCS11Key) -> None:
    """Sign as the CA would (policy's mechanism) and verify on the host."""
    data = os.urandom(64)
    if spec.kind == "ec":
        raw = priv.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA)
        half = len(raw) // 2
        der = utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
        key = serialization.load_der_public_key(encode_ec_public_key(pub))
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        return
    mechanism, prehash = policy.rsa_signing("sha256")
    signed = _DIGEST_INFO["sha256"] + hashlib.sha256(data).digest() if prehash else data
    signature = priv.sign(signed, mechanism=mechanism)
    rsa_key = serialization.load_der_public_key(_rsa_spki(pub))
    assert isinstance(rsa_key, rsa.RSAPublicKey)
    rsa_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


def _probe_key_types(session: pkcs11.Session, policy: MechanismPolicy, report: Probe) -> None:
    for spec in KEY_SPECS.values():
        what = f"key type {spec.name}"
        problem = policy.key_type_problem(spec)
        if problem:
            report.note(what, False, problem)
            continue
        if spec.kind == "rsa" and spec.bits is not None and spec.bits > PROBE_RSA_BITS:
            report.note(what, True, f"within the token's RSA range {policy.rsa_bits} (not generated here)")
            continue
        try:
            pub, priv = _session_keypair(session, spec, extractable=False)
        except PKCS11Error as e:
            report.note(what, False, f"generation refused: {_error(e)}", key=spec.name)
            continue
        try:
            _signature_verifies(session, policy, spec, pub, priv)
            attrs = {a: bool(priv[a]) for a in (Attribute.SENSITIVE, Attribute.EXTRACTABLE,
                                                Attribute.ALWAYS_SENSITIVE, Attribute.NEVER_EXTRACTABLE)}
            safe = attrs[Attribute.SENSITIVE] and not attrs[Attribute.EXTRACTABLE]
            report.note(what, safe, "generated, signs (verified on the host), sensitive and non-extractable"
                        if safe else f"key attributes not as asked: {attrs}", key=spec.name)
            if safe:
                _probe_unextractable(session, priv, report, spec.name)
        except Exception as e:  # noqa: BLE001 - any failure (token or verification) is a finding
            report.note(what, False, f"signing failed: {_error(e)}", key=spec.name)
        finally:
            for obj in (pub, priv):
                try:
                    obj.destroy()
                except PKCS11Error:
                    pass


def _transport(session: pkcs11.Session) -> PKCS11Key:
    return session.generate_key(KeyType.AES, 256, store=False, template={
        Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, Attribute.WRAP: True, Attribute.UNWRAP: False,
        Attribute.ENCRYPT: False, Attribute.DECRYPT: False})


def _probe_unextractable(session: pkcs11.Session, priv: PKCS11Key, report: Probe, key_type: str) -> None:
    """A non-extractable key must not come out, even wrapped."""
    try:
        transport = _transport(session)
    except PKCS11Error:
        return
    try:
        for mechanism in (Mechanism.AES_KEY_WRAP, Mechanism.AES_CBC_PAD):
            try:
                param = os.urandom(16) if mechanism == Mechanism.AES_CBC_PAD else None
                transport.wrap_key(priv, mechanism=mechanism, mechanism_param=param)
            except PKCS11Error:
                continue
            report.note(f"non-extractable {key_type} key", False, f"it could be wrapped out with {name(mechanism)}",
                        key="ca")
            return
        report.note(f"non-extractable {key_type} key", True, "wrapping it out is refused")
    finally:
        transport.destroy()


def _probe_export(session: pkcs11.Session, policy: MechanismPolicy, token: Token, report: Probe) -> None:
    """Wrap an extractable device key out the way /serverkeygen does, and read it back on the host."""
    wrap = policy.export_wrap()
    if wrap is None:
        report.note("wrapping a key out", False, policy.export_problem() or "no wrap mechanism")
        return
    spec = next((KEY_SPECS[k] for k in ("ec-p256", "rsa2048") if policy.key_type_problem(k) is None), None)
    if spec is None:
        report.note("wrapping a key out", False, "no key type to try it with")
        return
    try:
        pub, priv = _session_keypair(session, spec, extractable=True)
    except PKCS11Error as e:
        report.note("wrapping a key out", False, f"an extractable {spec.name} key: {_error(e)}", key="export")
        return
    try:
        padded = token.export_key(session, priv)
        serialization.load_der_private_key(padded[:_der_length(padded)], None)
        report.note("wrapping a key out", True, f"{spec.name} PKCS#8 wrapped with {name(wrap)} and read on the host")
    except Exception as e:  # noqa: BLE001 - any failure is a finding
        report.note("wrapping a key out", False, f"with {name(wrap)}: {_error(e)}", key="export")
    finally:
        pub.destroy()
        priv.destroy()


def _probe_symmetric(session: pkcs11.Session, policy: MechanismPolicy, report: Probe) -> None:
    kek_problem = policy.kek_problem()
    if kek_problem is None:
        try:
            kek: PKCS11Key = session.generate_key(KeyType.AES, 256, store=False, template={
                Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.WRAP: True,
                Attribute.UNWRAP: False, Attribute.ENCRYPT: False, Attribute.DECRYPT: False})
            value = os.urandom(32)
            cek = session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                                         Attribute.VALUE: value, Attribute.TOKEN: False, Attribute.SENSITIVE: False,
                                         Attribute.EXTRACTABLE: True})
            wrapped = kek.wrap_key(cek, mechanism=Mechanism.AES_KEY_WRAP)
            kek.destroy()
            cek.destroy()
            report.note("KEK wrap (kekri)", len(wrapped) == 40, "a content key wrapped with CKM_AES_KEY_WRAP",
                        key="kek")
        except PKCS11Error as e:
            report.note("KEK wrap (kekri)", False, _error(e), key="kek")
    else:
        report.note("KEK wrap (kekri)", False, kek_problem)
    sealing_problem = policy.sealing_problem()
    if sealing_problem is None:
        try:
            key: PKCS11Key = session.generate_key(KeyType.AES, 256, store=False, template={
                Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True})
            from pkcs11.mechanisms import GCMParams
            params = GCMParams(os.urandom(12), b"probe", 128)
            sealed = key.encrypt(b"secret", mechanism=Mechanism.AES_GCM, mechanism_param=params)
            ok = key.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=params) == b"secret"
            key.destroy()
            report.note("sealing (AES-GCM)", ok, "encrypted and opened again", key="seal")
        except PKCS11Error as e:
            report.note("sealing (AES-GCM)", False, _error(e), key="seal")
    else:
        report.note("sealing (AES-GCM)", False, sealing_problem)
    for mac, mechanism in HMAC.items():
        hmac_problem = policy.hmac_problem(mac)
        if hmac_problem:
            report.note(f"HMAC-{mac}", False, hmac_problem)
            continue
        try:
            key = session.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                Attribute.TOKEN: False, Attribute.VALUE: b"k" * 64, Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False, Attribute.SIGN: True})
            import hmac as std_hmac
            ok = bytes(key.sign(b"probe", mechanism=mechanism)) == std_hmac.new(b"k" * 64, b"probe", mac).digest()
            key.destroy()
            report.note(f"HMAC-{mac}", ok, "a non-extractable key, checked on the host", key=f"hmac-{mac}")
        except PKCS11Error as e:
            report.note(f"HMAC-{mac}", False, _error(e), key=f"hmac-{mac}")


def _probe_sessions(session: pkcs11.Session, wanted: int, report: Probe) -> None:
    """The appliance opens one session per worker process (and estctl one more)."""
    opened: list[pkcs11.Session] = []
    try:
        for _ in range(wanted):
            opened.append(session.token.open(rw=True))
        report.note("sessions", True, f"{wanted} more read/write sessions open beside ours"
                    " (one per worker, plus estctl)")
    except PKCS11Error as e:
        report.note("sessions", False, f"only {len(opened)} more of {wanted} could be opened: {_error(e)}",
                    key="sessions")
    finally:
        for s in opened:
            try:
                s.close()
            except PKCS11Error:
                pass


def check(token: Token, ca_key_type: str, workers: int) -> Probe:
    """Blocking: the whole probe of ``token``."""
    report = Probe()
    policy = token.policy()

    def op(session: pkcs11.Session) -> None:
        t = session.token
        report.token = f"{t.label.strip()!r} ({t.manufacturer_id.strip()}, {t.model.strip()}, serial " \
                       f"{t.serial.decode() if isinstance(t.serial, bytes) else t.serial})"
        report.mechanisms = sorted(name(m) for m in policy.mechanisms)
        _probe_key_types(session, policy, report)
        _probe_export(session, policy, token, report)
        _probe_symmetric(session, policy, report)
        _probe_sessions(session, workers + 1, report)
    token.run(op)
    report.features = _judge(policy.features(ca_key_type), report, ca_key_type)
    return report


def _judge(features: list[Feature], report: Probe, ca_key_type: str) -> list[Feature]:
    """The policy's verdicts, overruled where the probe found otherwise."""
    out: list[Feature] = []
    for f in features:
        keys: list[str] = []
        if f.name.startswith("CA key "):
            keys = [f.name.split()[2], "ca", "sessions"]
        elif f.name.startswith("/serverkeygen (") or f.name.startswith("/symmetrickeys"):
            keys = ["export"]
        elif "KEK" in f.name:
            keys = ["kek"]
        elif "PKCS#12" in f.name:
            keys = ["seal"]
        failed = next((report.failed[k] for k in keys if k in report.failed), None)
        out.append(replace(f, ok=False, detail=failed) if f.ok and failed else f)
    return out


__all__ = ["Probe", "check"]
