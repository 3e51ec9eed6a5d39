"""CA generations: every key the CA has signed with, its certificate and
its state, so that every process on the store (the master, its workers,
estctl) sees the same CA.

States: ``next`` (made by a rollover or renewal, not signing yet),
``current`` (signs everything new), ``retiring`` (signs only CRLs for what it
issued), ``retired`` (key destroyed; its last CRL still served), ``aborted``.
Exactly one generation is current. The table lives in db.SCHEMA.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

from .audit_tables import insert_audit
from .tables import Repository, now_text, present

LIVE_STATES = ("next", "current", "retiring")
# Certificates on record that no device relies on: the appliance's own
# infrastructure, re-issued under the new key at the switch.
INFRASTRUCTURE_LABELS = ("(tls-server)", "(content-signer)", "(tamp-signer)", "(firmware-signer)", "(ca-link)")


@dataclass(frozen=True)
class Generation:
    id: int
    key_label: str
    key_type: str
    state: str
    cert: bytes | None  # DER: NewWithNew (a root) or the parent's answer (a subordinate)
    chain: bytes | None  # PEM: the parent's chain (a subordinate)
    csr: bytes | None  # PEM: the renewal CSR waiting for the parent's answer
    new_with_old: bytes | None  # DER links (RFC 4210 4.4), a root rollover only
    old_with_new: bytes | None
    created_at: str
    switched_at: str | None
    retired_at: str | None



_SELECT = ("SELECT id, key_label, key_type, state, cert, chain, csr, new_with_old, old_with_new, created_at,"
           " switched_at, retired_at FROM ca_generations")


class GenerationTables(Repository):
    def generations(self) -> list[Generation]:
        """Every generation, oldest first."""
        return [Generation(*row) for row in self._db.execute(_SELECT + " ORDER BY id")]

    def generation(self, gen_id: int) -> Generation | None:
        row = self._db.execute(_SELECT + " WHERE id=?", (gen_id,)).fetchone()
        return None if row is None else Generation(*row)

    def generations_stamp(self) -> tuple[object, ...]:
        """Cheap: changes whenever any generation changes state or certificate."""
        return tuple(self._db.execute("SELECT id, state, length(cert), length(chain), length(new_with_old)"
                                      " FROM ca_generations ORDER BY id"))

    def add_generation(self, *, key_label: str, key_type: str, state: str, cert: bytes | None = None,
                       chain: bytes | None = None, detail: str) -> Generation:
        with self._writing():
            gen_id = self._db.insert("INSERT INTO ca_generations (key_label, key_type, state, cert, chain, created_at,"
                                   " switched_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (key_label, key_type, state, cert, chain, now_text(),
                                    now_text() if state == "current" else None))
            self._audit_ca(detail)
        return present(self.generation(gen_id), f"generation {gen_id}")

    def update_generation(self, gen_id: int, detail: str, **fields: bytes | str | None) -> Generation:
        """Set columns of one generation and audit it, in one commit."""
        allowed = {"cert", "chain", "csr", "new_with_old", "old_with_new", "state"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)}")
        with self._writing():
            self._db.execute(f"UPDATE ca_generations SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?",
                             (*fields.values(), gen_id))
            self._audit_ca(detail)
        return present(self.generation(gen_id), f"generation {gen_id}")

    def switch_generation(self, new_id: int, *, old_state: str = "retiring", detail: str) -> None:
        """The ``next`` generation becomes current and the current one
        ``old_state``, in one commit: no process ever sees two or none."""
        now = now_text()
        with self._writing():
            row = self._db.execute("SELECT state FROM ca_generations WHERE id=?", (new_id,)).fetchone()
            if row is None or row[0] != "next":
                raise ValueError(f"generation {new_id} is not the next one")
            self._db.execute("UPDATE ca_generations SET state=?, retired_at=? WHERE state='current'",
                             (old_state, now if old_state == "retired" else None))
            self._db.execute("UPDATE ca_generations SET state='current', switched_at=? WHERE id=?", (now, new_id))
            self._audit_ca(detail)

    def set_generation_state(self, gen_id: int, state: str, detail: str) -> None:
        with self._writing():
            self._db.execute("UPDATE ca_generations SET state=?, retired_at=? WHERE id=?",
                             (state, now_text() if state in ("retired", "aborted") else None, gen_id))
            self._audit_ca(detail)

    def audit_ca(self, outcome: str, detail: str) -> None:
        """An audit event of the key ceremony (operation 'ca')."""
        with self._writing():
            insert_audit(self._db, "ca", outcome, detail=detail, at=now_text())

    def _audit_ca(self, detail: str) -> None:
        insert_audit(self._db, "ca", "ok", detail=detail, at=now_text())

    # -- what depends on a generation ---------------------------------------------------

    def valid_certificates_since(self, issued_before: str | None, now: datetime.datetime
                                 ) -> list[tuple[int, str, bytes]]:
        """(serial, not_after, der) of unrevoked, unexpired certificates
        issued before ``issued_before`` (all when None), the appliance's own
        infrastructure left out. The caller tells the issuer by the DER."""
        sql = ("SELECT serial, not_after, der FROM certificates WHERE status='valid' AND not_after>?"
               f" AND label NOT IN ({', '.join('?' * len(INFRASTRUCTURE_LABELS))})")
        args: list[object] = [now.isoformat(), *INFRASTRUCTURE_LABELS]
        if issued_before is not None:
            sql += " AND issued_at<=?"
            args.append(issued_before)
        return [(int(s, 16), na, der) for s, na, der in self._db.execute(sql, args)]

    def revoked_certificates_with_der(self, *, ca_certificates: bool) -> list[tuple[int, str, str, str, bytes]]:
        """(serial, revoked_at, reason, not_after, der) of revoked certificates, end-entity or CA ones."""
        rows = self._db.execute("SELECT serial, revoked_at, revocation_reason, label, not_after, der FROM certificates"
                                " WHERE status='revoked' ORDER BY revoked_at")
        return [(int(serial, 16), at, reason, not_after, der) for serial, at, reason, label, not_after, der in rows
                if (label == "(ca)") == ca_certificates]
