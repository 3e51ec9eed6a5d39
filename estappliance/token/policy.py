"""The mechanism policy: what this token offers, and what each appliance
feature uses on it. Every feature asks here instead of assuming SoftHSM2's
set, so a token without a mechanism gets a clear refusal for the features
that need it while the rest keeps working.

Built from the slot's mechanism list (one cheap C_GetMechanismList per
process); ``probe.py`` (``estctl token check``) tries the same things for
real. What each feature needs (README "Tokens: mechanism policy"):

=====================================  ==============================================================
CA key (enrollment, re-enrollment,      EC: CKM_EC_KEY_PAIR_GEN + CKM_ECDSA (hash on the host);
CRLs, /fullcmc, firmware/TAMP signers)  RSA: CKM_RSA_PKCS_KEY_PAIR_GEN + CKM_SHA256_RSA_PKCS (..384/512),
                                        else CKM_RSA_PKCS over a DigestInfo made on the host
/serverkeygen, /symmetrickeys           the key's generation mechanism, CKM_AES_KEY_GEN and a way to
(keys wrapped out once)                 wrap it out: CKM_AES_KEY_WRAP, else CKM_AES_CBC_PAD
KEK recipients (kekri)                  CKM_AES_KEY_WRAP (RFC 3394 is what kekri carries)
operator-set PKCS#12 passwords          CKM_AES_GCM (sealed in the store)
CMC shared secrets (identityProofV2)    CKM_SHA_1_HMAC / CKM_SHA256_HMAC / ..384 / ..512
=====================================  ==============================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import pkcs11
from pkcs11 import Mechanism

from ..errors import TokenCannot
from .key_specs import KEY_SPECS, KeySpec

RSA_SIGN = {"sha256": Mechanism.SHA256_RSA_PKCS, "sha384": Mechanism.SHA384_RSA_PKCS,
            "sha512": Mechanism.SHA512_RSA_PKCS}
HMAC = {"sha1": Mechanism.SHA_1_HMAC, "sha256": Mechanism.SHA256_HMAC, "sha384": Mechanism.SHA384_HMAC,
        "sha512": Mechanism.SHA512_HMAC}
# Ways to wrap a key out of the token, best first.
EXPORT_WRAPS = (Mechanism.AES_KEY_WRAP, Mechanism.AES_CBC_PAD)


def name(mechanism: int | None) -> str:
    if mechanism is None:
        return "no mechanism"
    try:
        return "CKM_" + Mechanism(mechanism).name
    except ValueError:
        return f"mechanism 0x{mechanism:08x}"


@dataclass(frozen=True)
class Feature:
    """One appliance feature on this token: served or not, and how or why not."""

    name: str
    ok: bool
    detail: str  # the mechanisms used, or why it cannot be served


class MechanismPolicy:
    def __init__(self, mechanisms: Iterable[int], rsa_bits: tuple[int, int] | None = None) -> None:
        self.mechanisms = frozenset(int(m) for m in mechanisms)
        self.rsa_bits = rsa_bits  # (min, max) of CKM_RSA_PKCS_KEY_PAIR_GEN, when the token says

    @classmethod
    def of_slot(cls, slot: pkcs11.Slot) -> "MechanismPolicy":
        """Blocking (PKCS#11 thread)."""
        mechanisms = set(slot.get_mechanisms())
        rsa_bits = None
        if Mechanism.RSA_PKCS_KEY_PAIR_GEN in mechanisms:
            info = slot.get_mechanism_info(Mechanism.RSA_PKCS_KEY_PAIR_GEN)
            if info.min_key_length is not None and info.max_key_length is not None:
                rsa_bits = (int(info.min_key_length), int(info.max_key_length))
        return cls(mechanisms, rsa_bits)

    def has(self, mechanism: int) -> bool:
        return int(mechanism) in self.mechanisms

    def _missing(self, *mechanisms: int) -> str | None:
        lacking = [name(m) for m in mechanisms if not self.has(m)]
        return f"the token has no {' or '.join(lacking)}" if lacking else None

    # -- keys -------------------------------------------------------------------

    def key_type_problem(self, spec: KeySpec | str) -> str | None:
        """Why the token cannot make and use keys of this type, or None."""
        spec = KEY_SPECS[spec] if isinstance(spec, str) else spec
        if spec.kind == "ec":
            return self._missing(Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA)
        problem = self._missing(Mechanism.RSA_PKCS_KEY_PAIR_GEN)
        if problem:
            return problem
        if not self.has(Mechanism.RSA_PKCS) and not self.has(Mechanism.SHA256_RSA_PKCS):
            return "the token has neither CKM_SHA256_RSA_PKCS nor CKM_RSA_PKCS to sign with"
        if self.rsa_bits and spec.bits is not None and not self.rsa_bits[0] <= spec.bits <= self.rsa_bits[1]:
            return f"the token makes RSA keys of {self.rsa_bits[0]} to {self.rsa_bits[1]} bits, not {spec.bits}"
        return None

    def require_key_type(self, spec: KeySpec | str, feature: str) -> None:
        problem = self.key_type_problem(spec)
        if problem:
            key_type = spec if isinstance(spec, str) else spec.name
            raise TokenCannot(f"{feature}: this appliance's token cannot make {key_type} keys ({problem})")

    def rsa_signing(self, hash_name: str) -> tuple[Mechanism, bool]:
        """(mechanism, whether the host hashes and sends a DigestInfo)."""
        mechanism = RSA_SIGN.get(hash_name)
        if mechanism is not None and self.has(mechanism):
            return mechanism, False
        if self.has(Mechanism.RSA_PKCS):
            return Mechanism.RSA_PKCS, True
        raise TokenCannot(f"the token cannot sign RSA with {hash_name} (no {name(mechanism or 0)},"
                          " no CKM_RSA_PKCS)")

    # -- wrapping keys out, KEKs, sealing, HMAC ---------------------------------------

    def export_wrap(self) -> Mechanism | None:
        """How a key made for a device leaves the token (under a throw-away AES key)."""
        if not self.has(Mechanism.AES_KEY_GEN):
            return None
        return next((m for m in EXPORT_WRAPS if self.has(m)), None)

    def export_problem(self) -> str | None:
        if self.export_wrap() is None:
            return "the token cannot wrap a key out (needs CKM_AES_KEY_GEN and CKM_AES_KEY_WRAP or CKM_AES_CBC_PAD)"
        return None

    def kek_problem(self) -> str | None:
        return self._missing(Mechanism.AES_KEY_GEN, Mechanism.AES_KEY_WRAP)

    def sealing_problem(self) -> str | None:
        return self._missing(Mechanism.AES_KEY_GEN, Mechanism.AES_GCM)

    def hmac_problem(self, mac: str) -> str | None:
        return self._missing(HMAC[mac])

    def require(self, problem: str | None, feature: str) -> None:
        if problem:
            raise TokenCannot(f"{feature}: {problem}")

    # -- the whole picture (estctl token check) -------------------------------------------

    def features(self, ca_key_type: str) -> list[Feature]:
        out = []
        ca_problem = self.key_type_problem(ca_key_type)
        signing = ("CKM_ECDSA (hash on the host)" if KEY_SPECS[ca_key_type].kind == "ec"
                   else _rsa_detail(self))
        out.append(Feature(f"CA key {ca_key_type}: enrollment, re-enrollment, CRLs, /fullcmc, firmware and"
                           " TAMP signing", ca_problem is None, ca_problem or signing))
        for key_type in KEY_SPECS:
            if key_type == ca_key_type:
                continue
            problem = self.key_type_problem(key_type)
            out.append(Feature(f"CA key {key_type} (estctl init)", problem is None, problem or "can be made"))
        wrap = self.export_wrap()
        export = self.export_problem()
        keygen_types = [k for k in KEY_SPECS if self.key_type_problem(k) is None]
        out.append(Feature("/serverkeygen (PKCS#8, PKCS#12, enveloped to a certificate, Encrypted Key Package)",
                           export is None and bool(keygen_types),
                           export or (f"key types {', '.join(keygen_types)}; wrapped out with {name(wrap)}"
                                      if keygen_types else "no key type the token can make")))
        kek = self.kek_problem()
        out.append(Feature("/serverkeygen and /symmetrickeys to a KEK (kekri, estctl serverkeygen kek)",
                           kek is None, kek or "CKM_AES_KEY_WRAP"))
        out.append(Feature("/symmetrickeys (estctl publish symmetric-key)", export is None,
                           export or f"CKM_AES_KEY_GEN; wrapped out with {name(wrap)}"))
        seal = self.sealing_problem()
        out.append(Feature("operator-set PKCS#12 passwords (estctl serverkeygen pkcs12-password)",
                           seal is None, seal or "CKM_AES_GCM"))
        macs = [m for m in HMAC if self.hmac_problem(m) is None]
        out.append(Feature("/fullcmc shared secrets (estctl cmc secret)", bool(macs),
                           f"HMAC with {', '.join(macs)}" if macs else "the token has no HMAC mechanism"))
        return out


def _rsa_detail(policy: MechanismPolicy) -> str:
    mechanism, prehash = policy.rsa_signing("sha256") if (
        policy.has(Mechanism.SHA256_RSA_PKCS) or policy.has(Mechanism.RSA_PKCS)) else (None, False)
    if mechanism is None:
        return "no RSA signing mechanism"
    return "CKM_RSA_PKCS over a DigestInfo (hash on the host)" if prehash else name(mechanism)


__all__ = ["Feature", "MechanismPolicy", "TokenCannot", "name"]
