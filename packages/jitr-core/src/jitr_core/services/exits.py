"""Runners that exit without taking a job: detected by scaledown, re-launched once, then dead-lettered.

A bad image, a broken network or a rejected JIT config makes a runner exit at once; its VM
deletes itself and, to the rest of scaledown, the runner is merely gone. This module tells such
an exit apart with facts every backend has, and no permission given to the runner:

- the runner never went busy (no ``in_progress`` named it: its record is still ``launched``)
  and its VM is gone, with no spot interruption notice on its record;
- the job's record still waits for this runner;
- GitHub, asked about this one job, still shows it not picked up by this runner;
- the startup script did not report that a job ran (``VMInfo.runner_exit``, where the provider
  can read it back after the VM ended): one that did took another job, whose webhooks are lost
  or late, and its own job is launched again as any vanished runner's.

Only such suspects cost a GitHub call (a runner that goes busy is never one), so the calls
follow failures and lost webhooks, not jobs. The first exit re-launches the job with a new
runner on the candidate after the one that failed in the pool's fallback chain; the second moves
the job to ``dead-lettered`` and puts its message in the jobs queue's dead letters with the
reason. Each exit is written on the job record under the runner's name first, so overlapping or
repeated scaledown passes count it once.

When GitHub shows the job picked up after all (by this runner or another) or cancelled, and its
webhooks are lost or still on their way, the job record catches up with GitHub instead: no exit
is counted and nothing is launched for the job. When one of jitr's runners took it, lifecycle is
handed the lost ``in_progress`` (or ``completed``), so that runner's own job gets another.
"""

from __future__ import annotations

import logging
from typing import Any

from ..backend import Backend
from ..errors import GitHubError, JitrError
from ..github import GitHubAPI, GitHubJob
from ..messages import LIFECYCLE_QUEUE, LifecycleMessage, encode
from ..model import JobState, Record, RunnerState, Scope, VMInfo
from .broker import WAITING
from .candidates import candidate_key
from .common import dead_letter_job, job_fields, requeue, retire
from .records import JOB, JobView, RunnerView, Store, job_can_move, step, with_steps

log = logging.getLogger("jitr.scaledown")

RELAUNCHES = 1  # no-job exits a job survives; the next one dead-letters it
_NOT_PICKED_UP = frozenset({"queued", "waiting", "pending", "requested"})  # GitHub job statuses


class NoJobExits:
    """The no-job-exit check of one scaledown pass."""

    def __init__(self, backend: Backend, github: GitHubAPI, store: Store) -> None:
        self.backend = backend
        self.github = github
        self.store = store

    def check(self, runner: RunnerView, ended: VMInfo | None) -> str | None:
        """Handle ``runner`` (its VM gone) if it exited without a job, or its job ran unseen; None
        leaves it to the usual path."""
        if runner.state != RunnerState.LAUNCHED:
            return None
        if runner.get("interrupted_at") is not None:
            return None  # a spot reclaim, not a runner failure: lifecycle re-launches it
        job = self.store.job(runner.job_id)
        if job is None or job.state != JobState.QUEUED or job.launched_runner not in (runner.name, None):
            return None
        seen = self._github_job(job, runner)
        if seen is None:
            return None
        if seen.runner_name == runner.name:
            return self._ran_unseen(job, runner, seen)
        if seen.status not in _NOT_PICKED_UP:
            return self._taken_unseen(job, runner, seen)
        if ended is not None and ended.runner_exit == "job":
            return None  # it ran another job, its webhooks lost or late: its own goes the usual way
        evidence = f"GitHub shows the job {seen.status}"
        reported = ended is not None and ended.runner_exit == "no-job"
        reason = "startup script reported no job" if reported else "VM gone without the runner going busy"
        if runner.get("handoff") == WAITING:  # the broker never answered it: no runner was ever registered
            reason = "VM gone without fetching its JIT config from the broker (unreachable from the VM, or refused it)"
        reason = f"{reason}; {evidence}"
        candidate = candidate_key(
            str(runner.get("machine_type") or "?"), runner.get("placement"), bool(runner.get("spot", False))
        )
        noted, exits = self._note(job, runner.name, candidate, reason)
        mine = next((e for e in exits if e.get("runner") == runner.name), None)
        if mine is None:
            return None  # the job moved on meanwhile: nothing to re-launch
        if noted:
            self.backend.metrics.record("runner_no_job_exits", pool=runner.record.pool)
            log.warning(
                "runner exited without taking a job",
                extra={"runner_name": runner.name, "job_id": job.job_id, "candidate": candidate, "reason": reason},
            )
        outcome = "no-job-exits" if noted else "ok"
        if not retire(self.store, self.github, runner, reason="no-job-exit"):
            return outcome  # GitHub refused the deregistration: the next pass sees the runner again
        fresh = self.store.job(job.job_id)
        # the attempt written with the exit: a pass that finds the job re-launched since does nothing
        if fresh is None or fresh.state != JobState.QUEUED or fresh.attempt != mine.get("attempt"):
            return outcome
        if len(exits) > RELAUNCHES:
            self._dead_letter(fresh, exits)
        else:
            requeue(self.store, fresh, "no-job-exit")
        return outcome

    def _github_job(self, job: JobView, runner: RunnerView) -> GitHubJob | None:
        """The job as GitHub has it (one call), or None when it cannot be asked."""
        owner, _, repo = str(job.get("repository") or "").partition("/")
        installation = job.get("installation_id") or runner.scope.installation_id
        if not repo or installation is None:
            return None
        try:
            return self.github.get_job(Scope(installation, owner, repo), job.job_id)
        except GitHubError as exc:
            log.warning("could not read the job of a lost runner", extra={"job_id": job.job_id, "reason": str(exc)})
            return None

    def _ran_unseen(self, job: JobView, runner: RunnerView, seen: GitHubJob) -> str:
        """The runner took its job but its webhooks were lost: not an exit to count, nor a job to
        launch again. The job record catches up with what GitHub says."""
        retire(
            self.store,
            self.github,
            runner,
            reason="job-ran-unseen",
            serving_job_id=job.job_id,
            conclusion=seen.conclusion,
        )
        self._catch_up(job, seen)
        return "ran-unseen"

    def _taken_unseen(self, job: JobView, runner: RunnerView, seen: GitHubJob) -> str:
        """Another runner took the job (or it was cancelled) and its webhooks are lost or late: this
        runner goes as any vanished one, the job record catches up and nothing is launched for it.

        When the runner that took it is one of jitr's still waiting, in the records, for the job it
        was launched for, lifecycle is handed the event the lost webhook carried: that job is given
        a runner again now (a runner swap), not once that runner's VM is gone too, when it would be
        counted as an exit without a job. This runner is retired first, so the swap cannot hand
        its (gone) VM to that job."""
        if not retire(self.store, self.github, runner, reason="vm-gone"):
            return "ok"  # GitHub refused the deregistration: the next pass sees the runner again
        self._catch_up(job, seen)
        taker = self.store.runner(seen.runner_name) if seen.runner_name else None
        if taker is not None and taker.state in (RunnerState.CLAIMED, RunnerState.LAUNCHED):
            self._replay(job, seen, taker)
        return "vm-gone"

    def _replay(self, job: JobView, seen: GitHubJob, taker: RunnerView) -> None:
        """Hand lifecycle the event of ``job`` the lost webhook carried. If that fails, no later pass
        tries again (this runner is retired): the taker's own job waits until the taker's VM ends,
        and is launched again then, as any vanished runner's."""
        ids = {"job_id": job.job_id, "runner_name": taker.name, "launched_for": taker.job_id}
        try:
            self.backend.enqueue(LIFECYCLE_QUEUE, encode(self._event(job, seen)))
        except JitrError as exc:
            log.warning("lost webhook not replayed", extra={**ids, "reason": str(exc)})
            return
        log.info("lost webhook replayed", extra=ids)

    def _event(self, job: JobView, seen: GitHubJob) -> LifecycleMessage:
        """The lifecycle event GitHub's webhook carried for the job as ``seen``."""
        completed = seen.status == "completed"
        return LifecycleMessage(
            **job_fields(job),
            action="completed" if completed else "in_progress",
            runner_name=seen.runner_name,
            runner_id=seen.runner_id,
            conclusion=seen.conclusion if completed else None,
            received_at=self.store.clock(),
        )

    def _catch_up(self, job: JobView, seen: GitHubJob) -> None:
        """Move the job record to where GitHub has the job (picked up: running, completed, or
        cancelled when it completed with no runner), as its lost webhooks would have."""
        if seen.status != "completed":
            state, event = JobState.RUNNING, "in_progress"
        elif seen.runner_name:
            state, event = JobState.COMPLETED, "completed"
        else:
            state, event = JobState.CANCELLED, "cancelled"
        now = self.store.clock()
        expires = now + self.backend.settings.finished_ttl_s if state != JobState.RUNNING else None
        entry = step(event, now, runner=seen.runner_name, conclusion=seen.conclusion, via="github")

        def catch_up(record: Record) -> dict[str, object] | None:
            if not job_can_move(record.state, state):
                return None
            return {
                "state": state,
                "expires_at": expires,
                "runner_name": seen.runner_name,
                "conclusion": seen.conclusion,
                **with_steps(record.data, entry),
            }

        self.store.update(JOB, str(job.job_id), catch_up)

    def _note(self, job: JobView, name: str, candidate: str, reason: str) -> tuple[bool, list[dict[str, Any]]]:
        """Write the exit on the job record once; (whether this call wrote it, every exit so far)."""
        wrote: list[bool] = []
        now = self.store.clock()

        def note(record: Record) -> dict[str, object] | None:
            wrote.clear()
            exits = [dict(e) for e in record.data.get("no_job_exits") or []]
            if record.state != JobState.QUEUED or any(e.get("runner") == name for e in exits):
                return None
            wrote.append(True)
            entry = step("no-job-exit", now, runner=name, candidate=candidate, reason=reason)
            attempt = JobView(record).attempt
            exits.append({"runner": name, "candidate": candidate, "attempt": attempt, "reason": entry["reason"]})
            return {"no_job_exits": exits, "relaunch_after": candidate, **with_steps(record.data, entry)}

        written = self.store.update(JOB, str(job.job_id), note)
        exits = [dict(e) for e in (written.data.get("no_job_exits") or [])] if written is not None else []
        return bool(wrote), exits

    def _dead_letter(self, job: JobView, exits: list[dict[str, Any]]) -> None:
        """Stop launching for the job and leave its message, with the reason, in the dead letters."""
        tried = ", ".join(f"{e.get('runner')} on {e.get('candidate')}" for e in exits)
        reason = f"runners exited {len(exits)} times without taking the job ({tried}): {exits[-1].get('reason')}"
        dead_letter_job(self.store, job, reason, "no-job-exit")
