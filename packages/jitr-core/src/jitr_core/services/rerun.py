"""Re-running a job GitHub failed because its spot VM was reclaimed, once per attempt.

GitHub fails the job of a runner that vanished; with the pool's ``rerun_on_interruption``,
jitr asks GitHub to re-run it (``POST .../actions/jobs/{id}/rerun``). GitHub gives a job a new
id per run attempt, so one job record is one attempt: a conditional write on it (``rerun``
absent or ``retry`` → ``requested``) admits one caller, and duplicated or late webhooks and
notices never re-run it twice. The re-run's jobs arrive as new queued webhooks with a higher
``run_attempt``; a ``rerun`` record keyed by the run id tells scaleup to launch them on-demand.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import (
    GitHubAuthError,
    GitHubConflictError,
    GitHubError,
    GitHubNotFoundError,
    GitHubRateLimitError,
    GitHubUnavailableError,
    RetryLaterError,
    SettingsError,
)
from ..github import GitHubAPI
from ..model import JobState, Record, Scope
from .records import JOB, JobView, Store, step, with_steps

log = logging.getLogger("jitr.rerun")

RERUN = "rerun"  # record kind: a run whose later attempts launch on-demand
_RETRY_S = 30


def rerun_if_interrupted(store: Store, github: GitHubAPI, job_id: int) -> str:
    """Re-run the job when it failed after its runner was interrupted and its pool opted in.

    Returns what happened; raises :class:`RetryLaterError` when GitHub may accept it later
    (rate limit, 5xx), after releasing the claim so the retried message can take it again.
    """
    job = store.job(job_id)
    if job is None or job.state != JobState.COMPLETED or not job.get("interrupted"):
        return "no-rerun"
    if job.get("conclusion") != "failure":
        return "no-rerun-not-failed"
    try:
        pool = store.backend.settings.pool(job.record.pool)
    except SettingsError:
        return "no-rerun-unknown-pool"
    if not pool.rerun_on_interruption:
        return "no-rerun-not-opted-in"
    if not _claim(store, job_id):
        return "rerun-already-requested"
    _prefer_on_demand(store, job)
    owner, _, repo = str(job.get("repository", "")).partition("/")
    scope = Scope(job.get("installation_id"), owner, repo)
    try:
        github.rerun_job(scope, job_id)
    except (GitHubRateLimitError, GitHubUnavailableError) as exc:
        _settle(store, job_id, "retry", reason=_reason(exc))
        raise RetryLaterError(f"GitHub did not take the re-run of job {job_id} now: {exc}", delay_s=_RETRY_S) from None
    except GitHubError as exc:
        if exc.status is None or exc.status >= 500:
            _settle(store, job_id, "retry", reason=_reason(exc))
            raise RetryLaterError(f"GitHub could not re-run job {job_id} now: {exc}", delay_s=_RETRY_S) from None
        reason = _reason(exc)
        _settle(store, job_id, "failed", reason=reason)
        log.warning("job not re-run", extra={"job_id": job_id, "pool": pool.name, "reason": reason})
        return "rerun-refused"
    _settle(store, job_id, "done")
    store.backend.metrics.record("job_reruns", pool=pool.name)
    log.info("interrupted job re-run", extra={"job_id": job_id, "pool": pool.name})
    return "rerun"


def prefers_on_demand(store: Store, job: JobView, run_id: int, run_attempt: int) -> bool:
    """Whether to skip spot: the job's runner was interrupted, or its run attempt re-runs an interrupted job."""
    if job.get("prefer_on_demand"):
        return True
    if run_attempt <= 1:
        return False
    marker = store.backend.load(RERUN, str(run_id))
    return marker is not None and int(marker.data.get("after_attempt", run_attempt)) < run_attempt


def _claim(store: Store, job_id: int) -> bool:
    """The conditional write that admits one caller per job record (per attempt)."""
    won: list[bool] = [False]

    def claim(record: Record) -> dict[str, Any] | None:
        won[0] = record.data.get("rerun") in (None, "retry")
        if not won[0]:
            return None
        requested = step("rerun", store.clock(), outcome="requested")
        return {"rerun": "requested", **with_steps(record.data, requested)}

    store.update(JOB, str(job_id), claim)
    return won[0]


def _settle(store: Store, job_id: int, outcome: str, reason: str | None = None) -> None:
    def settle(record: Record) -> dict[str, Any] | None:
        if record.data.get("rerun") != "requested":
            return None
        entry = step("rerun", store.clock(), outcome=outcome, reason=reason)
        return {"rerun": outcome, "rerun_reason": reason, **with_steps(record.data, entry)}

    store.update(JOB, str(job_id), settle)


def _prefer_on_demand(store: Store, job: JobView) -> None:
    """Written before GitHub is asked, so the new attempt's queued webhook finds it."""
    run_id, attempt = str(job.get("run_id", 0)), int(job.get("run_attempt", 1))
    expires = store.clock() + store.backend.settings.finished_ttl_s
    if store.create(RERUN, run_id, "requested", data={"after_attempt": attempt}, expires_at=expires) is not None:
        return

    def lower(record: Record) -> dict[str, Any] | None:
        if int(record.data.get("after_attempt", attempt)) <= attempt:
            return None
        return {"after_attempt": attempt}

    store.update(RERUN, run_id, lower)


def _reason(exc: GitHubError) -> str:
    """Why GitHub refused, with what to do about it where that is known."""
    if isinstance(exc, GitHubAuthError):
        return f"forbidden ({exc.status}): the GitHub App needs the 'actions: write' permission"
    if isinstance(exc, GitHubConflictError):
        return f"conflict ({exc.status}): the job or its run is already running or re-run"
    if isinstance(exc, GitHubNotFoundError):
        return f"not found ({exc.status}): the job, its repository or the installation is gone"
    if isinstance(exc, GitHubRateLimitError):
        return "rate limited"
    return f"status {exc.status}: {str(exc)[:120]}"
