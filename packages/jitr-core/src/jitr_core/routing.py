"""Label routing and admission: which pool (if any) serves a job.

GitHub gives a job to a runner only when every label of the job is among the runner's labels,
so a pool can serve a job when the job's labels are a subset of the pool's. Among the pools that
can, the highest ``priority`` wins, then the most specific (fewest labels the job did not ask
for), then the name, so the choice is stable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .model import WorkflowJob
from .settings import Pool, Settings

SELF_HOSTED = "self-hosted"


@dataclass(frozen=True, slots=True)
class Admission:
    """The routing decision for a job: a pool, or the reason there is none."""

    pool: Pool | None
    reason: str = ""


class Router:
    """Routes jobs to pools and applies the owner/repository allow-lists."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pools = sorted(settings.pools, key=lambda p: (-p.priority, len(p.labels), p.name))

    def pool_for(self, labels: Iterable[str]) -> Pool | None:
        wanted = {label.lower() for label in labels}
        if SELF_HOSTED not in wanted:
            return None
        for pool in self._pools:
            if wanted <= pool.labels:
                return pool
        return None

    def admit(self, job: WorkflowJob) -> Admission:
        return self.admit_parts(job.repository, job.owner, job.labels, job.private)

    def admit_parts(self, repository: str, owner: str, labels: Iterable[str], private: bool) -> Admission:
        labels = tuple(labels)
        if not self.allowed(repository, owner):
            return Admission(None, f"{repository} is not in the allowed owners or repositories")
        pool = self.pool_for(labels)
        if pool is None:
            return Admission(None, f"no pool serves labels {sorted(label.lower() for label in labels)}")
        if not private and not pool.allow_public:
            return Admission(None, f"{repository} is public and pool {pool.name!r} does not allow public repositories")
        return Admission(pool)

    def allowed(self, repository: str, owner: str) -> bool:
        s = self._settings
        if not s.allowed_owners and not s.allowed_repos:
            return True
        return owner.lower() in s.allowed_owners or repository.lower() in s.allowed_repos
