"""The lifecycle function: apply ``in_progress`` and ``completed`` to job and runner records.

Keyed by runner name, tolerant of duplicates and of ``completed`` arriving before
``in_progress`` (states only move forward). Because GitHub gives a job to any idle runner with
matching labels, the runner that takes a job may have been launched for another one; then the
two jobs swap runners in the records (on whichever of the two events comes first), and the job
left without one gets a new launch.

Spot interruption notices arrive on the same queue (see :mod:`jitr_core.interruption`): the
runner is marked, a runner not yet serving its job is replaced (on-demand), and a job GitHub
fails after its runner was interrupted is re-run when its pool opts in (:mod:`.rerun`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..backend import Backend
from ..errors import PayloadError
from ..github import GitHubAPI
from ..interruption import Interruption, interruption_in
from ..logs import log_context
from ..messages import LifecycleMessage, decode
from ..model import JobState, Record, RunnerState, runner_name_for
from ..routing import Router
from .common import in_flight, nudge_waiting, requeue, retire, retire_if_surplus
from .records import (
    JOB,
    RUNNER,
    JobView,
    RunnerView,
    Store,
    job_can_move,
    new_job_data,
    runner_can_move,
    step,
    with_steps,
)
from .rerun import rerun_if_interrupted
from .warm import is_warm_name

log = logging.getLogger("jitr.lifecycle")
MAX_SWAP_CHAIN = 16  # runners followed from a taken job to the idle one its taking left over


class LifecycleService:
    """Handles lifecycle-queue messages."""

    def __init__(self, backend: Backend, github: GitHubAPI, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.github = github
        self.store = Store(backend, clock)
        self.clock = clock
        self.router = Router(backend.settings)

    def handle(self, body: str | bytes) -> str:
        interruption = interruption_in(body)
        if interruption is not None:
            return self._notice(interruption)
        message = decode(body)
        if not isinstance(message, LifecycleMessage):
            raise PayloadError("the lifecycle queue takes lifecycle messages, found a job message")
        with log_context(
            job_id=message.job_id,
            delivery_id=message.delivery_id or None,
            runner_name=message.runner_name,
            action=message.action,
        ):
            outcome = self._apply(message)
            log.info("lifecycle", extra={"outcome": outcome})
            return outcome

    def _apply(self, message: LifecycleMessage) -> str:
        if message.action == "in_progress":
            return self._started(message)
        if message.action == "completed":
            if not message.runner_name:
                return self._cancelled(message)
            return self._finished(message)
        raise PayloadError(f"lifecycle action must be in_progress or completed, found {message.action!r}")

    def _job_record(self, message: LifecycleMessage) -> JobView | None:
        """The job's record, created when jitr never saw it queued (a lost webhook) and it is ours."""
        view = self.store.job(message.job_id)
        if view is not None:
            return view
        admission = self.router.admit_parts(message.repository, message.owner, message.labels, True)
        if admission.pool is None:
            return None
        data = new_job_data(message, private=True, attempt=1)
        self.store.create(JOB, str(message.job_id), JobState.QUEUED, pool=admission.pool.name, data=data)
        return self.store.job(message.job_id)

    def _move_job(self, job_id: int, state: JobState, event: dict[str, object], **data: object) -> Record | None:
        """Move the job forward; the same write appends ``event`` to its timeline."""
        expires = (
            self.clock() + self.settings.finished_ttl_s if state in (JobState.COMPLETED, JobState.CANCELLED) else None
        )

        def move(record: Record) -> dict[str, object] | None:
            if not job_can_move(record.state, state):
                return None
            return {"state": state, "expires_at": expires, **data, **with_steps(record.data, event)}

        return self.store.update(JOB, str(job_id), move)

    def _move_runner(self, name: str, state: RunnerState, **data: object) -> Record | None:
        expires = self.clock() + self.settings.finished_ttl_s if state == RunnerState.FINISHED else None

        def move(record: Record) -> dict[str, object] | None:
            if not runner_can_move(record.state, state):
                return None
            return {"state": state, "expires_at": expires, **data}

        return self.store.update(RUNNER, name, move)

    def _started(self, message: LifecycleMessage) -> str:
        job = self._job_record(message)
        name = message.runner_name or ""
        runner = self.store.runner(name) if name else None
        if job is not None:
            now = self.clock()
            # a runner can come online before its launch is recorded: its boot then counts from the claim
            launched_at = (runner.get("launched_at") or runner.get("claimed_at")) if runner is not None else None
            event = step(
                "in_progress",
                now,
                runner=name or None,
                launched_for=runner.job_id if runner is not None else None,
                boot_s=round(max(0.0, now - float(launched_at)), 3) if launched_at else None,
            )
            moved_job = self._move_job(job.job_id, JobState.RUNNING, event, runner_name=name, started_at=now)
            if runner is not None and moved_job is not None and moved_job.data.get("started_at") == now:
                self._time_start(moved_job, now, launched_at)
        if runner is None:
            return "not-our-runner"
        moved = self._move_runner(
            name,
            RunnerState.BUSY,
            serving_job_id=message.job_id,
            github_runner_id=message.runner_id or runner.github_runner_id,
            busy_at=self.clock(),
        )
        if runner.job_id != message.job_id and moved is not None and moved.state == RunnerState.BUSY:
            self._swap(runner, message.job_id)
            return "took-another-jobs-runner"
        return "busy"

    def _time_start(self, job: Record, now: float, launched_at: object) -> None:
        """Queue time (queued → in_progress) and boot time (launched → in_progress) of a job jitr ran."""
        queued_at = job.data.get("queued_at")
        if isinstance(queued_at, (int, float)):
            self.backend.metrics.record("queue_time_seconds", max(0.0, now - queued_at), pool=job.pool)
        if isinstance(launched_at, (int, float)):
            self.backend.metrics.record("boot_time_seconds", max(0.0, now - launched_at), pool=job.pool)

    def _swap(self, runner: RunnerView, taken_job_id: int) -> None:
        """``runner`` was launched for job A but took job B: give A the runner launched for B, if idle.

        Once: a repeated event finds A no longer waiting for ``runner`` (given another, or launched
        again), and the swap done."""
        job_a = self.store.job(runner.job_id)
        if job_a is None or job_a.state != JobState.QUEUED or not _waits_for(job_a, runner):
            return
        spare = self._spare(self.store.job(taken_job_id))
        # a claim whose worker died launches nothing: adopt it only while it may still be alive
        live = spare is not None and spare.is_live(self.clock(), self.settings.claim_timeout_s)
        if spare is not None and live and self._fits(spare, job_a):

            def adopt(record: Record) -> dict[str, object] | None:
                if record.state != JobState.QUEUED:
                    return None
                adopted = step("adopted", self.clock(), runner=spare.name, reason="runner-taken-by-another-job")
                return {"launched_runner": spare.name, **with_steps(record.data, adopted)}

            written = self.store.update(JOB, str(job_a.job_id), adopt)
            if written is not None and written.data.get("launched_runner") == spare.name:
                self.store.update(RUNNER, spare.name, lambda record: _rebind(record, job_a.job_id))
                log.info("jobs swapped runners", extra={"runner_name": runner.name, "spare": spare.name})
            return
        requeue(self.store, job_a, reason="runner-taken-by-another-job")

    def _spare(self, job_b: JobView | None) -> RunnerView | None:
        """The idle runner that job B's taking leaves over: B's own, or, where B's runner took job C
        already (busy or even done with it: B's runner took C before B's swap could hand it C's),
        C's runner, and so on along the chain; None when the chain ends in no idle runner."""
        seen: set[str] = set()
        while job_b is not None and len(seen) < MAX_SWAP_CHAIN:
            # B's runner may still be launching (claimed, not yet linked to B): find it by its name
            name = job_b.launched_runner or runner_name_for(job_b.record.pool, job_b.job_id, job_b.attempt)
            spare = self.store.runner(name) if name not in seen else None
            if spare is None:
                return None
            if spare.state in (RunnerState.CLAIMED, RunnerState.LAUNCHED):
                return spare
            serving = spare.get("serving_job_id")
            served = spare.state in (RunnerState.BUSY, RunnerState.FINISHED)
            if not served or serving is None or int(serving) == job_b.job_id:
                return None
            seen.add(name)
            job_b = self.store.job(int(serving))
        return None

    def _fits(self, spare: RunnerView, job: JobView) -> bool:
        """Whether GitHub can give ``job`` to ``spare``: its pool's and sizing labels hold all of the job's.

        A runner registered with a sizing label (``c6i.4xlarge``) may take a job of its pool that
        asked for none; the runner launched for that job lacks the label and never gets the sized one.
        """
        pool = next((p for p in self.settings.pools if p.name == spare.record.pool), None)
        if pool is None:
            return False
        registered = pool.labels | {str(label) for label in spare.get("sizing_labels") or ()}
        return {str(label).lower() for label in job.get("labels") or ()} <= registered

    def _finished(self, message: LifecycleMessage) -> str:
        name = message.runner_name or ""
        self._job_record(message)
        now = self.clock()
        event = step("completed", now, runner=name or None, conclusion=message.conclusion)
        job = self._move_job(
            message.job_id, JobState.COMPLETED, event, conclusion=message.conclusion, runner_name=name, completed_at=now
        )
        if job is not None and job.data.get("completed_at") == now:  # moved by this message, counted once
            self.backend.metrics.record("jobs_completed", pool=job.pool, conclusion=message.conclusion or "unknown")
        runner = self.store.runner(name)
        if runner is None:
            return "not-our-runner"
        moved = self._move_runner(
            name, RunnerState.FINISHED, serving_job_id=message.job_id, conclusion=message.conclusion
        )
        if runner_can_move(runner.state, RunnerState.FINISHED) and moved is not None:
            nudge_waiting(self.store, moved.pool)  # its slot is free: a job waiting for the cap need not wait
            if runner.state != RunnerState.BUSY and runner.job_id != message.job_id:
                self._swap(runner, message.job_id)  # its in_progress is late or lost: swap here instead
        if runner.get("interrupted_at") is not None and message.conclusion == "failure":
            self._mark_job(message.job_id, runner, None)
            return rerun_if_interrupted(self.store, self.github, message.job_id)
        return "finished"

    def _cancelled(self, message: LifecycleMessage) -> str:
        """Completed with no runner: cancelled while queued. Its launched runner is surplus.

        The job is read after it is moved: a launch linked to it before the move is found here,
        and one linking after the move finds the job cancelled and retires its runner (scaleup).
        A job jitr has no record of yet is recorded, then cancelled: its ``queued`` message, on
        the other queue, may come later, and then finds the job finished."""
        self._job_record(message)
        conclusion = message.conclusion or "cancelled"
        event = step("cancelled", self.clock(), conclusion=conclusion)
        self._move_job(message.job_id, JobState.CANCELLED, event, conclusion=conclusion)
        job = self.store.job(message.job_id)
        if job is None or not retire_if_surplus(self.store, self.github, job.launched_runner):
            return "cancelled"
        return "cancelled-runner-retired"

    def _notice(self, notice: Interruption) -> str:
        with log_context(vm_id=notice.vm_id, runner_name=notice.runner_name, action=f"spot-{notice.kind}"):
            outcome = self._interrupted(notice)
            log.info("lifecycle", extra={"outcome": outcome, "source": notice.source, "event_id": notice.event_id})
            return outcome

    def _interrupted(self, notice: Interruption) -> str:
        """Mark the runner first, then read its job: a ``completed`` racing this notice reads the runner
        after moving the job, so one of the two sees the other and the job is never left un-re-run."""
        runner = self._runner_of(notice)
        if runner is None:
            return "not-our-vm"
        if notice.kind == "rebalance":
            self._note_job(
                runner.get("serving_job_id") or runner.job_id, step("rebalance-recommended", notice.notice_at)
            )
            return "rebalance-noted"
        first: list[bool] = [False]

        def mark(record: Record) -> dict[str, object] | None:
            first[0] = record.data.get("interrupted_at") is None
            if not first[0]:
                return None
            return {"interrupted_at": notice.notice_at, "interruption": f"{notice.source}:{notice.kind}"}

        marked = self.store.update(RUNNER, runner.name, mark)
        if marked is None:
            return "not-our-vm"
        runner = RunnerView(marked)
        if first[0]:
            log.warning("spot vm interrupted", extra={"pool": runner.record.pool, "state": runner.state})
            self.backend.metrics.record("spot_interruptions", pool=runner.record.pool)
        if runner.state in (RunnerState.CLAIMED, RunnerState.LAUNCHED):
            return self._replace(runner)
        if runner.state == RunnerState.RETIRED:
            return "runner-retired"
        job_id = int(runner.get("serving_job_id") or runner.job_id)
        self._mark_job(job_id, runner, notice)
        outcome = rerun_if_interrupted(self.store, self.github, job_id)
        return outcome if outcome != "no-rerun" else ("interrupted" if first[0] else "duplicate-notice")

    def _runner_of(self, notice: Interruption) -> RunnerView | None:
        """The runner a notice is about: by name when it carries one, else by VM id (records, then the cloud)."""
        if notice.runner_name:
            runner = self.store.runner(notice.runner_name)
            if runner is None and is_warm_name(notice.runner_name):  # a warm VM keeps its name under its runner
                runner = next((r for r in in_flight(self.backend) if r.get("warm_vm") == notice.runner_name), None)
            # a GCE notice's id is the numeric instance id, jitr's is zone/name: the name suffices; a VM
            # not recorded yet (launched, its id not written) is the named runner's
            known = runner.vm_id if runner is not None and notice.source != "gcp" else None
            if runner is None or (None not in (known, notice.vm_id) and known != notice.vm_id):
                return None
            return runner
        for runner in in_flight(self.backend):
            if runner.vm_id == notice.vm_id:
                return runner
        name = next((vm.runner_name for vm in self.backend.list_vms() if vm.vm_id == notice.vm_id), None)
        return self.store.runner(name) if name else None

    def _replace(self, runner: RunnerView) -> str:
        """A runner reclaimed before it took its job: retire it and launch the job again, on-demand.

        Retiring deregisters it first; GitHub refuses while it holds a job, and then the job's
        ``completed`` (a failure) brings the re-run instead.
        """
        if not retire(self.store, self.github, runner, reason="spot-interrupted"):
            return "interrupted-runner-busy"
        job = self.store.job(runner.job_id)
        if job is None or job.state != JobState.QUEUED:
            return "interrupted-runner-retired"
        if runner.name not in (job.launched_runner, runner_name_for(job.record.pool, job.job_id, job.attempt)):
            return "interrupted-runner-retired"  # the job already has another runner on its way
        entry = step("interrupted", self.clock(), runner=runner.name, reason="spot-interrupted-before-start")
        self.store.update(
            JOB, str(job.job_id), lambda record: {"prefer_on_demand": True, **with_steps(record.data, entry)}
        )
        requeue(self.store, job, reason="spot-interrupted")
        return "interrupted-job-requeued"

    def _mark_job(self, job_id: int, runner: RunnerView, notice: Interruption | None) -> None:
        """Record on the job that its runner was interrupted (once), which makes a failure re-runnable."""
        at = notice.notice_at if notice is not None else float(runner.get("interrupted_at") or self.clock())
        entry = step("interrupted", at, runner=runner.name, notice=runner.get("interruption"))

        def mark(record: Record) -> dict[str, object] | None:
            if record.data.get("interrupted"):
                return None
            return {"interrupted": True, "interrupted_runner": runner.name, **with_steps(record.data, entry)}

        self.store.update(JOB, str(job_id), mark)

    def _note_job(self, job_id: int, entry: dict[str, object]) -> None:
        self.store.update(JOB, str(job_id), lambda record: with_steps(record.data, entry))


def _rebind(record: Record, job_id: int) -> dict[str, object] | None:
    """Point a not-yet-busy runner at the job it now stands in for."""
    if record.state not in (RunnerState.CLAIMED, RunnerState.LAUNCHED) or record.data.get("job_id") == job_id:
        return None
    return {"job_id": job_id}


def _waits_for(job: JobView, runner: RunnerView) -> bool:
    """Whether ``job`` still counts on ``runner``: linked to it, or not linked yet and ``runner`` is
    the one its current attempt launches."""
    if job.launched_runner is not None:
        return job.launched_runner == runner.name
    return runner.name == runner_name_for(runner.record.pool, job.job_id, job.attempt)
