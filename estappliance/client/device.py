"""What a device does with the packages RFC 8295 brings it: check every
signature against its trust anchors, decrypt key packages, keep what it
received, run the TAMP messages against its own trust anchor store, and
write the receipt, error or confirm each one calls for.

State lives in one directory::

    keys/<key id>.key, .json       symmetric keys (0600) and their attributes
    firmware/<name>.bin, .json     firmware images and what their package said
    trust-anchors/<key id>.der     trust anchors added by TAMP (TrustAnchorChoice)
    tamp.json                      apex, removed anchors, communities, sequence numbers

The device's trust anchors are those it was given (``anchors``, e.g. the CA
certificate) plus those TAMP added, minus those TAMP removed. Only anchors in
certificate form can vouch for a signer here.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..files import write_atomically
from ..pki import envelope, firmware, signeddata, symkeys, tamp, trust
from ..pki.asn1 import rfc5914, rfc7191

# RFC 7191 / RFC 4108 / RFC 5934 codes the device reports.
KP_NO_TRUST_ANCHOR, KP_SIGNATURE_FAILURE, KP_NO_DECRYPT_KEY, KP_DECRYPT_FAILURE, KP_BAD_KEY_PACKAGE = 10, 16, 61, 71, 84
FW_DECODE_FAILURE, FW_NO_TRUST_ANCHOR, FW_SIGNATURE_FAILURE, FW_WRONG_HARDWARE = 1, 10, 15, 27
FW_UNSUPPORTED_PACKAGE_TYPE = 30
TAMP_SUCCESS, TAMP_DECODE_FAILURE, TAMP_NO_TRUST_ANCHOR, TAMP_SIGNATURE_FAILURE = 0, 1, 10, 16
TAMP_IMPROPER_ADDITION, TAMP_SEQ_NUM_FAILURE, TAMP_INCORRECT_TARGET, TAMP_NOT_FOUND = 20, 21, 23, 25
TAMP_MISSING_SIGNATURE = 29
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# RFC 7193 innerContent names of what the device returns.
INNER = {rfc7191.RECEIPT: "keyPackageReceipt", rfc7191.ERROR: "keyPackageError",
         firmware.RECEIPT: "firmwareLoadReceipt", firmware.ERROR: "firmwareLoadError"}
MAX_REMEMBERED = 32  # TAMP answers kept, to answer a message delivered twice the same way


@dataclass(frozen=True)
class Outcome:
    """What handling one package came to, and the answer to post (if any)."""

    operation: str
    ok: bool
    summary: str
    answer: bytes | None = None  # DER for <operation>/return
    answer_type: str = "application/cms"
    requested: bool = False  # the package itself asked for the answer


def _safe(name: str) -> str:
    return _SAFE.sub("_", name)[:100] or "unnamed"


class Device:
    def __init__(self, state: Path, anchors: list[x509.Certificate], *,
                 key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
                 cert: x509.Certificate | None = None, kek: bytes | None = None, kek_id: bytes | None = None,
                 hw_type: str | None = None, hw_serial: bytes | None = None) -> None:
        self.state = Path(state)
        self.given_anchors = list(anchors)
        self.key, self.cert = key, cert
        self.kek, self.kek_id = kek, kek_id
        self.hw_type, self.hw_serial = hw_type, hw_serial
        self.state.mkdir(parents=True, exist_ok=True)

    # -- state -------------------------------------------------------------------------

    def _tamp_state(self) -> dict:
        path = self.state / "tamp.json"
        if path.exists():
            return json.loads(path.read_text())
        return {"apex": None, "removed": [], "communities": [], "seq": {}, "answers": {}}

    def _save_tamp_state(self, state: dict) -> None:
        write_atomically(self.state / "tamp.json", json.dumps(state, indent=1, sort_keys=True).encode())

    def anchors(self) -> list[tamp.TrustAnchor]:
        """The trust anchor store: given, plus added by TAMP, minus removed."""
        removed = set(self._tamp_state()["removed"])
        found = {}
        for cert in self.given_anchors:
            ta = tamp.TrustAnchor.from_cert(cert)
            found[ta.key_id] = ta
        folder = self.state / "trust-anchors"
        for path in sorted(folder.glob("*.der")) if folder.exists() else ():
            ta = tamp.TrustAnchor.from_choice(rfc5914.TrustAnchorChoice.load(path.read_bytes()))
            found[ta.key_id] = ta
        return [ta for k, ta in found.items() if k.hex() not in removed]

    def anchor_certificates(self) -> list[x509.Certificate]:
        return [c for c in (ta.certificate() for ta in self.anchors()) if c is not None]

    def communities(self) -> tuple[str, ...]:
        return tuple(self._tamp_state()["communities"])

    # -- signing answers ------------------------------------------------------------------

    def _sign(self, kind: str, value: core.Asn1Value) -> bytes | None:
        if self.key is None or self.cert is None:
            return None
        return signeddata.sign(kind, value, self.key, self.cert, certificates=[self.cert])

    def _name(self) -> x509.Name:
        return self.cert.subject if self.cert is not None else x509.Name([])

    # -- /symmetrickeys -------------------------------------------------------------------

    def _recipient_key(self) -> envelope.RecipientKey:
        if self.key is not None and self.cert is not None:
            rk = envelope.RecipientKey.for_certificate(self.key, self.cert)
            return envelope.RecipientKey(private_key=rk.private_key, rid=rk.rid, kek=self.kek, kek_id=self.kek_id)
        return envelope.RecipientKey(kek=self.kek, kek_id=self.kek_id)

    def _cms_answer(self, operation: str, kind: str, value: core.Asn1Value, ok: bool, summary: str, *,
                    requested: bool = True, must_sign: bool = False) -> Outcome:
        """The answer DER (signed when the device has a key) with its
        application/cms type and RFC 7193 parameters."""
        der = self._sign(kind, value)
        if der is None and must_sign:
            return Outcome(operation, ok, summary + " (no receipt: RFC 7191 receipts are signed, and no"
                           " --cert/--key was given)")
        ect = "encapsulatingContent=signedData; " if der is not None else ""
        if der is None:
            der = cms.ContentInfo({"content_type": kind, "content": value}).dump()
        media = f"application/cms; {ect}innerContent={INNER[kind]}"
        return Outcome(operation, ok, summary, der, media, requested=requested)

    def _key_package_error(self, pkg_id: bytes | None, code: int, summary: str) -> Outcome:
        return self._cms_answer("symmetrickeys", rfc7191.ERROR, symkeys.error(pkg_id, self._name(), code), False,
                                summary, requested=pkg_id is not None)

    def symmetric_key(self, der: bytes) -> Outcome:
        try:
            opened = symkeys.open_package(der, self._recipient_key())
        except symkeys.BadSymmetricKeyPackage as e:
            text = str(e)
            code = (KP_NO_DECRYPT_KEY if "no RecipientInfo" in text or "needs the shared key" in text
                    else KP_DECRYPT_FAILURE if "decrypt" in text
                    else KP_SIGNATURE_FAILURE if "signature" in text else KP_BAD_KEY_PACKAGE)
            return self._key_package_error(None, code, f"key package refused: {text}")
        anchors = self.anchor_certificates()
        try:
            if opened.outer_signer is not None:
                trust.chain_to_anchor(opened.outer_signer, anchors, list(opened.outer_certificates))
            trust.chain_to_anchor(opened.inner_signer, anchors, list(opened.inner_certificates))
        except trust.Untrusted as e:
            return self._key_package_error(opened.pkg_id, KP_NO_TRUST_ANCHOR, f"key package refused: {e}")
        stored = []
        for key in opened.keys:
            key_id = str(key.attributes.get("key_id") or hashlib.sha256(key.key).hexdigest()[:16])
            write_atomically(self.state / "keys" / f"{_safe(key_id)}.key", key.key, 0o600)
            meta: dict[str, object] = {k: (v.isoformat() if isinstance(v, datetime.datetime) else v)
                    for k, v in key.attributes.items() if isinstance(v, (str, int, list, datetime.datetime))}
            meta.update(pkg_id=opened.pkg_id.hex() if opened.pkg_id else None,
                        signer=opened.inner_signer.subject.rfc4514_string(),
                        received_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
            write_atomically(self.state / "keys" / f"{_safe(key_id)}.json", json.dumps(meta, indent=1).encode())
            stored.append(key_id)
        summary = f"symmetric key {', '.join(stored)} stored"
        if opened.pkg_id is None:
            return Outcome("symmetrickeys", True, summary)
        return self._cms_answer("symmetrickeys", rfc7191.RECEIPT, symkeys.receipt(opened.pkg_id, self._name()), True,
                                summary, requested=opened.receipt_requested, must_sign=True)

    # -- /firmware --------------------------------------------------------------------------

    def firmware(self, der: bytes) -> Outcome:
        try:
            package = firmware.check(der, self.anchor_certificates())
        except firmware.BadFirmware as e:
            text = str(e)
            try:
                named = firmware.check(der, None)  # what it claims, to name it in the error
                name, hw = named.name, named.targets[0]
            except firmware.BadFirmware:
                name, hw = None, None
            code = (FW_NO_TRUST_ANCHOR if "trusted" in text else
                    FW_SIGNATURE_FAILURE if "signature" in text else FW_DECODE_FAILURE)
            value = firmware.load_error(self.hw_type or hw or "0.0", self.hw_serial or b"", code, name)
            return self._cms_answer("firmware", firmware.ERROR, value, False, f"firmware refused: {text}")
        if self.hw_type is not None and self.hw_type not in package.targets:
            value = firmware.load_error(self.hw_type, self.hw_serial or b"", FW_WRONG_HARDWARE, package.name)
            return self._cms_answer("firmware", firmware.ERROR, value, False,
                                    f"firmware {package.name} is for {', '.join(package.targets)}, not this"
                                    f" hardware ({self.hw_type})")
        if package.content_type != firmware.FIRMWARE:
            # This device loads plain images only (no compression, no encryption layer).
            value = firmware.load_error(self.hw_type or package.targets[0], self.hw_serial or b"",
                                        FW_UNSUPPORTED_PACKAGE_TYPE, package.name)
            return self._cms_answer("firmware", firmware.ERROR, value, False,
                                    f"firmware {package.name} is {package.content_type}: not loadable here")
        stem = _safe(str(package.name))
        write_atomically(self.state / "firmware" / f"{stem}.bin", package.image)
        write_atomically(self.state / "firmware" / f"{stem}.json", json.dumps({
            "name": str(package.name), "targets": list(package.targets), "description": package.description,
            "signer": package.signer.subject.rfc4514_string(),
            "anchor": package.anchor.subject.rfc4514_string() if package.anchor else None,
            "received_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
            indent=1).encode())
        value = firmware.receipt(self.hw_type or package.targets[0], self.hw_serial or b"", package.name,
                                 trust_anchor_key_id=tamp.key_id_of_cert(package.anchor) if package.anchor else None)
        return self._cms_answer("firmware", firmware.RECEIPT, value, True,
                                f"firmware {package.name} stored ({len(package.image)} bytes)")

    # -- /tamp ------------------------------------------------------------------------------

    def _answer(self, kind: str, value: core.Asn1Value, ok: bool, summary: str) -> Outcome:
        der = self._sign(kind, value) or tamp.unsigned(kind, value)
        return Outcome("tamp", ok, summary, der, tamp.media_type(kind), requested=True)

    def _tamp_error(self, failed: str, status: int, ref: tamp.MsgRef | None, summary: str) -> Outcome:
        return self._answer("tamp_error", tamp.error(failed, status, ref), False, summary)

    def tamp_message(self, der: bytes, media_type: str | None = None) -> Outcome:
        declared = tamp.kind_of_media_type(media_type or "") or "tamp_status_query"
        try:
            message = tamp.read(der, require_signature=True)
        except tamp.BadTamp as e:
            status = TAMP_MISSING_SIGNATURE if "must be signed" in str(e) else (
                TAMP_SIGNATURE_FAILURE if "signature" in str(e) else TAMP_DECODE_FAILURE)
            return self._tamp_error(declared, status, None, f"TAMP message refused: {e}")
        if message.kind not in tamp.REQUESTS:
            return self._tamp_error(declared, TAMP_DECODE_FAILURE, message.ref, f"{message.kind} is not a request")
        try:
            trust.chain_to_anchor(message.signer_certificate, self.anchor_certificates(), list(message.carried))
        except trust.Untrusted as e:
            return self._tamp_error(message.kind, TAMP_NO_TRUST_ANCHOR, message.ref, f"TAMP message refused: {e}")
        if not message.request_ref.target.matches(self.hw_type, self.hw_serial, self.communities()):
            return self._tamp_error(message.kind, TAMP_INCORRECT_TARGET, message.ref,
                                    f"TAMP message for {message.request_ref.target.describe()}, not this device")
        state = self._tamp_state()
        fingerprint = hashlib.sha256(der).hexdigest()
        given = state.get("answers", {}).get(fingerprint)
        if given is not None:
            # The same message again (our answer got lost): the same answer, not a replay error.
            return Outcome("tamp", given["ok"], given["summary"] + " (answered before; same answer again)",
                           bytes.fromhex(given["answer"]), given["type"], requested=True)
        signer_id = tamp.key_id_of_cert(message.signer_certificate).hex()
        last = state["seq"].get(signer_id)
        if last is not None and message.request_ref.seq_num <= last:
            return self._tamp_error(message.kind, TAMP_SEQ_NUM_FAILURE, message.ref,
                                    f"TAMP message {message.request_ref.seq_num} replayed (last was {last})")
        outcome = getattr(self, "_" + message.kind)(message, state)
        state = self._tamp_state()  # as the handler left it
        state["seq"][signer_id] = message.request_ref.seq_num
        answers = state.setdefault("answers", {})
        answers[fingerprint] = {"ok": outcome.ok, "summary": outcome.summary, "answer": outcome.answer.hex(),
                                "type": outcome.answer_type}
        for old in list(answers)[:-MAX_REMEMBERED]:
            del answers[old]
        self._save_tamp_state(state)
        return outcome

    def _seq_numbers(self) -> dict[bytes, int]:
        return {bytes.fromhex(k): v for k, v in self._tamp_state()["seq"].items()}

    def _tamp_status_query(self, message: tamp.TampMessage, state: dict) -> Outcome:
        terse = message.value["terse"].native == "terse"
        value = tamp.status_response(message.request_ref, self.anchors(), terse=terse,
                                     communities=list(self.communities()),
                                     seq_numbers=self._seq_numbers(), uses_apex=state["apex"] is not None)
        return self._answer("tamp_status_response", value, True,
                            f"TAMP status query {message.request_ref.seq_num} answered ({len(self.anchors())} anchors)")

    def _store_anchor(self, anchor: tamp.TrustAnchor, state: dict) -> None:
        write_atomically(self.state / "trust-anchors" / f"{anchor.key_id.hex()}.der", anchor.der)
        if anchor.key_id.hex() in state["removed"]:
            state["removed"].remove(anchor.key_id.hex())

    def _remove_anchor(self, spki: bytes, state: dict) -> bool:
        for anchor in self.anchors():
            if anchor.spki == spki:
                path = self.state / "trust-anchors" / f"{anchor.key_id.hex()}.der"
                if path.exists():
                    path.unlink()
                state["removed"].append(anchor.key_id.hex())
                return True
        return False

    def _tamp_update(self, message: tamp.TampMessage, state: dict) -> Outcome:
        statuses = []
        present = {a.spki for a in self.anchors()}
        for action, spki, anchor in tamp.changes_of(message.value):
            if action == "add":
                if spki in present:
                    statuses.append(TAMP_IMPROPER_ADDITION)
                elif anchor is not None:  # an addition names its anchor
                    self._store_anchor(anchor, state)
                    present.add(spki)
                    statuses.append(TAMP_SUCCESS)
            elif action == "remove":
                statuses.append(TAMP_SUCCESS if self._remove_anchor(spki, state) else TAMP_NOT_FOUND)
                present.discard(spki)
            else:
                statuses.append(TAMP_NOT_FOUND)
            self._save_tamp_state(state)
        terse = message.value["terse"].native == "terse"
        value = tamp.update_confirm(message.request_ref, statuses, anchors=None if terse else self.anchors())
        good = sum(1 for s in statuses if s == TAMP_SUCCESS)
        return self._answer("tamp_update_confirm", value, good == len(statuses),
                            f"trust anchor update {message.request_ref.seq_num}: {good} of {len(statuses)}"
                            " changes applied")

    def _tamp_apex_update(self, message: tamp.TampMessage, state: dict) -> Outcome:
        apex = tamp.TrustAnchor.from_choice(message.value["apex_ta"])
        if message.value["clear_trust_anchors"].native:
            for anchor in self.anchors():
                if anchor.key_id != apex.key_id:
                    self._remove_anchor(anchor.spki, state)
        if message.value["clear_communities"].native:
            state["communities"] = []
        self._store_anchor(apex, state)
        state["apex"] = apex.key_id.hex()
        self._save_tamp_state(state)
        terse = message.value["terse"].native == "terse"
        value = tamp.apex_update_confirm(message.request_ref, TAMP_SUCCESS, anchors=None if terse else self.anchors())
        return self._answer("tamp_apex_update_confirm", value, True,
                            f"apex trust anchor is now {apex.title or apex.key_id.hex()}")

    def _tamp_community_update(self, message: tamp.TampMessage, state: dict) -> Outcome:
        updates = message.value["updates"]
        remove = {o.dotted for o in updates["remove"]} if updates["remove"].native else set()
        add = [o.dotted for o in updates["add"]] if updates["add"].native else []
        state["communities"] = [c for c in state["communities"] if c not in remove]
        state["communities"] += [c for c in add if c not in state["communities"]]
        self._save_tamp_state(state)
        terse = message.value["terse"].native == "terse"
        value = tamp.community_update_confirm(message.request_ref, TAMP_SUCCESS,
                                              communities=None if terse else list(state["communities"]))
        return self._answer("tamp_community_update_confirm", value, True,
                            f"communities now {', '.join(state['communities']) or '(none)'}")

    def _tamp_sequence_adjust(self, message: tamp.TampMessage, state: dict) -> Outcome:
        value = tamp.sequence_adjust_confirm(message.request_ref, TAMP_SUCCESS)
        return self._answer("tamp_sequence_adjust_confirm", value, True,
                            f"sequence number of {message.signer_certificate.subject.rfc4514_string()} set to"
                            f" {message.request_ref.seq_num}")

    # -- dispatch ---------------------------------------------------------------------------

    def handle(self, operation: str, der: bytes, media_type: str | None = None) -> Outcome:
        if operation == "symmetrickeys":
            return self.symmetric_key(der)
        if operation == "firmware":
            return self.firmware(der)
        if operation == "tamp":
            return self.tamp_message(der, media_type)
        raise ValueError(f"no handler for {operation}")


def load_kek(text: str) -> bytes:
    """A KEK given as hex, or the raw bytes of a file."""
    path = Path(text)
    data = path.read_bytes() if path.exists() else text.encode()
    stripped = data.strip()
    try:
        return bytes.fromhex(stripped.decode())
    except (UnicodeDecodeError, ValueError):
        return data


__all__ = ["Device", "Outcome", "load_kek"]
