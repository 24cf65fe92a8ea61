"""The GitHub App client: what jitr's services ask of GitHub, over the REST API.

Implements :class:`jitr_core.github.GitHubAPI`. Every method raises only
:class:`~jitr_core.errors.GitHubError` and its subclasses. Installations, installation tokens,
runner groups and list answers (by ETag) are cached, so GitHub calls grow with active
repositories, not with jobs. Safe to share between threads.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, urlencode

import requests
from jitr_core.errors import GitHubConflictError, GitHubError, GitHubNotFoundError
from jitr_core.github import GitHubJob, GitHubRunner, JitConfig, QueuedJob
from jitr_core.model import Scope
from jitr_core.secret import Secret
from requests.adapters import HTTPAdapter

from . import __version__
from .appauth import AppCredentials
from .ratelimit import RateLimit
from .tokens import REFRESH_MARGIN_S, InstallationToken, TokenCache
from .transport import Credential, Reply, Transport

log = logging.getLogger("jitr.github")

PER_PAGE = 100
REPO_RUNNER_GROUP_ID = 1
P = ParamSpec("P")
R = TypeVar("R")


def _answers(method: Callable[P, R]) -> Callable[P, R]:
    """An answer of an unexpected shape becomes a :class:`GitHubError` (naming no value from it)."""

    @functools.wraps(method)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise GitHubError(
                f"GitHub's answer to {method.__name__} has an unexpected shape ({type(exc).__name__})"
            ) from None

    return checked


class GitHubClient:
    """A GitHub App acting on its installations.

    ``app_id`` is the App's id or client id; ``api_url`` is ``https://api.github.com`` or a
    GitHub Enterprise Server API URL such as ``https://ghe.example/api/v3``. A call times out when
    connecting, or any wait for the next bytes of the answer, takes ``timeout`` seconds (a server
    that keeps sending slowly is not cut off); calls are retried ``max_retries`` times on
    connection errors and 5xx;
    rate-limit waits up to ``max_rate_limit_wait_s`` are slept through, longer ones raised.
    ``clock``, ``sleep`` and ``jitter`` exist for tests.
    """

    def __init__(
        self,
        app_id: str,
        private_key: Secret | str,
        api_url: str = "https://api.github.com",
        *,
        timeout: float = 10.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        backoff_max_s: float = 20.0,
        max_rate_limit_wait_s: float = 60.0,
        token_refresh_margin_s: float = REFRESH_MARGIN_S,
        pool_size: int = 32,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._app = AppCredentials(app_id, private_key, clock)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._transport = Transport(
            api_url,
            session=session,
            timeout=timeout,
            max_retries=max_retries,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            max_rate_limit_wait_s=max_rate_limit_wait_s,
            clock=clock,
            sleep=sleep,
            jitter=jitter,
            user_agent=f"jitr-github/{__version__}",
        )
        self._session = session
        self._tokens = TokenCache(self._mint_token, clock, token_refresh_margin_s)
        self._app_credential = Credential("app", self._app.jwt)
        self._lock = threading.Lock()
        self._installations: dict[tuple[str, str | None], int] = {}
        self._groups: dict[tuple[int, str], dict[str, int]] = {}

    def __repr__(self) -> str:
        return f"GitHubClient(app_id={self._app.app_id!r}, api_url={self._transport.api_url!r})"

    def close(self) -> None:
        self._session.close()

    # -- rate limits ------------------------------------------------------------------------

    @property
    def rate_limit_remaining(self) -> int | None:
        """The fewest requests left in any principal's current window (for a metric); None before any call."""
        return self._transport.lowest_remaining()

    def rate_limits(self) -> dict[str, RateLimit]:
        """The last core rate limit seen per principal (``"app"``, ``"installation:<id>"``)."""
        return self._transport.rate_limits()

    @_answers
    def fetch_rate_limit(self, installation_id: int | None = None) -> RateLimit:
        """Ask GitHub (``GET /rate_limit``, free of charge) for the App's or an installation's core limit."""
        credential = self._app_credential if installation_id is None else self._installation_credential(installation_id)
        core = self._get(self._transport.url("/rate_limit"), credential).data["resources"]["core"]
        return RateLimit(int(core["limit"]), int(core["remaining"]), float(core["reset"]), int(core["used"]))

    # -- installations ----------------------------------------------------------------------

    @_answers
    def installation_for(self, owner: str, repo: str | None = None) -> int:
        """The App installation id for a repository, or for an organisation or user when ``repo`` is None."""
        key = (owner.lower(), repo.lower() if repo else None)
        with self._lock:
            cached = self._installations.get(key)
        if cached is not None:
            return cached
        if repo is not None:
            data = self._get(self._transport.url(f"/repos/{_q(owner)}/{_q(repo)}/installation"), self._app_credential)
        else:
            try:
                data = self._get(self._transport.url(f"/orgs/{_q(owner)}/installation"), self._app_credential)
            except GitHubNotFoundError:
                data = self._get(self._transport.url(f"/users/{_q(owner)}/installation"), self._app_credential)
        installation_id = int(data.data["id"])
        with self._lock:
            self._installations[key] = installation_id
        return installation_id

    @_answers
    def _mint_token(self, installation_id: int) -> InstallationToken:
        url = self._transport.url(f"/app/installations/{installation_id}/access_tokens")
        try:
            reply = self._transport.request("POST", url, self._app_credential)
        except GitHubNotFoundError:
            self._forget_installation(installation_id)  # uninstalled: a reinstall gets a new id
            raise
        value, expires_at = reply.data["token"], reply.data["expires_at"]
        expires = datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp()
        log.info(
            "github installation token minted", extra={"installation_id": installation_id, "expires_at": expires_at}
        )
        return InstallationToken(Secret(value), expires)

    def _forget_installation(self, installation_id: int) -> None:
        with self._lock:
            self._installations = {k: v for k, v in self._installations.items() if v != installation_id}
            self._groups = {k: v for k, v in self._groups.items() if k[0] != installation_id}

    def _installation_credential(self, installation_id: int) -> Credential:
        return Credential(
            f"installation:{installation_id}",
            lambda: self._tokens.get(installation_id),
            lambda refused: self._tokens.invalidate(installation_id, refused),
        )

    def _scope_installation(self, scope: Scope) -> int:
        if scope.installation_id is not None:
            return scope.installation_id
        return self.installation_for(scope.owner, scope.repo)

    def _credential(self, scope: Scope) -> Credential:
        return self._installation_credential(self._scope_installation(scope))

    # -- runners ----------------------------------------------------------------------------

    @_answers
    def generate_jit_config(
        self, scope: Scope, name: str, labels: Sequence[str], runner_group: str, work_folder: str = "_work"
    ) -> JitConfig:
        """Register a single-use runner and return its JIT config.

        A 409 means the name is taken. If the runner holding it is offline and idle (a leftover
        of an earlier, crashed attempt) it is deleted and the registration tried once more; a
        runner that is online or busy is never touched and :class:`GitHubConflictError` is raised.
        """
        installation_id = self._scope_installation(scope)
        credential = self._installation_credential(installation_id)
        group_id = REPO_RUNNER_GROUP_ID
        if scope.repo is None:
            group_id = self._runner_group_id(scope.owner, runner_group, installation_id, credential)
        url = self._transport.url(f"{_base(scope)}/actions/runners/generate-jitconfig")
        body = {"name": name, "runner_group_id": group_id, "labels": list(labels), "work_folder": work_folder}
        try:
            reply = self._transport.request("POST", url, credential, body=body)
        except GitHubConflictError:
            existing = self.find_runner(scope, name)
            if existing is not None:
                if existing.online or existing.busy:
                    state = "busy" if existing.busy else "online"
                    raise GitHubConflictError(
                        f"runner name {name!r} at {scope.full_name} belongs to runner {existing.id}, which is "
                        f"{state}; it is not replaced",
                        409,
                    ) from None
                log.warning(
                    "github runner name taken by a stale runner, deleting it",
                    extra={"runner_name": name, "runner_id": existing.id, "scope": scope.full_name},
                )
                self.delete_runner(scope, existing.id)
            reply = self._transport.request("POST", url, credential, body=body)
        runner = reply.data["runner"]
        config = JitConfig(int(runner["id"]), str(runner["name"]), Secret(str(reply.data["encoded_jit_config"])))
        log.info(
            "github jit runner registered",
            extra={"runner_name": config.runner_name, "runner_id": config.runner_id, "scope": scope.full_name},
        )
        return config

    @_answers
    def _runner_group_id(self, org: str, runner_group: str, installation_id: int, credential: Credential) -> int:
        """The id of an organisation's runner group by name (empty: the default group); cached."""
        key = (installation_id, org.lower())
        wanted = runner_group.strip().lower()
        with self._lock:
            groups = self._groups.get(key)
        if groups is None or wanted not in groups:
            groups = {}
            url = self._transport.url(f"/orgs/{_q(org)}/actions/runner-groups?per_page={PER_PAGE}")
            for page in self._pages(url, credential):
                for group in page["runner_groups"]:
                    groups[str(group["name"]).lower()] = int(group["id"])
                    if group.get("default"):
                        groups[""] = int(group["id"])
            with self._lock:
                self._groups[key] = groups
        if wanted not in groups:
            known = sorted(name for name in groups if name)
            raise GitHubNotFoundError(
                f"runner group {runner_group!r} does not exist in organisation {org!r} (it has {known})"
            )
        return groups[wanted]

    @_answers
    def list_runners(self, scope: Scope) -> list[GitHubRunner]:
        """Every self-hosted runner registered at the scope (all pages)."""
        return self._list_runners(scope, {})

    @_answers
    def find_runner(self, scope: Scope, name: str) -> GitHubRunner | None:
        """The runner with this name at the scope, if any."""
        found = self._list_runners(scope, {"name": name})
        return next((runner for runner in found if runner.name.lower() == name.lower()), None)

    def _list_runners(self, scope: Scope, query: dict[str, str]) -> list[GitHubRunner]:
        credential = self._credential(scope)
        url = self._transport.url(f"{_base(scope)}/actions/runners?{urlencode({**query, 'per_page': PER_PAGE})}")
        return [_runner(item) for page in self._pages(url, credential) for item in page["runners"]]

    @_answers
    def get_runner(self, scope: Scope, runner_id: int) -> GitHubRunner | None:
        """One runner by id; None when it does not exist."""
        try:
            reply = self._get(
                self._transport.url(f"{_base(scope)}/actions/runners/{int(runner_id)}"), self._credential(scope)
            )
        except GitHubNotFoundError:
            return None
        return _runner(reply.data)

    def delete_runner(self, scope: Scope, runner_id: int) -> bool:
        """Remove a runner; False when it was already gone, :class:`GitHubConflictError` while it runs a job."""
        url = self._transport.url(f"{_base(scope)}/actions/runners/{int(runner_id)}")
        try:
            self._transport.request("DELETE", url, self._credential(scope))
        except GitHubNotFoundError:
            return False
        except GitHubError as exc:
            if exc.status == 422:
                raise GitHubConflictError(
                    f"runner {runner_id} at {scope.full_name} is running a job: {exc}", 422
                ) from None
            raise
        log.info("github runner deleted", extra={"runner_id": runner_id, "scope": scope.full_name})
        return True

    # -- jobs -------------------------------------------------------------------------------

    @_answers
    def queued_jobs(self, scope: Scope, created_before: float | None = None) -> list[QueuedJob]:
        """Jobs still waiting for a runner in the repository's active workflow runs.

        Runs that are ``queued`` and runs that are ``in_progress`` are both read: a run with one
        job running and another still waiting (a matrix, a burst) is ``in_progress``. Lists are
        read with conditional requests, so an unchanged repository costs no rate limit. Runs
        created after ``created_before`` (epoch seconds) are skipped, so a burst of young runs
        costs one list, not one call per run.
        """
        if scope.repo is None:
            raise GitHubError(f"queued jobs are listed per repository, got organisation scope {scope.owner!r}")
        credential = self._credential(scope)
        base = f"{_base(scope)}/actions/runs"
        runs: dict[int, dict[str, Any]] = {}
        for status in ("queued", "in_progress"):
            url = self._transport.url(f"{base}?{urlencode({'status': status, 'per_page': PER_PAGE})}")
            for page in self._pages(url, credential, conditional=True):
                for run in page["workflow_runs"]:
                    runs.setdefault(int(run["id"]), run)
        queued: list[QueuedJob] = []
        for run_id, run in runs.items():
            if created_before is not None and _epoch(run.get("created_at")) > created_before:
                continue
            repository = str(run.get("repository", {}).get("full_name") or scope.full_name)
            url = self._transport.url(f"{base}/{run_id}/jobs?filter=latest&per_page={PER_PAGE}")
            for page in self._pages(url, credential, conditional=True):
                for job in page["jobs"]:
                    if job.get("status") != "queued":
                        continue
                    queued.append(
                        QueuedJob(
                            job_id=int(job["id"]),
                            run_id=int(job["run_id"]),
                            run_attempt=int(job.get("run_attempt") or run.get("run_attempt") or 1),
                            repository=repository,
                            labels=tuple(job.get("labels") or ()),
                            name=str(job.get("name") or ""),
                            created_at=job.get("created_at"),
                        )
                    )
        return queued

    @_answers
    def get_job(self, scope: Scope, job_id: int) -> GitHubJob:
        """One workflow job of the scope's repository."""
        if scope.repo is None:
            raise GitHubError(f"jobs belong to a repository, got organisation scope {scope.owner!r}")
        data = self._get(
            self._transport.url(f"{_base(scope)}/actions/jobs/{int(job_id)}"), self._credential(scope)
        ).data
        return GitHubJob(
            job_id=int(data["id"]),
            run_id=int(data["run_id"]),
            status=str(data["status"]),
            conclusion=data.get("conclusion"),
            labels=tuple(data.get("labels") or ()),
            runner_id=data.get("runner_id"),
            runner_name=data.get("runner_name"),
        )

    def rerun_job(self, scope: Scope, job_id: int) -> None:
        """Re-run a completed job and its dependents as a new run attempt (a new job id).

        Needs the App's ``actions: write`` permission: without it GitHub answers 403
        (:class:`GitHubAuthError`); a job or run already running answers 409
        (:class:`GitHubConflictError`). Rate limits and 5xx answers are retried by the transport.
        """
        if scope.repo is None:
            raise GitHubError(f"jobs belong to a repository, got organisation scope {scope.owner!r}")
        url = self._transport.url(f"{_base(scope)}/actions/jobs/{int(job_id)}/rerun")
        self._transport.request("POST", url, self._credential(scope))
        log.info("github job re-run requested", extra={"job_id": job_id, "scope": scope.full_name})

    # -- webhook deliveries -----------------------------------------------------------------

    @_answers
    def redeliver_failed_deliveries(self, since: float) -> int:
        """Ask GitHub to redeliver the App's failed deliveries since an epoch time; how many it accepted.

        A delivery failed when the receiver did not answer 2xx (or was not reached). An event
        (its GUID) that some later attempt delivered successfully is not redelivered again.
        """
        attempts: list[dict[str, Any]] = []
        url: str | None = self._transport.url(f"/app/hook/deliveries?per_page={PER_PAGE}")
        while url:
            reply = self._get(url, self._app_credential)
            page = reply.data or []
            fresh = [d for d in page if _epoch(d.get("delivered_at")) >= since]
            attempts += fresh
            url = reply.next_url if len(fresh) == len(page) else None
        delivered = {d["guid"] for d in attempts if 200 <= int(d.get("status_code") or 0) < 300}
        failed: dict[str, int] = {}
        for attempt in attempts:  # newest first: the latest failed attempt of each event
            if attempt["guid"] not in delivered:
                failed.setdefault(attempt["guid"], int(attempt["id"]))
        count = 0
        for guid, delivery_id in failed.items():
            try:
                self._transport.request(
                    "POST", self._transport.url(f"/app/hook/deliveries/{delivery_id}/attempts"), self._app_credential
                )
            except GitHubNotFoundError:
                continue
            count += 1
            log.info("github webhook redelivery requested", extra={"delivery_guid": guid, "delivery_id": delivery_id})
        return count

    # -- helpers ----------------------------------------------------------------------------

    def _get(self, url: str, credential: Credential) -> Reply:
        return self._transport.request("GET", url, credential)

    def _pages(self, url: str, credential: Credential, *, conditional: bool = False) -> Iterator[dict[str, Any]]:
        """Each page of a list, following ``Link: rel="next"``."""
        next_url: str | None = url
        while next_url:
            reply = self._transport.request("GET", next_url, credential, conditional=conditional)
            if not isinstance(reply.data, dict):
                raise GitHubError(f"GitHub answered a list request with {type(reply.data).__name__}, not an object")
            yield reply.data
            next_url = reply.next_url


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _base(scope: Scope) -> str:
    return f"/repos/{_q(scope.owner)}/{_q(scope.repo)}" if scope.repo else f"/orgs/{_q(scope.owner)}"


def _runner(data: dict[str, Any]) -> GitHubRunner:
    return GitHubRunner(
        id=int(data["id"]),
        name=str(data["name"]),
        online=data.get("status") == "online",
        busy=bool(data.get("busy")),
        labels=tuple(str(label["name"]) for label in data.get("labels") or ()),
    )


def _epoch(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
