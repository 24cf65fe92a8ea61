"""The scaledown function (every 5 minutes): reap what is stale, orphaned or ghostly.

- a runner whose VM never came online within the boot timeout: retired, its job re-enqueued (a
  broker-mode VM that never asked the broker for its config is one: nothing is registered for it);
- a VM past its pool's maximum lifetime: terminated, busy or not (the hard limit); on a warm VM
  the lifetime counts from the job's assignment (the VM had waited for it), but no warm VM lives
  past its boot plus the warm deadline plus the lifetime (:func:`.warm.warm_lifetime_s`);
- a VM with no in-flight runner record (an orphan) after the grace period: terminated;
- a runner record whose VM is gone (spot reclaim, crash): retired, its queued job re-enqueued;
- a runner that exited without taking a job (:mod:`.exits`): counted, its job re-launched once
  on the next candidate, then dead-lettered;
- a GitHub runner of ours with no VM (a ghost) after the grace period: deregistered;
- a queued job whose runner is gone, older than ``stuck_after_s``: re-enqueued with attempt + 1;
- an idle runner whose job was taken by another runner or superseded by a newer attempt (surplus);
- expired records purged (embedded store);
- a store's own runner counts (DynamoDB's cap counters) set back to the records if they drifted;
- warm pools (:mod:`.warm`): dead and idle warm VMs retired, each pool filled to (or cut back
  to) the count its windows want now, assignments whose claim died settled.

A runner that GitHub reports busy is never removed before its maximum lifetime. Reads are
indexed queries on in-flight states, so their cost follows the work in flight, not history.
Each runner, VM and job is a step of its own: one whose cloud, store or GitHub call fails (a VM
with deletion protection, say) is logged and counted under ``errors``, and the pass goes on with
the rest; the next pass tries it again. A pass with such errors ends raising
:class:`~jitr_core.errors.PassIncomplete`, so its invocation still counts as failed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from ..backend import Backend
from ..errors import GitHubError, PassIncomplete
from ..github import GitHubAPI, GitHubRunner
from ..model import (
    IN_FLIGHT_RUNNER_STATES,
    RUNNER_PREFIX,
    JobState,
    Record,
    RecordQuery,
    RunnerState,
    Scope,
    VMInfo,
)
from ..settings import Pool
from .common import in_flight, isolated, requeue, retire, scope_of
from .exits import NoJobExits
from .lease import lease
from .records import JOB, REPO, RUNNER, JobView, RunnerView, Store
from .warm import WARM, WARM_STATES, WarmPools

log = logging.getLogger("jitr.scaledown")


class ScaledownService:
    """One scaledown pass; safe to run twice at once (a lease guards it)."""

    def __init__(self, backend: Backend, github: GitHubAPI, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.github = github
        self.store = Store(backend, clock)
        self.clock = clock
        self.exits = NoJobExits(backend, github, self.store)

    def run(self) -> dict[str, Any]:
        with lease(self.store, "scaledown", ttl_s=240) as held:
            if not held:
                return {"skipped": "another scaledown run holds the lease"}
            return self._run()

    def _run(self) -> dict[str, Any]:
        now = self.clock()
        report: Counter[str] = Counter()
        runners = list(in_flight(self.backend))
        listed = self.backend.list_vms()
        vms = {vm.vm_id: vm for vm in listed if vm.running}
        vm_by_runner = {vm.runner_name: vm for vm in vms.values()}
        ended = {vm.runner_name: vm for vm in listed if not vm.running}  # with what the runner reported
        ended_by_id = {vm.vm_id: vm for vm in listed if not vm.running}
        github_runners = self._github_runners(runners, report)
        for runner in runners:
            # a runner given a warm VM holds a VM named for the warm VM: found by its id
            vm = vm_by_runner.get(runner.name) or (vms.get(runner.vm_id) if runner.vm_id else None)
            gone = ended.get(runner.name) or (ended_by_id.get(runner.vm_id) if runner.vm_id else None)
            check = partial(self._check_runner, runner, vm, github_runners, now, gone)
            isolated(report, "runner check", check, runner_name=runner.name)
        report.update(WarmPools(self.backend, self.store).upkeep(now, vms))
        # read after the listing, warm records first: a warm VM a job took meanwhile (its warm record
        # deleted once its runner holds it) is found under its runner, and a warm VM's age says
        # nothing about when a job took it
        warm = {r.key for state in WARM_STATES for r in self.backend.query_all(RecordQuery(WARM, state, limit=500))}
        tracked = {r.name for r in runners} | warm
        still_in_flight = list(in_flight(self.backend))
        runner_vms = {r.vm_id for r in still_in_flight if r.vm_id}
        for vm in vms.values():
            if vm.runner_name in tracked or vm.vm_id in runner_vms:
                continue
            if now - vm.created_at > self.settings.ghost_grace_s:
                isolated(report, "orphan removal", partial(self._remove_orphan, vm), vm_id=vm.vm_id)
        # a runner this pass ended is a ghost now if its registration is left (a claim whose worker
        # died between minting and writing the registration's id down)
        registered = {r.name for r in still_in_flight} | warm
        report["ghost-runners"] += self._reap_ghosts(github_runners, set(vm_by_runner), registered)
        self._requeue_stuck(now, report)
        report["purged"] += self.backend.purge_expired(now)
        if repaired := self.backend.repair_runner_counts():
            report["counts-repaired"] += repaired
        report.pop("ok", None)
        if report["errors"]:
            raise PassIncomplete("scaledown", dict(report))
        return dict(report)

    def _github_runners(self, runners: list[RunnerView], report: Counter[str]) -> dict[Scope, list[GitHubRunner]]:
        """GitHub's runners for every scope with work in flight or recent activity (a ghost may be
        all that is left in a scope); a failing tenant is skipped, not fatal."""
        listed: dict[Scope, list[GitHubRunner]] = {}
        scopes = {scope for r in runners if (scope := scope_of(r))} | self._active_scopes()
        for scope in {s for s in scopes if s.installation_id is not None}:
            try:
                listed[scope] = list(self.github.list_runners(scope))
            except GitHubError as exc:
                log.warning("could not list runners", extra={"scope": scope.full_name, "reason": str(exc)})
                report["github-errors"] += 1
        return listed

    def _active_scopes(self) -> set[Scope]:
        """Where runners of recently active repositories register: the repository, or its owner."""
        org_pools = any(pool.org_scope for pool in self.settings.pools)
        repo_pools = any(not pool.org_scope for pool in self.settings.pools)
        scopes: set[Scope] = set()
        for repo in self.backend.query_all(RecordQuery(REPO, "active", limit=500)):
            owner, _, name = repo.key.partition("/")
            owner = str(repo.data.get("owner") or owner)
            installation = repo.data.get("installation_id")
            if repo_pools:
                scopes.add(Scope(installation, owner, name))
            if org_pools:
                scopes.add(Scope(installation, owner, None))
        return scopes

    def _check_runner(
        self,
        runner: RunnerView,
        vm: VMInfo | None,
        github: dict[Scope, list[GitHubRunner]],
        now: float,
        ended: VMInfo | None = None,
    ) -> str:
        if vm is not None and runner.vm_id is None:
            runner = self._note_vm(runner, vm)
        launched_at = float(runner.get("launched_at") or runner.record.created_at)
        pool = next((p for p in self.settings.pools if p.name == runner.record.pool), None)
        lifetime = pool.max_lifetime_s if pool else 8 * 3600
        seen = {r.name: r for r in github.get(runner.scope, [])} if runner.scope in github else None
        on_github = seen.get(runner.name) if seen is not None else None
        if now - self._lifetime_start(runner, vm, pool, launched_at) > lifetime:
            retire(self.store, self.github, runner, reason="maximum-lifetime", force=True)
            return "lifetime-exceeded"
        if runner.state == RunnerState.CLAIMED:
            if now - runner.claimed_at < self.settings.claim_timeout_s:
                return "ok"  # its worker may still be launching
            if runner.vm_id is not None:
                if vm is not None:
                    # launched, its launch not recorded yet: its worker or a redelivered message
                    # records it; if neither does, a broker pool's VM gives up waiting and ends
                    return "ok"
                # its VM was launched and has ended, and nothing recorded the launch: nothing will
                if not retire(self.store, self.github, runner, reason="claim-abandoned"):
                    return "ok"
            elif not self.backend.delete("runner", runner.name, expected_version=runner.record.version):
                return "ok"  # a redelivered message took the claim over in between
            else:
                self._deregister(runner)
            self._requeue_job(runner, "claim-abandoned")
            return "abandoned-claims"
        if on_github is not None and on_github.busy:
            return "ok"
        if vm is None and now - launched_at > self.settings.ghost_grace_s:
            if (exited := self.exits.check(runner, ended)) is not None:
                return exited
            if retire(self.store, self.github, runner, reason="vm-gone", force=seen is None):
                self._requeue_job(runner, "vm-gone")
                return "vm-gone"
            return "ok"
        never_online = on_github is None or not on_github.online
        booted_late = seen is not None and never_online and now - launched_at > self.settings.boot_timeout_s
        if booted_late and retire(self.store, self.github, runner, reason="never-came-online"):
            self._requeue_job(runner, "never-came-online")
            return "boot-timeouts"
        if runner.state == RunnerState.LAUNCHED and now - launched_at > self.settings.ghost_grace_s:
            job = self.store.job(runner.job_id)
            superseded = job is None or job.state != JobState.QUEUED or job.launched_runner not in (runner.name, None)
            if superseded and retire(self.store, self.github, runner, reason="surplus"):
                return "surplus"
        return "ok"

    def _lifetime_start(self, runner: RunnerView, vm: VMInfo | None, pool: Pool | None, launched_at: float) -> float:
        """When the runner's lifetime began: its launch; on a warm VM, its assignment (the job's
        watchdog on the VM starts at the handoff just after), yet no later than the VM's warm
        deadline, so that no warm VM outlives its boot plus the warm deadline plus a job."""
        if runner.get("warm_vm") is None or vm is None or pool is None:
            return launched_at
        return min(launched_at, vm.created_at + self.settings.warm_deadline_s(pool))

    def _deregister(self, runner: RunnerView) -> None:
        """Remove the registration a dead worker minted before it could launch."""
        if runner.github_runner_id is None or runner.scope.installation_id is None:
            return
        try:
            self.github.delete_runner(runner.scope, runner.github_runner_id)
        except GitHubError as exc:
            log.warning(
                "could not deregister an abandoned claim", extra={"runner_name": runner.name, "reason": str(exc)}
            )

    def _note_vm(self, runner: RunnerView, vm: VMInfo) -> RunnerView:
        """Record the VM of a runner whose launch was never written down (its worker died after
        launching, or its runner took a job first), so that retiring it terminates the VM."""

        def note(record: Record) -> dict[str, object] | None:
            if record.data.get("vm_id") is not None:
                return None
            return {
                "vm_id": vm.vm_id,
                "provider": vm.provider,
                "launched_at": record.data.get("launched_at") or vm.created_at,
            }

        written = self.store.update(RUNNER, runner.name, note)
        return RunnerView(written) if written is not None else runner

    def _requeue_job(self, runner: RunnerView, reason: str) -> None:
        job = self.store.job(runner.job_id)
        if job is not None and job.state == JobState.QUEUED and job.launched_runner in (runner.name, None):
            requeue(self.store, job, reason)

    def _reap_ghosts(self, github: dict[Scope, list[GitHubRunner]], with_vm: set[str], tracked: set[str]) -> int:
        reaped = 0
        for scope, runners in github.items():
            for ghost in runners:
                if not ghost.name.startswith(RUNNER_PREFIX) or ghost.name in with_vm or ghost.busy:
                    continue
                if ghost.name in tracked or ghost.online:
                    continue
                current = self.store.runner(ghost.name)
                if current is not None and current.state in IN_FLIGHT_RUNNER_STATES:
                    continue  # claimed after this pass listed the runners in flight
                try:
                    self.github.delete_runner(scope, ghost.id)
                    reaped += 1
                    log.info("ghost runner deregistered", extra={"runner_name": ghost.name})
                    self.backend.metrics.record("ghosts_removed")
                except GitHubError as exc:
                    log.warning("could not deregister ghost", extra={"runner_name": ghost.name, "reason": str(exc)})
        return reaped

    def _remove_orphan(self, vm: VMInfo) -> str:
        self.backend.terminate_vm(vm.vm_id)
        log.info("orphan vm terminated", extra={"vm_id": vm.vm_id, "runner_name": vm.runner_name})
        self.backend.metrics.record("orphans_removed", pool=vm.pool)
        return "orphan-vms"

    def _requeue_stuck(self, now: float, report: Counter[str]) -> None:
        cutoff = now - self.settings.stuck_after_s
        for record in self.backend.query_all(RecordQuery(JOB, JobState.QUEUED, updated_before=cutoff, limit=500)):
            job = JobView(record)
            isolated(report, "stuck job requeue", partial(self._requeue_if_stuck, job, now), job_id=job.job_id)

    def _requeue_if_stuck(self, job: JobView, now: float) -> str | None:
        runner = self.store.runner(job.launched_runner) if job.launched_runner else None
        if runner is not None and runner.is_live(now, self.settings.claim_timeout_s):
            return None
        return "stuck-jobs" if requeue(self.store, job, "stuck-without-runner") else None
