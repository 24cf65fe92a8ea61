"""Per-VM identity tokens of local VMs: the embedded provider's proof for the broker.

Each start of a local VM creates a random token ``<vm id>.<secret>`` and hands it to the VM's
processes in ``JITR_VM_TOKEN`` (the environment, which other users cannot read, never argv,
which ``ps`` shows to everyone). Only its SHA-256 is kept, in the ``vm_tokens`` table, and it is
deleted when the VM ends. A token verifies while its VM is running: the id part finds the
VM's digest, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping

from ..errors import IdentityError
from ..identity import proof_field
from ..model import VMIdentity
from .db import Database
from .proc import alive

PROVIDER = "embedded"
TOKEN_ENV = "JITR_VM_TOKEN"  # noqa: S105 - the variable's name, not a token
MAX_TOKEN_CHARS = 256

_TOKEN = re.compile(r"^([A-Za-z0-9-]{1,64})\.([A-Za-z0-9_-]{32,128})$")
_SAVE = "INSERT OR REPLACE INTO vm_tokens (vm_id, digest, issued_at) VALUES (?, ?, ?)"
_FIND = """SELECT t.digest, t.issued_at, v.state, v.pid, v.start_time FROM vm_tokens t
JOIN vms v ON v.vm_id = t.vm_id WHERE t.vm_id = ?"""
FORGET = "DELETE FROM vm_tokens WHERE vm_id = ?"


def issue_token(db: Database, vm_id: str) -> str:
    """A new token for ``vm_id``, replacing any earlier one; only its digest is stored."""
    token = f"{vm_id}.{secrets.token_urlsafe(32)}"
    db.write(_SAVE, (vm_id, _digest(token), time.time()))
    return token


def verify_token(db: Database, proof: Mapping[str, str]) -> VMIdentity:
    """The identity of the running local VM whose token ``proof["token"]`` is; IdentityError otherwise."""
    token = proof_field(proof, "token", MAX_TOKEN_CHARS, "embedded VM")
    match = _TOKEN.match(token)
    if match is None:
        raise IdentityError("the embedded VM token is malformed")
    vm_id = match.group(1)
    rows = db.read(_FIND, (vm_id,))
    stored = rows[0][0] if rows else _digest("")  # compare anyway, so a miss costs as much as a hit
    if not hmac.compare_digest(stored, _digest(token)) or not rows:
        raise IdentityError("the embedded VM token matches no local VM")
    _, issued_at, state, pid, start = rows[0]
    if state != "running" or pid is None or not alive(pid, start or ""):
        raise IdentityError("the embedded VM token belongs to a VM that is not running")
    return VMIdentity(PROVIDER, vm_id, zone="", account="", issued_at=issued_at)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
