"""What the services need from GitHub, as a protocol.

``jitr_github.GitHubClient`` implements it over the REST API; the services depend only on this
protocol, so core stays free of HTTP libraries and tests can use the GitHub simulator.
Every method raises :class:`~jitr_core.errors.GitHubError` subclasses, never anything else.

A caller whose own answer has a time limit (the broker behind API Gateway) makes its calls
within :func:`calls_done_by`; an implementation reads :func:`calls_deadline` and neither waits,
retries nor reads past it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from .model import Scope
from .secret import Secret

_DEADLINE: ContextVar[float | None] = ContextVar("jitr_github_calls_deadline", default=None)


@contextmanager
def calls_done_by(deadline: float) -> Iterator[None]:
    """GitHub calls made within end by ``deadline`` (seconds since the epoch, as ``time.time()``):
    one that would wait, retry or read past it raises a :class:`~jitr_core.errors.GitHubError`
    instead (``GitHubRateLimitError`` for a rate-limit wait, else ``GitHubUnavailableError``).
    Nested, the earlier deadline holds."""
    outer = _DEADLINE.get()
    token = _DEADLINE.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def calls_deadline() -> float | None:
    """The time by which the GitHub calls of this context must be done; None when unbounded."""
    return _DEADLINE.get()


@dataclass(frozen=True, slots=True)
class JitConfig:
    """A registered JIT runner and the encoded config its agent starts with (a secret)."""

    runner_id: int
    runner_name: str
    encoded: Secret


@dataclass(frozen=True, slots=True)
class GitHubRunner:
    """A self-hosted runner as GitHub lists it."""

    id: int
    name: str
    online: bool
    busy: bool
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A workflow job GitHub still has queued, waiting for a runner."""

    job_id: int
    run_id: int
    run_attempt: int
    repository: str
    labels: tuple[str, ...]
    name: str = ""
    created_at: str | None = None


@dataclass(frozen=True, slots=True)
class GitHubJob:
    """Where one workflow job stands on GitHub: ``status`` (queued, in_progress, completed...) and
    the runner that took it, if any."""

    job_id: int
    run_id: int
    status: str
    conclusion: str | None
    labels: tuple[str, ...]
    runner_id: int | None
    runner_name: str | None


class GitHubAPI(Protocol):
    """The GitHub operations the control plane performs, per App installation."""

    def installation_for(self, owner: str, repo: str | None = None) -> int:
        """The App installation id for a repository (or an organisation/user when repo is None)."""

    def generate_jit_config(
        self, scope: Scope, name: str, labels: Sequence[str], runner_group: str, work_folder: str = "_work"
    ) -> JitConfig:
        """Register a single-use runner; a name conflict with a stale runner is resolved, not retried blindly."""

    def list_runners(self, scope: Scope) -> Sequence[GitHubRunner]:
        """Every self-hosted runner registered at the scope (all pages)."""

    def delete_runner(self, scope: Scope, runner_id: int) -> bool:
        """Remove a runner; False when it was already gone."""

    def queued_jobs(self, scope: Scope, created_before: float | None = None) -> Sequence[QueuedJob]:
        """Queued jobs of a repository's active workflow runs (conditional requests, all pages).

        Runs created after ``created_before`` (epoch seconds) are skipped without reading their
        jobs: they are young enough to still be on their way through the webhook pipeline.
        """

    def get_job(self, scope: Scope, job_id: int) -> GitHubJob:
        """One workflow job of the scope's repository (asked only about jobs whose runner looks lost)."""

    def redeliver_failed_deliveries(self, since: float) -> int:
        """Ask GitHub to redeliver the App's failed webhook deliveries since an epoch time; returns how many."""

    def rerun_job(self, scope: Scope, job_id: int) -> None:
        """Re-run a failed job (and its dependents) as a new run attempt; needs the App's ``actions: write``."""
