"""The rebalancer function (every minute): close the gap between GitHub's queue and jitr's runners.

For every repository with recent activity it asks GitHub for queued jobs (conditional requests,
so an unchanged queue costs no rate limit), routes them to pools, and compares per pool and registration
scope (a runner serves only its repository's, or its organisation's, jobs) with the runners in
flight that are not yet busy. For each missing runner it enqueues a job:
first jobs jitr never heard of (a lost webhook), then jobs whose runner is gone. A job the queue
refuses is left to the next pass, and this one, once the rest is done, ends raising
:class:`~jitr_core.errors.PassIncomplete`. It also asks GitHub to redeliver webhook deliveries
that failed since its last look, at most every ``redelivery_interval_s``: each look pages through
every delivery since the one before, which in a burst is most of the App's log, however often the
rebalancer runs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

from ..backend import Backend
from ..errors import GitHubError, PassIncomplete
from ..github import GitHubAPI, QueuedJob
from ..messages import JobMessage, encode
from ..model import JobState, RecordQuery, RunnerState, Scope
from ..routing import Router
from .common import in_flight, isolated, requeue, scope_of
from .lease import lease
from .records import REPO, JobView, Store

log = logging.getLogger("jitr.rebalancer")
CURSOR = "rebalancer-cursor"
LATE_DELIVERY_S = 60  # a delivery appears in GitHub's log this long after its time, at most
Registration = tuple[str, str, str | None]  # pool, owner, repository (None for an organisation pool)


def _registration(pool: str, owner: str, repository: str | None) -> Registration:
    return pool, owner.lower(), repository.lower() if repository else None


class RebalancerService:
    """One rebalancer pass; overlapping runs are serialised by a lease."""

    def __init__(self, backend: Backend, github: GitHubAPI, clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.github = github
        self.store = Store(backend, clock)
        self.clock = clock
        self.router = Router(backend.settings)
        self.grace_s = backend.settings.rebalance_grace_s

    def run(self) -> dict[str, Any]:
        with lease(self.store, "rebalancer", ttl_s=55) as held:
            if not held:
                return {"skipped": "another rebalancer run holds the lease"}
            return self._run()

    def _run(self) -> dict[str, Any]:
        now = self.clock()
        report: Counter[str] = Counter()
        queued: dict[Registration, list[tuple[QueuedJob, dict[str, Any]]]] = defaultdict(list)
        for repo in self.backend.query_all(RecordQuery(REPO, "active", limit=500)):
            owner = str(repo.data.get("owner") or repo.key.split("/")[0])
            scope = Scope(repo.data.get("installation_id"), owner, repo.key.split("/", 1)[1])
            try:
                jobs = self.github.queued_jobs(scope, created_before=now - self.grace_s)
            except GitHubError as exc:
                log.warning("could not read queued jobs", extra={"repository": repo.key, "reason": str(exc)})
                report["github-errors"] += 1
                continue
            for job in jobs:
                admission = self.router.admit_parts(job.repository, owner, job.labels, bool(repo.data.get("private")))
                if admission.pool is not None:
                    repository = None if admission.pool.org_scope else job.repository.partition("/")[2]
                    queued[_registration(admission.pool.name, owner, repository)].append((job, dict(repo.data)))
        # an idle runner serves only jobs of its pool where it is registered (its repository or owner)
        idle: Counter[Registration] = Counter(
            _registration(r.record.pool, where.owner, where.repo)
            for r in in_flight(self.backend)
            if r.state != RunnerState.BUSY
            and r.is_live(now, self.settings.claim_timeout_s)
            and (where := scope_of(r)) is not None
        )
        for registration, waiting in queued.items():
            gap = len(waiting) - idle[registration]
            report["queued"] += len(waiting)
            if gap > 0:
                self._fill(waiting, gap, now, report)
        report["redelivered"] += self._redeliver(now)
        if report["errors"]:
            raise PassIncomplete("rebalancer", dict(report))
        return dict(report)

    def _fill(self, jobs: list[tuple[QueuedJob, dict[str, Any]]], gap: int, now: float, report: Counter[str]) -> None:
        """Enqueue up to ``gap`` jobs: unknown ones first, then known ones whose runner is gone.

        Each job is a step of its own: one the queue or the store refuses is logged and counted as
        ``errors``, the next job takes its place, and the next pass tries it again.
        """
        unknown, orphaned = [], []
        for job, repo in sorted(jobs, key=lambda pair: (pair[0].created_at or "", pair[0].job_id)):
            view = self.store.job(job.job_id)
            if view is None:
                unknown.append((job, repo))
            elif view.state == JobState.QUEUED and now - view.record.updated_at > self.grace_s:
                runner = self.store.runner(view.launched_runner) if view.launched_runner else None
                if runner is None or not runner.is_live(now, self.settings.claim_timeout_s):
                    orphaned.append(view)
        steps: list[tuple[str, int, Callable[[], str | None]]] = [
            *(("lost job enqueue", job.job_id, partial(self._enqueue_lost, job, repo, now)) for job, repo in unknown),
            *(("job requeue", view.job_id, partial(self._requeue, view)) for view in orphaned),
        ]
        sent = 0
        for what, job_id, enqueue in steps:
            if sent == gap:
                return
            if isolated(report, what, enqueue, job_id=job_id):
                sent += 1

    def _enqueue_lost(self, job: QueuedJob, repo: dict[str, Any], now: float) -> str:
        message = JobMessage(
            job_id=job.job_id,
            run_id=job.run_id,
            repository=job.repository,
            owner=str(repo.get("owner")),
            installation_id=repo.get("installation_id"),
            labels=job.labels,
            private=bool(repo.get("private")),
            received_at=now,
            reason="rebalancer",
        )
        self.backend.enqueue("jobs", encode(message))
        log.info("lost job enqueued", extra={"job_id": job.job_id})
        return "enqueued"

    def _requeue(self, view: JobView) -> str | None:
        return "enqueued" if requeue(self.store, view, "rebalancer-gap") else None

    def _redeliver(self, now: float) -> int:
        cursor = self.backend.load("cursor", CURSOR)
        if cursor is not None and now - cursor.updated_at < self.settings.redelivery_interval_s:
            return 0
        since = float(cursor.data.get("since", now - 3600)) if cursor else now - 3600
        try:
            count = self.github.redeliver_failed_deliveries(since)
        except GitHubError as exc:
            log.warning("could not redeliver failed deliveries", extra={"reason": str(exc)})
            return 0
        if cursor is None:
            self.store.create("cursor", CURSOR, "set", data={"since": now - LATE_DELIVERY_S})
        else:
            self.store.write(cursor, since=now - LATE_DELIVERY_S)
        return count
