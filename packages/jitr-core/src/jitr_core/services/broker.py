"""The broker: a VM proves who it is with its cloud identity and gets its runner's JIT config, once.

Steps: read the request (runner name, provider, proof; small and strict); verify the identity
through the VM provider's plugin, for the deployment's ``broker_audience``; load the runner
record and check that jitr launched this VM for it and that it still waits for its config; take
the handoff with a conditional write (``handoff`` waiting → minting), so that of concurrent,
duplicated or replayed calls one alone goes on; mint the JIT config; write ``handed`` with the
runner id; answer the config. The config is in no record, log line or message: only the answer
to that one call carries it.

GitHub answering 404 to the mint (the App is not installed for the repository, was
uninstalled, or the message named a wrong installation) is not retried, as at scaleup for
pools without the broker: the runner is retired (its VM deleted; the VM is told 410), and
the job is ``dead-lettered`` with its message in the dead letters and the reason, as after
runners that exit without a job (:mod:`.exits`). A launched VM cannot be taken back, so the
records stay, unlike scaleup's release of a claim that launched nothing: a re-run of the job
on GitHub (a new attempt) is served anew.

A crash between taking the handoff and writing ``handed`` leaves ``minting``: once that is older
than ``claim_timeout_s``, the VM's retry takes it over and mints again under the same runner name
(GitHub replaces the registration), so one runner serves the job. A crash after ``handed`` and
before the answer leaves a VM without a config: its retries get 410, it gives up and ends, and
scaledown retires the runner and re-enqueues the job like a VM that never came online. So that
a slow GitHub does not lose an answer the same way (API Gateway gives up at 29 s), a request's
GitHub calls end within ``ANSWER_WITHIN_S`` of its arrival: one that would wait or retry past
that is answered 503 and the VM asks again.

A warm VM (:mod:`.warm`) asks under its warm name: the broker holds the call up to
``warm_hold_s``, checking its record, and answers 204 (ask again) if no job claimed it by then.
Once a job's runner claim took the VM and recorded it as that runner's VM, the same call goes on
as above for that runner (taken, minted, handed, the warm record deleted) and the answer names
the runner.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ..backend import Backend
from ..errors import GitHubError, GitHubNotFoundError, IdentityError, NoProviderError
from ..github import GitHubAPI, calls_done_by
from ..logs import register_secret
from ..model import MAX_NAME, Record, RunnerState, Scope, VMIdentity
from ..secret import Secret
from .common import dead_letter_job, retire
from .records import RUNNER, RunnerView, Store
from .warm import ASSIGNED, WARM, is_warm_name
from .warm import WAITING as WARM_WAITING

log = logging.getLogger("jitr.broker")

MAX_REQUEST_BYTES = 16 * 1024  # an AWS identity document and its signature take about 2 KB
RETRY_AFTER_S = 5
# API Gateway ends a request after 29 s: a config minted later would be lost on the way while its
# record says handed (the VM, asking again, gets 410 and ends). GitHub calls of one request (the
# hold included) end 25 s after it came, or the VM is told to retry (a rate-limit wait, retries).
ANSWER_WITHIN_S = 25
WARM_CHECK_S = 0.25  # how often a held warm VM's call reads its record: at most 0.25 s late, 4 reads a second
WAITING, MINTING, HANDED = "waiting", "minting", "handed"
_NAME = re.compile(rf"^[a-z0-9-]{{1,{MAX_NAME}}}$")
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_PROOF_KEY = re.compile(r"^[a-z_]{1,32}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/=]+$")


@dataclass(frozen=True, slots=True)
class BrokerAnswer:
    """What to answer the VM; ``jit_config`` (set only on 200) goes into the body and nowhere else."""

    status: int
    reason: str
    runner_name: str = ""
    jit_config: Secret | None = None
    retry_after_s: int | None = None

    @property
    def body(self) -> dict[str, Any]:
        if self.jit_config is not None:
            return {"runner_name": self.runner_name, "jit_config": self.jit_config.reveal()}
        return {"error": self.reason, "runner_name": self.runner_name}

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}


@dataclass(frozen=True, slots=True)
class _Request:
    runner_name: str
    provider: str
    proof: Mapping[str, str] = field(repr=False)


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, retry_after_s: int | None = None) -> None:
        super().__init__(reason)
        self.answer = BrokerAnswer(status, reason, retry_after_s=retry_after_s)


class BrokerService:
    """Answers VMs' requests for their JIT config."""

    def __init__(
        self,
        backend: Backend,
        github: GitHubAPI,
        clock: Callable[[], float] = time.time,
        checkpoint: Callable[[str], None] | None = None,
    ) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.github = github
        self.store = Store(backend, clock)
        self.clock = clock
        self.checkpoint = checkpoint or (lambda step: None)
        self.sleep: Callable[[float], None] = time.sleep
        self.answer_within_s: float = ANSWER_WITHIN_S

    def handle(self, body: bytes) -> BrokerAnswer:
        """One VM request; every answer is logged once, with the runner name and the reason only."""
        name = ""
        try:
            request = _parse(body)
            name = request.runner_name
            with calls_done_by(self.clock() + self.answer_within_s):
                answer = self._answer(request)
        except _Refusal as refusal:
            answer = refusal.answer
        runner_name = answer.runner_name or name
        answer = BrokerAnswer(answer.status, answer.reason, runner_name, answer.jit_config, answer.retry_after_s)
        if answer.status == 204:
            return answer  # a warm VM's empty poll: logged by its launch and its assignment instead
        level = logging.INFO if answer.status in (200, 409, 503) else logging.WARNING
        extra = {"runner_name": runner_name or None, "status": answer.status, "reason": answer.reason}
        if runner_name != name:
            extra["warm_vm"] = name
        log.log(level, "broker", extra=extra)
        return answer

    def _answer(self, request: _Request) -> BrokerAnswer:
        identity = self._verify(request)
        if is_warm_name(request.runner_name):
            return self._warm(request.runner_name, identity)
        record = self.backend.load(RUNNER, request.runner_name)
        if record is None:
            raise _Refusal(404, "no such runner")
        runner = RunnerView(record)
        handoff = runner.get("handoff")
        if handoff is None:
            raise _Refusal(403, "this runner takes its config from its startup script, not from the broker")
        recorded = runner.vm_id is not None
        if recorded and (runner.vm_id != identity.vm_id or runner.get("provider") != identity.provider):
            raise _Refusal(403, "this VM is not the one jitr launched for this runner")
        if handoff == HANDED:
            raise _Refusal(410, "this runner's config was handed over already")
        if runner.state not in (RunnerState.CLAIMED, RunnerState.LAUNCHED):
            raise _Refusal(403, f"this runner no longer waits for its config (it is {runner.state})")
        if runner.state == RunnerState.CLAIMED or not recorded:
            # a VM that boots before its launch is written down (or whose worker died after
            # launching it, until a redelivery takes the claim over) asks again
            raise _Refusal(409, "the launch of this VM is not recorded yet; retry", RETRY_AFTER_S)
        taken = self._take(record)
        return self._mint(taken)

    def _warm(self, name: str, identity: VMIdentity) -> BrokerAnswer:
        """Hold a warm VM's call until a job's runner holds the VM, then hand that runner's config."""
        deadline = self.clock() + self.settings.warm_hold_s
        while True:
            warm = self.backend.load(WARM, name)
            if warm is None or warm.state not in (WARM_WAITING, ASSIGNED):
                raise _Refusal(410, "this warm VM left its pool")
            vm_id = warm.data.get("vm_id")
            if vm_id is None:
                raise _Refusal(409, "the launch of this warm VM is not recorded yet; retry", RETRY_AFTER_S)
            if vm_id != identity.vm_id or warm.data.get("provider") != identity.provider:
                raise _Refusal(403, "this VM is not the warm VM jitr launched under this name")
            runner = self._assigned(warm)
            if runner is not None:
                break
            if warm.data.get("asked_at") is None:  # booted and waiting: jobs take such VMs first
                warm = self.store.write(warm, asked_at=self.clock()) or warm
            if self.clock() >= deadline:
                return BrokerAnswer(204, "no job yet; ask again")
            self.sleep(WARM_CHECK_S)
        if runner.get("handoff") == HANDED:
            raise _Refusal(410, "this runner's config was handed over already")
        answer = self._mint(self._take(runner.record))
        self.backend.delete(WARM, name, expected_version=warm.version)  # else scaledown's upkeep drops it
        return answer

    def _assigned(self, warm: Record) -> RunnerView | None:
        """The runner a job's claim recorded on this warm VM, once that runner holds it."""
        if warm.state != ASSIGNED:
            return None
        record = self.backend.load(RUNNER, str(warm.data.get("runner_name") or ""))
        if record is None:
            return None
        runner = RunnerView(record)
        if runner.state != RunnerState.LAUNCHED or runner.vm_id != warm.data.get("vm_id"):
            return None
        return runner

    def _verify(self, request: _Request) -> VMIdentity:
        # jitr launches this deployment's VMs with one provider: another one's proof can match no
        # runner, and its verifier (configured for nothing here) is not asked
        if request.provider != self.settings.provider("vm"):
            raise _Refusal(401, f"identity refused: this deployment's VMs are not {request.provider} VMs")
        try:
            return self.backend.verify_vm_identity(request.provider, request.proof, self.settings.broker_audience)
        except IdentityError as exc:
            raise _Refusal(exc.status, f"identity refused: {exc.reason}") from None
        except NoProviderError:
            raise _Refusal(401, f"identity refused: no verifier for provider {request.provider!r}") from None

    def _take(self, record: Record) -> Record:
        """Move the handoff to ``minting`` at the version read: the one call that wins goes on."""
        runner = RunnerView(record)
        if runner.get("handoff") == MINTING:
            age = self.clock() - float(runner.get("handoff_at") or 0.0)
            if age < self.settings.claim_timeout_s:
                wait = max(1, min(RETRY_AFTER_S, int(self.settings.claim_timeout_s - age) + 1))
                raise _Refusal(409, "this runner's config is being handed over; retry", wait)
            log.warning("taking over a handoff that stopped", extra={"runner_name": runner.name, "age_s": round(age)})
        taken = self.store.write(record, handoff=MINTING, handoff_at=self.clock())
        if taken is None:
            raise _Refusal(409, "this runner changed while its config was asked for; retry", 1)
        self.checkpoint("taken")
        return taken

    def _mint(self, taken: Record) -> BrokerAnswer:
        runner = RunnerView(taken)
        try:
            scope = self._scope(runner.scope)
            labels = [str(label) for label in runner.get("runner_labels") or ()]
            group = str(runner.get("runner_group") or "Default")
            jit = self.github.generate_jit_config(scope, runner.name, labels, group)
        except GitHubNotFoundError as exc:
            self._cannot_serve(taken, exc)
        except GitHubError as exc:
            self.store.write(taken, handoff=WAITING)  # a lost write leaves minting, taken over later
            log.warning("JIT config not minted", extra={"runner_name": runner.name, "reason": str(exc)})
            raise _Refusal(503, "GitHub could not register the runner now; retry", RETRY_AFTER_S) from None
        register_secret(jit.encoded.reveal())
        self.checkpoint("minted")
        if not _BASE64.match(jit.encoded.reveal()):
            self._unregister(scope, jit.runner_id, runner.name)
            raise _Refusal(503, "GitHub answered a JIT config that is not base64", RETRY_AFTER_S)
        ours = taken.data.get("handoff_at")

        def hand(record: Record) -> dict[str, Any] | None:
            # other writes (a swap of jobs between runners) may come between: only a runner that
            # left LAUNCHED, or a handoff another call took over, loses this config
            if record.state != RunnerState.LAUNCHED or record.data.get("handoff") != MINTING:
                return None
            if record.data.get("handoff_at") != ours:
                return None
            return {
                "handoff": HANDED,
                "handed_at": self.clock(),
                "github_runner_id": jit.runner_id,
                "installation_id": scope.installation_id,
            }

        handed = self.store.update(RUNNER, runner.name, hand)
        if handed is None or handed.data.get("handoff_at") != ours or handed.data.get("handoff") != HANDED:
            current = self.store.runner(runner.name)
            if current is None or current.get("handoff") != HANDED:
                self._unregister(scope, jit.runner_id, runner.name)
            raise _Refusal(410, "this runner changed while its config was minted; it is not handed over")
        self.checkpoint("handed")
        return BrokerAnswer(200, "handed", runner.name, jit.encoded)

    def _cannot_serve(self, taken: Record, exc: GitHubNotFoundError) -> NoReturn:
        """GitHub cannot serve the runner's repository through its installation: a retry would not help."""
        runner = RunnerView(taken)
        reason = (
            f"GitHub cannot serve {runner.get('repository')} through installation {runner.get('installation_id')} "
            f"(not installed there, uninstalled or a wrong id); not retried: {exc}"
        )
        log.warning("JIT config not minted", extra={"runner_name": runner.name, "reason": reason})
        retire(self.store, self.github, runner, reason="not-served")  # nothing registered: no GitHub call
        job = self.store.job(runner.job_id)
        if job is not None and job.launched_runner in (runner.name, None):
            dead_letter_job(self.store, job, reason, "not-served")
        raise _Refusal(410, "GitHub cannot serve this runner's repository through its installation; not retried")

    def _scope(self, scope: Scope) -> Scope:
        if scope.installation_id is not None:
            return scope
        return Scope(self.github.installation_for(scope.owner, scope.repo), scope.owner, scope.repo)

    def _unregister(self, scope: Scope, runner_id: int, name: str) -> None:
        try:
            self.github.delete_runner(scope, runner_id)
        except GitHubError as exc:
            log.warning("could not remove an unused registration", extra={"runner_name": name, "reason": str(exc)})


def _parse(body: bytes) -> _Request:
    """The request, or a 400/413 refusal saying what is wrong (never echoing the proof)."""
    if len(body) > MAX_REQUEST_BYTES:
        raise _Refusal(413, f"the request exceeds {MAX_REQUEST_BYTES} bytes")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Refusal(400, "the request is not JSON") from None
    if not isinstance(data, dict) or set(data) != {"runner_name", "provider", "proof"}:
        raise _Refusal(400, "the request is a JSON object with exactly runner_name, provider and proof")
    name, provider, proof = data["runner_name"], data["provider"], data["proof"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise _Refusal(400, "runner_name is not a runner name")
    if not isinstance(provider, str) or not _PROVIDER.match(provider):
        raise _Refusal(400, "provider is not a provider name")
    if (
        not isinstance(proof, dict)
        or not proof
        or len(proof) > 8
        or not all(isinstance(k, str) and _PROOF_KEY.match(k) and isinstance(v, str) for k, v in proof.items())
    ):
        raise _Refusal(400, "proof is an object of a few named strings")
    return _Request(name, provider, proof)
