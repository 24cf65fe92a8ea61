"""Steps shared by several services: re-enqueueing or dead-lettering a job, retiring a runner, repo activity."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from ..backend import Backend
from ..errors import GitHubError, JitrError, RecordError
from ..github import GitHubAPI
from ..messages import JobMessage, encode
from ..model import IN_FLIGHT_RUNNER_STATES, JobState, Record, RecordQuery, RunnerState, Scope, runner_name_for
from .records import JOB, REPO, RUNNER, JobView, RunnerView, Store, step, with_steps

log = logging.getLogger("jitr.services")
REPO_ACTIVITY_S = 24 * 3600


def isolated(report: Counter[str], what: str, step: Callable[[], str | None], **ids: object) -> str | None:
    """The outcome of one item of a periodic pass, ``step()``, counted in ``report`` (None: nothing
    to count). A cloud, store or GitHub call that fails for this item alone is logged and counted
    as ``errors``, and None is returned: the pass goes on with the other items (one VM that cannot
    be deleted must not stop the reaping of the rest) and the next pass tries this one again."""
    try:
        outcome = step()
    except JitrError as exc:
        log.error("step failed; the next pass tries it again", extra={"step": what, **ids, "reason": str(exc)})
        report["errors"] += 1
        return None
    if outcome is not None:
        report[outcome] += 1
    return outcome


def job_fields(job: JobView) -> dict[str, Any]:
    """What every queue message says of a job, as its record holds it."""
    return {
        "job_id": job.job_id,
        "run_id": int(job.get("run_id", 0)),
        "repository": str(job.get("repository")),
        "owner": str(job.get("owner")),
        "installation_id": job.get("installation_id"),
        "labels": tuple(job.get("labels", ())),
        "run_attempt": int(job.get("run_attempt", 1)),
    }


def job_message(job: JobView, attempt: int, reason: str, received_at: float) -> JobMessage:
    return JobMessage(
        **job_fields(job),
        private=bool(job.get("private", False)),
        attempt=attempt,
        received_at=received_at,
        reason=reason,
    )


def requeue(store: Store, job: JobView, reason: str) -> bool:
    """Give a queued job a new launch attempt: bump ``attempt`` first, then enqueue.

    Bumping first makes the old attempt's messages stale, so a job never gets two runners
    from one decision; the claim on (job, attempt) makes repeated decisions harmless.
    """
    attempt = job.attempt + 1

    def bump(record: Record) -> dict[str, object] | None:
        view = JobView(record)
        if view.state != JobState.QUEUED or view.attempt >= attempt:
            return None
        requeued = step("requeued", store.clock(), reason=reason, attempt=attempt)
        return {"attempt": attempt, "launched_runner": None, **with_steps(record.data, requeued)}

    written = store.update(JOB, str(job.job_id), bump)
    if written is None or JobView(written).attempt != attempt or written.state != JobState.QUEUED:
        return False
    message = job_message(JobView(written), attempt, reason, store.clock())
    store.backend.enqueue("jobs", encode(message))
    log.info("job re-enqueued", extra={"job_id": job.job_id, "attempt": attempt, "reason": reason})
    return True


def dead_letter_job(store: Store, job: JobView, reason: str, message_reason: str) -> bool:
    """Stop launching for a queued job: mark it ``dead-lettered`` and put its message, with
    ``reason``, in the jobs queue's dead letters. False when the job had moved on (or another
    caller buried it first)."""
    now = store.clock()
    expires = now + store.backend.settings.finished_ttl_s
    moved: list[bool] = []

    def bury(record: Record) -> dict[str, object] | None:
        moved.clear()
        if record.state != JobState.QUEUED:
            return None
        moved.append(True)
        entry = step("dead-lettered", now, reason=reason)
        return {
            "state": JobState.DEAD_LETTERED,
            "expires_at": expires,
            "dead_letter_reason": entry["reason"],
            **with_steps(record.data, entry),
        }

    store.update(JOB, str(job.job_id), bury)
    if not moved:
        return False
    store.backend.dead_letter("jobs", encode(job_message(job, job.attempt, message_reason, now)), reason)
    log.error("job dead-lettered", extra={"job_id": job.job_id, "reason": reason})
    return True


def retire(
    store: Store, github: GitHubAPI, runner: RunnerView, reason: str, force: bool = False, **facts: object
) -> bool:
    """Remove a runner: deregister it from GitHub (refused while busy unless ``force``), delete its VM.

    Deregistering first means a runner that GitHub is handing a job right now is left alone.
    ``facts`` are written on its record with the retirement (what it did, learnt only now).
    """
    runner_id = runner.github_runner_id
    if runner_id is not None and not force:
        try:
            github.delete_runner(runner.scope, runner_id)
        except GitHubError as exc:
            log.warning("runner not deregistered; leaving it", extra={"runner_name": runner.name, "reason": str(exc)})
            return False
    if runner.vm_id:
        store.backend.terminate_vm(runner.vm_id)
    if runner_id is not None and force:
        try:
            github.delete_runner(runner.scope, runner_id)
        except GitHubError as exc:
            log.warning(
                "forced retirement could not deregister", extra={"runner_name": runner.name, "reason": str(exc)}
            )
    expires = store.clock() + store.backend.settings.finished_ttl_s

    left_flight: list[str] = []

    def mark(record: Record) -> dict[str, object] | None:
        left_flight.clear()
        if record.state in (RunnerState.FINISHED, RunnerState.RETIRED):
            return None
        left_flight.append(record.pool)
        return {"state": RunnerState.RETIRED, "expires_at": expires, "retired_reason": reason, **facts}

    store.update(RUNNER, runner.name, mark)
    log.info("runner retired", extra={"runner_name": runner.name, "reason": reason})
    if left_flight:
        store.backend.metrics.record("runners_retired", pool=left_flight[0], reason=reason)
        nudge_waiting(store, left_flight[0])
    return True


def retire_if_surplus(store: Store, github: GitHubAPI, name: str | None) -> bool:
    """Retire the runner launched for a job cancelled while queued, unless it moved on (took a job,
    ended, or was retired already); whether it was retired."""
    runner = store.runner(name) if name else None
    if runner is None or runner.state not in (RunnerState.CLAIMED, RunnerState.LAUNCHED):
        return False
    return retire(store, github, runner, reason="job-cancelled-while-queued")


def nudge_waiting(store: Store, pool: str, look_at: int = 20) -> int | None:
    """A runner of ``pool`` left flight: send the oldest job that may be waiting for a cap at once.

    A job over a cap waits for a message deferred by ``cap_wait_s``; the freed slot should not
    wait that long. The oldest queued job of the pool (then of any pool, for the global cap)
    with no runner for its attempt gets a message now. Its claim keeps it to one launch: the
    deferred message arrives later and finds the claim, or is deferred again while caps are full.
    Returns the nudged job id, if any; looks at no more than ``look_at`` queued jobs per pool.
    """
    for scope in (pool, None):
        page = store.backend.query(RecordQuery(JOB, JobState.QUEUED, pool=scope, limit=look_at))
        for record in page.records:
            job = JobView(record)
            if job.launched_runner is not None:
                continue
            if store.runner(runner_name_for(record.pool, job.job_id, job.attempt)) is not None:
                continue
            store.backend.enqueue("jobs", encode(job_message(job, job.attempt, "cap-freed", store.clock())))
            log.info("waiting job sent on", extra={"job_id": job.job_id, "attempt": job.attempt, "pool": record.pool})
            return job.job_id
    return None


def in_flight(backend: Backend, pool: str | None = None) -> Iterator[RunnerView]:
    """Every runner record in a state that holds (or will hold) a VM."""
    for state in IN_FLIGHT_RUNNER_STATES:
        for record in backend.query_all(RecordQuery(RUNNER, state, pool=pool, limit=500)):
            yield RunnerView(record)


def scope_of(runner: RunnerView) -> Scope | None:
    """The runner's scope, or None when its record is malformed (scale-down's check of it says so)."""
    try:
        return runner.scope
    except RecordError:
        return None


def touch_repo(store: Store, repository: str, owner: str, installation_id: int | None, private: bool) -> None:
    """Remember a repository as active, so the rebalancer asks GitHub about it (and only it)."""
    now = store.clock()
    existing = store.backend.load(REPO, repository)
    data: dict[str, Any] = {"owner": owner, "installation_id": installation_id, "private": private}
    if existing is None:
        store.create(REPO, repository, "active", data=data, expires_at=now + REPO_ACTIVITY_S)
    elif now - existing.updated_at > 300 or installation_id not in (None, existing.data.get("installation_id")):
        store.write(existing, expires_at=now + REPO_ACTIVITY_S, **data)
