"""The broker handoff of the sandbox's VMs: a per-VM token for identity, and the VM's call for its config.

A simulated VM proves who it is the way a local VM of the embedded provider does: a random
token issued at launch, of which only a digest is kept, verified by the provider's
``jitr_verify_vm_identity`` while the VM runs. :func:`ask_broker` plays the startup script's
fetch (``jitr_core.broker_script``) in Python: it retries network errors, 409, 429 and 5xx
until a deadline, asks again at once on 204 (a warm VM without a job yet) and ends at a refusal.
Retries start at a few milliseconds, since a simulated VM "boots" the moment it is launched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from jitr_core.errors import IdentityError
from jitr_core.identity import proof_field
from jitr_core.model import VMIdentity

RETRY_S = (0.02, 0.5)  # first and longest wait between two calls
_REFUSALS = frozenset({400, 401, 403, 404, 410, 413})


class VMTokens:
    """The identity tokens of one provider's running VMs: issued at launch, forgotten at the VM's end."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._lock = threading.Lock()
        self._by_vm: dict[str, tuple[str, float]] = {}  # vm id → (token digest, issued at)

    def issue(self, vm_id: str) -> str:
        token = f"{vm_id}.{secrets.token_urlsafe(32)}"
        with self._lock:
            self._by_vm[vm_id] = (_digest(token), time.time())
        return token

    def forget(self, vm_id: str) -> None:
        with self._lock:
            self._by_vm.pop(vm_id, None)

    def verify(self, proof: Mapping[str, str]) -> VMIdentity:
        """The running VM whose token ``proof["token"]`` is; IdentityError (naming no value) otherwise."""
        token = proof_field(proof, "token", 256, f"{self.provider} VM")
        vm_id = token.partition(".")[0]
        with self._lock:
            stored, issued_at = self._by_vm.get(vm_id, (_digest(""), 0.0))
        if not hmac.compare_digest(stored, _digest(token)) or not issued_at:
            raise IdentityError(f"the {self.provider} VM token matches no running VM")
        return VMIdentity(self.provider, vm_id, zone="", account="", issued_at=issued_at)


def ask_broker(
    url: str, runner_name: str, provider: str, token: str, stop: threading.Event, deadline_s: float
) -> tuple[str, str] | None:
    """(runner name, JIT config) from the broker at ``url``; None at a refusal, the deadline or ``stop``."""
    body = json.dumps({"runner_name": runner_name, "provider": provider, "proof": {"token": token}}).encode()
    deadline = time.monotonic() + deadline_s
    delay = RETRY_S[0]
    while not stop.is_set() and time.monotonic() < deadline:
        status, answer = _post(url, body)
        config = answer.get("jit_config")
        if status == 200 and isinstance(config, str):
            return str(answer.get("runner_name") or runner_name), config
        if status in _REFUSALS:
            return None
        if status == 204:
            delay = RETRY_S[0]
            continue
        stop.wait(delay)
        delay = min(delay * 2, RETRY_S[1])
    return None


def _post(url: str, body: bytes) -> tuple[int, dict[str, object]]:
    if not url.startswith(("http://", "https://")):
        return 0, {}  # the settings admit only http(s) broker URLs; never open another scheme
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http(s) only, checked above
            status, text = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read()
    except OSError:
        return 0, {}
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        return status, {}
    return status, answer if isinstance(answer, dict) else {}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
