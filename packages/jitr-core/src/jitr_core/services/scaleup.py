"""The scaleup function: one job message in, at most one VM out.

Steps: route to a pool; claim (job, attempt) with a create-if-absent write; check the caps
against the claims ranked before ours; mint the JIT config; render the script; launch through
the pool's fallback chain with idempotency tokens derived from the runner name; record the VM.
A crash between any two steps is repaired by the queue's redelivery: the claim is found, the
existing VM (if any) is found by name, and a second JIT registration replaces the stale one.

In a pool with warm VMs (:mod:`.warm`) the claim first takes a waiting warm VM and records it as
the runner's VM (the broker, holding that VM's call, then mints its config); the pool is refilled
after the job is linked, so the refill never delays the assignment. With no warm VM left the job
launches cold as above.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..backend import Backend
from ..broker_script import BROKER
from ..errors import (
    CapacityError,
    CapacityExhaustedError,
    GitHubError,
    GitHubNotFoundError,
    LaunchError,
    PayloadError,
    PluginError,
    RetryLaterError,
    StoreConflictError,
)
from ..github import GitHubAPI
from ..logs import log_context, register_secret
from ..messages import JobMessage, decode
from ..model import (
    JobState,
    LaunchResult,
    Record,
    RunnerState,
    Scope,
    runner_name_for,
)
from ..routing import Router, Sizing
from ..secret import Secret
from ..settings import Pool
from ..startup import ScriptContext, ScriptTooLargeError
from .broker import WAITING
from .candidates import candidate_key, fallback_chain, launch_request, relaunch_order
from .common import in_flight, retire_if_surplus, touch_repo
from .records import JOB, RUNNER, JobView, RunnerView, Store, new_job_data, step, with_steps
from .rerun import prefers_on_demand
from .warm import WarmPools

log = logging.getLogger("jitr.scaleup")


class ScaleupService:
    """Handles jobs-queue messages."""

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
        self.router = Router(backend.settings)
        self.checkpoint = checkpoint or (lambda step: None)
        self.claim_timeout_s = backend.settings.claim_timeout_s
        self.warm = WarmPools(backend, self.store)
        self.warm_pools = any(pool.keeps_warm for pool in backend.settings.pools)

    def handle(self, body: str | bytes) -> str:
        """Process one message; returns what happened. Raises PayloadError for poison, others to retry."""
        message = decode(body)
        if not isinstance(message, JobMessage):
            raise PayloadError("the jobs queue takes job messages, found a lifecycle message")
        with log_context(job_id=message.job_id, delivery_id=message.delivery_id or None, attempt=message.attempt):
            outcome = self._scale(message)
            log.info("scaleup", extra={"outcome": outcome})
            return outcome

    def _scale(self, message: JobMessage) -> str:
        admission = self.router.admit_parts(message.repository, message.owner, message.labels, message.private)
        if admission.pool is None:
            log.info("job ignored", extra={"reason": admission.reason})
            return "ignored"
        pool, sizing = admission.pool, admission.sizing
        job = self._job(message, pool)
        name = runner_name_for(pool.name, message.job_id, message.attempt)
        done = None
        if job.state in (JobState.COMPLETED, JobState.CANCELLED):
            done = "job-finished"
        elif job.state == JobState.RUNNING:
            done = "job-running"
        elif job.state == JobState.DEAD_LETTERED:
            done = "job-dead-lettered"
        elif job.attempt > message.attempt:
            done = "stale-attempt"
        with log_context(runner_name=name):
            if done is not None:
                return self._settle_leftover(name, message, pool, sizing) or done
            self.backend.check_startup_plugins()  # before a claim or a registration is made for nothing
            claim, recovered = self._claim(name, message, pool, sizing)
            if claim is None:
                return "duplicate"
            steps = [
                step(
                    "claimed",
                    RunnerView(claim).claimed_at,
                    attempt=message.attempt,
                    runner=name,
                    reason=message.reason,
                    recovered=recovered or None,
                )
            ]
            if sizing is not None:
                # which machine types came from the job's labels rather than the pool's defaults
                types = list(sizing.machine_types)
                steps.append(step("sized", self.clock(), labels=list(sizing.labels), machine_types=types))
            try:
                runner = self._launch(claim, recovered, message, pool, steps, sizing, job.get("relaunch_after"))
            except CapacityExhaustedError:
                self._note(message.job_id, [*steps, step("retry", self.clock(), reason="no-capacity")])
                raise
            except GitHubNotFoundError as exc:
                self._abandon(claim, message)
                raise PayloadError(
                    f"GitHub cannot serve {message.repository} through installation {message.installation_id} "
                    f"(not installed there, uninstalled or a wrong id); not retried: {exc}"
                ) from None
            linked = self._link_job(message.job_id, message.attempt, runner.name, steps)
            if runner.get("warm_vm") is not None:
                self._refill(pool)
            # cancelled while it launched: lifecycle read the job before this link and retired no runner
            if linked == JobState.CANCELLED and retire_if_surplus(self.store, self.github, runner.name):
                return "cancelled-runner-retired"
            if runner.get("warm_vm") is not None:
                return "assigned-warm"
            return "recovered" if recovered else "launched"

    def _job(self, message: JobMessage, pool: Pool) -> JobView:
        view = self.store.job(message.job_id)
        if view is not None:
            return view
        data = new_job_data(message, private=message.private, attempt=message.attempt)
        created = self.store.create(JOB, str(message.job_id), JobState.QUEUED, pool=pool.name, data=data)
        if created is not None:
            self.backend.metrics.record("jobs_received", pool=pool.name)
            touch_repo(self.store, message.repository, message.owner, message.installation_id, message.private)
            return JobView(created)
        view = self.store.job(message.job_id)
        if view is None:
            raise RetryLaterError("job record vanished while being created", delay_s=5)
        return view

    def _claim(self, name: str, message: JobMessage, pool: Pool, sizing: Sizing | None) -> tuple[Record | None, bool]:
        """Our claim on (job, attempt) and whether it was taken over from a crashed worker."""
        owner, _, repo = message.repository.partition("/")
        data = {
            "job_id": message.job_id,
            "attempt": message.attempt,
            "owner": owner,
            "repo": None if pool.org_scope else repo,
            "repository": message.repository,
            "installation_id": message.installation_id,
            "vm_id": None,
            "github_runner_id": None,
            "claimed_at": self.clock(),
            "sizing_labels": list(sizing.labels) if sizing is not None else None,
        }
        created = self._counted_claim(name, pool, data)
        if created is not None:
            self.checkpoint("claimed")
            return created, False
        existing = self.store.runner(name)
        if existing is None or existing.state != RunnerState.CLAIMED:
            return None, False
        return self._take_over(existing), True

    def _take_over(self, existing: RunnerView) -> Record:
        """Take a claim whose worker stopped making progress; a younger one is left to its worker."""
        age = self.clock() - existing.claimed_at
        if age < self.claim_timeout_s:
            raise RetryLaterError(
                f"runner {existing.name} is being launched by another worker",
                delay_s=int(self.claim_timeout_s - age) + 1,
            )
        taken = self.store.write(existing.record, claimed_at=self.clock())
        if taken is None:
            raise RetryLaterError(f"claim on {existing.name} changed while taking it over", delay_s=5)
        log.warning("taking over a stale claim", extra={"claim_age_s": round(age, 1)})
        return taken

    def _settle_leftover(self, name: str, message: JobMessage, pool: Pool, sizing: Sizing | None) -> str | None:
        """A redelivered message whose job no longer needs this launch: settle the claim it left.

        The claim of a worker that died may have been handed to another queued job in the
        meantime (a swap); then the launch is resumed for that job. Otherwise the claim is
        released once its worker is surely gone, so it blocks no cap and no repair.
        """
        leftover = self.store.runner(name)
        if leftover is None or leftover.state != RunnerState.CLAIMED:
            return None
        stand_in = self.store.job(leftover.job_id) if leftover.job_id != message.job_id else None
        if stand_in is not None and stand_in.state == JobState.QUEUED and stand_in.launched_runner == name:
            claim = self._take_over(leftover)
            self._launch(claim, True, message, pool, sizing=sizing)  # finds the VM the dead worker launched
            return "resumed-for-another-job"
        claim = self._take_over(leftover)  # a VM it launched, no job needs: scaledown ends it as an orphan
        self._release(claim, RunnerView(claim).scope, RunnerView(claim).github_runner_id)
        return "released-leftover-claim"

    def _counted_claim(self, name: str, pool: Pool, data: dict[str, object]) -> Record | None:
        """Create the claim within the caps: counted by the store when it counts, else by us."""
        record = self.store.new(RUNNER, name, RunnerState.CLAIMED, pool=pool.name, data=data)
        admission = self.backend.claim_runner(record, pool.max_runners, self.settings.max_runners)
        if admission is None:
            if not self.backend.create(record):
                return None
            self._enforce_caps(record, pool)
            return record
        if admission.ok:
            return record
        if admission.refused_by == "exists":
            return None
        raise self._cap_full(pool, pool_full=admission.refused_by == "pool")

    def _cap_full(self, pool: Pool, pool_full: bool) -> RetryLaterError:
        which = f"pool {pool.name} ({pool.max_runners})"
        if not pool_full:
            which = f"the global cap ({self.settings.max_runners})"
        return RetryLaterError(f"{which} is full; job waits", delay_s=self.settings.cap_wait_s)

    def _enforce_caps(self, claim: Record, pool: Pool) -> None:
        """Keep the claim only if fewer than the caps' worth of *other* runners are in flight.

        The claim is written before the count is read, so of two racing claims at least the
        later reader sees the other (on a store whose queries read their own and others'
        committed writes): the cap can never be exceeded, and at worst both racers wait for
        the next try. No lock serialises admissions, so bursts stay parallel.
        """
        others = {r.name: r.record.pool for r in in_flight(self.backend) if r.name != claim.key}
        ahead_overall = len(others)  # by name: a runner moving on between the state queries counts once
        ahead_in_pool = sum(1 for other_pool in others.values() if other_pool == pool.name)
        if ahead_in_pool < pool.max_runners and ahead_overall < self.settings.max_runners:
            return
        self.backend.delete(RUNNER, claim.key, expected_version=claim.version)
        raise self._cap_full(pool, pool_full=ahead_in_pool >= pool.max_runners)

    def _launch(
        self,
        claim: Record,
        recovered: bool,
        message: JobMessage,
        pool: Pool,
        steps: list[dict[str, Any]] | None = None,
        sizing: Sizing | None = None,
        after: str | None = None,
    ) -> RunnerView:
        """Mint, render, walk the chain and record the VM; the launch steps are appended to ``steps``.

        ``after`` names the candidate a runner of this job exited on without taking it: the chain
        resumes past it (see :func:`.exits.relaunch_order`).

        A sized job's runner is registered with its sizing labels too, or GitHub would not give it the job.
        """
        steps = [] if steps is None else steps
        runner = RunnerView(claim)
        if recovered and (existing := self._existing_vm(runner.name)) is not None:
            steps.append(step("launch", self.clock(), outcome="found", vm_id=existing.vm_id))
            return self._record(claim, existing, github_runner_id=runner.github_runner_id)
        scope = self._scope(runner.scope)
        labels = sorted(pool.labels | set(sizing.labels if sizing is not None else ()))
        if pool.keeps_warm and sizing is None:  # a sized job needs its own machine type: cold
            warm = (recovered and self.warm.assigned_to(pool, runner.name)) or self.warm.claim(pool, runner.name)
            if warm:
                return self._assign_warm(claim, warm, scope, labels, pool, steps)
        if self.warm_pools:  # warm VMs count against the caps this cold launch fills
            self.warm.make_room(pool)
        if pool.handoff == BROKER:  # the VM pulls a config minted when it asks (services/broker.py)
            encoded, runner_id = Secret(""), None
            handoff: dict[str, Any] = {"handoff": WAITING, "runner_labels": labels, "runner_group": pool.runner_group}
        else:
            jit = self.github.generate_jit_config(scope, runner.name, labels, pool.runner_group)
            register_secret(jit.encoded.reveal())
            self.checkpoint("minted")
            encoded, runner_id, handoff = jit.encoded, jit.runner_id, {}
        claim = self._prepare(
            claim, installation_id=scope.installation_id, github_runner_id=runner_id, claimed_at=self.clock(), **handoff
        )
        provider = self.settings.provider("vm")
        context = ScriptContext(
            runner.name,
            pool,
            provider,
            encoded,
            self.settings.runner_version,
            pool.max_lifetime_s,
            handoff=pool.handoff,
            broker_url=self.settings.broker_url,
            broker_audience=self.settings.broker_audience,
            broker_deadline_s=self.settings.boot_timeout_s,
        )
        try:
            script = self.backend.render_startup_script(context, self.backend.user_data_limit(provider))
            result = self._walk_chain(runner.name, message, pool, script, steps, sizing, after)
        except (CapacityExhaustedError, ScriptTooLargeError, PluginError):
            # nothing was launched: a retry must be able to claim again, and GitHub keep no registration
            self._release(claim, scope, runner_id)
            raise
        self.checkpoint("launched")
        recorded = self._record(claim, result, github_runner_id=runner_id)
        self.checkpoint("recorded")
        return recorded

    def _assign_warm(
        self, claim: Record, warm: Record, scope: Scope, labels: list[str], pool: Pool, steps: list[dict[str, Any]]
    ) -> RunnerView:
        """Make the warm VM this claim's VM; its held broker call then mints the runner's config."""
        claim = self._prepare(
            claim,
            installation_id=scope.installation_id,
            claimed_at=self.clock(),
            handoff=WAITING,
            runner_labels=labels,
            runner_group=pool.runner_group,
            warm_vm=warm.key,
        )
        d = warm.data
        result = LaunchResult(
            str(d["vm_id"]),
            str(d.get("provider")),
            str(d.get("machine_type") or ""),
            d.get("placement"),
            bool(d.get("spot")),
        )
        self.checkpoint("warm-assigned")
        recorded = self._record(claim, result, github_runner_id=None, warm_vm=warm.key)
        market = "spot" if result.spot else "on_demand"
        self.backend.metrics.record("jobs_launched", pool=pool.name, market=market)
        steps.append(step("launch", self.clock(), outcome="warm", vm_id=result.vm_id, warm_vm=warm.key))
        return recorded

    def _prepare(self, claim: Record, **data: object) -> Record:
        """Write what the launch needs onto the claim, on top of whatever came between.

        A runner that took another job may have handed this claim to that job (a swap rebinds it)
        since it was read: a write at the version read would be lost, and a broker-mode VM whose
        record has no ``handoff`` would be refused its config.
        """
        written = self.store.update(
            RUNNER, claim.key, lambda record: data if record.state == RunnerState.CLAIMED else None
        )
        return written or claim

    def _refill(self, pool: Pool) -> None:
        """Replace the warm VM just taken; a failure is left to scaledown's upkeep, the job is served."""
        try:
            self.warm.replenish(pool, self.clock())
        except Exception as exc:  # the job is served: its message must not be retried for the pool
            log.warning("warm pool not refilled", extra={"pool": pool.name, "reason": str(exc)})

    def _walk_chain(
        self,
        name: str,
        message: JobMessage,
        pool: Pool,
        script: str,
        steps: list[dict[str, Any]],
        sizing: Sizing | None = None,
        after: str | None = None,
    ) -> LaunchResult:
        codes: list[str] = []
        # a job whose runner or previous attempt was interrupted skips spot, if the pool allows on-demand
        on_demand = pool.spot and pool.on_demand_fallback and self._prefers_on_demand(message)
        for index, (machine_type, placement, spot) in relaunch_order(list(fallback_chain(pool, sizing)), after):
            if on_demand and spot:
                continue
            labels = {"jitr-job": str(message.job_id), "jitr-attempt": str(message.attempt)}
            request = launch_request(pool, name, (machine_type, placement, spot), index, script, labels)
            candidate = candidate_key(machine_type, placement, spot)
            at = self.clock()
            market, where = "spot" if spot else "on_demand", placement or "default"
            metrics = self.backend.metrics
            metrics.record("launch_attempts", pool=pool.name, machine_type=machine_type, placement=where, market=market)
            try:
                result = self.backend.launch_vm(request)
            except CapacityError as exc:
                metrics.record("launch_failures", pool=pool.name, reason="capacity", placement=where)
                metrics.record("capacity_errors", machine_type=machine_type, zone=where)
                steps.append(step("launch", at, candidate=candidate, outcome="no-capacity", code=exc.code))
                codes.append(f"{candidate}: {exc.code}")
                log.warning("no capacity; trying the next candidate", extra={"candidate": codes[-1]})
                continue
            except LaunchError:
                metrics.record("launch_failures", pool=pool.name, reason="error", placement=where)
                raise
            metrics.record("jobs_launched", pool=pool.name, market=market)
            steps.append(step("launch", at, candidate=candidate, outcome="launched", vm_id=result.vm_id))
            return result
        raise CapacityExhaustedError(f"no capacity for pool {pool.name} on any candidate: {'; '.join(codes)}")

    def _prefers_on_demand(self, message: JobMessage) -> bool:
        job = self.store.job(message.job_id)
        return job is not None and prefers_on_demand(self.store, job, message.run_id, message.run_attempt)

    def _existing_vm(self, name: str) -> LaunchResult | None:
        for vm in self.backend.list_vms():
            if vm.runner_name == name and vm.running:
                return LaunchResult(vm.vm_id, vm.provider, "", None, True)
        return None

    def _scope(self, scope: Scope) -> Scope:
        if scope.installation_id is not None:
            return scope
        owner_repo = scope.repo
        installation = self.github.installation_for(scope.owner, owner_repo)
        return Scope(installation, scope.owner, scope.repo)

    def _record(
        self, claim: Record, result: LaunchResult, github_runner_id: int | None, warm_vm: str | None = None
    ) -> RunnerView:
        now = self.clock()

        facts: dict[str, object] = {
            **({"warm_vm": warm_vm} if warm_vm else {}),
            "vm_id": result.vm_id,
            "provider": result.provider,
            "machine_type": result.machine_type,
            "placement": result.placement,
            "spot": result.spot,
            "github_runner_id": github_runner_id,
            "launched_at": now,
        }

        def launched(record: Record) -> dict[str, object] | None:
            if record.state == RunnerState.CLAIMED:
                return {"state": RunnerState.LAUNCHED, **facts}
            if record.data.get("vm_id") is None:
                # the runner took a job before this write: keep its newer state, add the VM
                return {**facts, "github_runner_id": record.data.get("github_runner_id") or github_runner_id}
            return None

        written = self.store.update(RUNNER, claim.key, launched)
        if written is None:
            raise RetryLaterError(f"runner record {claim.key} vanished after launch", delay_s=5)
        log.info("vm launched", extra={"vm_id": result.vm_id, "machine_type": result.machine_type, "spot": result.spot})
        return RunnerView(written)

    def _link_job(self, job_id: int, attempt: int, runner_name: str, steps: list[dict[str, Any]]) -> JobState | None:
        """Record the runner launched for the job, unless the job moved on while it launched; the
        job's state as the link found it (None: no job record).

        A runner can take another job before this write; the lifecycle function then gave this
        job a spare (``launched_runner`` set) or a new attempt. Overwriting either would leave
        the job pointing at a runner that is busy elsewhere, and waiting for a repair. The same
        write appends the claim and launch ``steps`` to the job's timeline.
        """

        found: list[JobState] = []

        def link(record: Record) -> dict[str, object] | None:
            view = JobView(record)
            found[:] = [view.state]  # called again when a concurrent write wins: the last read counts
            timeline = with_steps(record.data, *steps)
            if view.state != JobState.QUEUED or view.attempt > attempt or view.launched_runner is not None:
                return timeline if steps else None
            return {"launched_runner": runner_name, **timeline}

        self.store.update(JOB, str(job_id), link)
        return found[0] if found else None

    def _note(self, job_id: int, steps: list[dict[str, Any]]) -> None:
        """Append ``steps`` to a job's timeline (a launch that failed, so no other write carries them)."""
        try:
            self.store.update(JOB, str(job_id), lambda record: with_steps(record.data, *steps))
        except StoreConflictError as exc:  # the timeline is best effort; the retry must go through
            log.warning("timeline not written", extra={"reason": str(exc)})

    def _abandon(self, claim: Record, message: JobMessage) -> None:
        """Forget a claim and a fresh job record that a permanent GitHub error left, so a corrected
        delivery of the same job claims and records it anew instead of waiting for them."""
        current = self.store.runner(claim.key)
        if current is not None and current.state == RunnerState.CLAIMED:
            self.backend.delete(RUNNER, claim.key, expected_version=current.record.version)
        job = self.store.job(message.job_id)
        if (
            job is not None
            and job.state == JobState.QUEUED
            and job.get("launched_runner") is None
            and job.get("installation_id") == message.installation_id
        ):
            self.backend.delete(JOB, str(message.job_id), expected_version=job.record.version)

    def _release(self, claim: Record, scope: Scope, github_runner_id: int | None) -> None:
        """Undo a claim that will not launch (no capacity anywhere, or no job needs it), so a retry can claim again."""
        if github_runner_id is not None and scope.installation_id is not None:
            try:
                self.github.delete_runner(scope, github_runner_id)
            except GitHubError as exc:
                log.warning("could not remove the unused runner registration", extra={"reason": str(exc)})
        current = self.store.runner(claim.key)
        if current is not None and current.state == RunnerState.CLAIMED:
            self.backend.delete(RUNNER, claim.key, expected_version=current.record.version)
