"""The simulated GitHub's state: installations, repositories, runner groups, runners, runs and jobs.

One lock guards everything and every operation is a few dictionary steps, so a burst of
thousands of jobs is not slowed down here. Jobs are assigned the way GitHub assigns them: an
online idle runner whose labels cover a job's labels takes the oldest such queued job, whichever
job it was launched for. Readers get copies, never the live records.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

SELF_HOSTED = "self-hosted"
READ_ONLY_LABELS = frozenset({SELF_HOSTED, "linux", "windows", "macos", "x64", "arm", "arm64"})
CONCLUSIONS = ("success", "failure", "cancelled", "skipped")
REPO_RUNNER_GROUP = 1
RUNNER_VERSION = "2.336.0"  # what a simulated agent reports unless it says otherwise
DEFAULT_GROUP_NAME = "Default"


class SimulatorError(Exception):
    """An admin or agent request the simulator cannot serve; ``status`` is its HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Installation:
    id: int
    account: str
    account_id: int
    account_type: str  # "Organization" or "User"
    created_at: float


@dataclass(slots=True)
class Repository:
    id: int
    owner: str
    name: str
    private: bool
    installation_id: int

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(slots=True)
class RunnerGroup:
    id: int
    name: str
    default: bool
    allows_public_repositories: bool


@dataclass(slots=True)
class Runner:
    id: int
    name: str
    owner: str
    repo: str | None  # None: an organisation runner
    labels: tuple[str, ...]
    group_id: int
    group_name: str
    work_folder: str
    credential: str = field(repr=False)
    created_at: float
    status: str = "offline"
    busy: bool = False
    os: str = "unknown"
    version: str | None = None
    job_id: int | None = None
    config_used: bool = False
    spent: bool = False  # ephemeral: took its one job
    heartbeat: bool = False  # connected over HTTP: goes offline when it stops polling
    last_seen: float = 0.0

    @property
    def scope(self) -> str:
        return f"{self.owner}/{self.repo}" if self.repo else self.owner


@dataclass(slots=True)
class Run:
    id: int
    repository: str
    run_number: int
    workflow_name: str
    head_branch: str
    head_sha: str
    created_at: float
    updated_at: float
    run_attempt: int = 1
    status: str = "queued"
    conclusion: str | None = None
    job_ids: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Job:
    id: int
    run_id: int
    run_attempt: int
    repository: str
    labels: tuple[str, ...]
    name: str
    workflow_name: str
    head_branch: str
    head_sha: str
    created_at: float
    started_at: float
    status: str = "queued"
    conclusion: str | None = None
    completed_at: float | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    runner_group_id: int | None = None
    runner_group_name: str | None = None


JobListener = Callable[[str, Job, Repository, Installation], None]
"""Called under the state lock with (action, job copy, repository, installation) on every job change."""


def labels_match(job_labels: Iterable[str], runner_labels: Iterable[str]) -> bool:
    """GitHub's rule: every job label is a runner label, case-insensitively; ``self-hosted`` is implicit."""
    have = {label.lower() for label in runner_labels}
    have.add(SELF_HOSTED)
    return all(label.lower() in have for label in job_labels)


class World:
    """All state, behind one lock. Raises :class:`SimulatorError` for requests it refuses."""

    def __init__(self, clock: Callable[[], float], on_job_event: JobListener) -> None:
        self._clock = clock
        self._emit = on_job_event
        self._lock = threading.RLock()
        self._next_installation = itertools.count(1001)
        self._next_account = itertools.count(50001)
        self._next_repo = itertools.count(700001)
        self._next_group = itertools.count(2)
        self._next_runner = itertools.count(1)
        self._next_run = itertools.count(3000000001)
        self._next_job = itertools.count(9000000001)
        self._installations: dict[int, Installation] = {}
        self._accounts: dict[str, Installation] = {}
        self._repos: dict[str, Repository] = {}
        self._groups: dict[str, dict[int, RunnerGroup]] = {}
        self._runners: dict[int, Runner] = {}
        self._runner_names: dict[tuple[str, str], int] = {}
        self._credentials: dict[str, int] = {}
        self._runs: dict[int, Run] = {}
        self._repo_runs: dict[str, list[int]] = {}
        self._run_numbers: dict[str, int] = {}
        self._jobs: dict[int, Job] = {}
        self._queued: dict[tuple[str, frozenset[str]], dict[int, None]] = {}
        self._idle: dict[int, None] = {}
        self._wakeups: dict[int, threading.Event] = {}
        self._polls: dict[int, int] = {}

    # -- installations, repositories, runner groups ------------------------------------------

    def add_installation(
        self, owner: str, owner_type: str, repos: Sequence[str], private: bool
    ) -> tuple[Installation, list[Repository]]:
        if owner_type not in ("Organization", "User"):
            raise SimulatorError(f"owner_type must be 'Organization' or 'User', got {owner_type!r}")
        if not owner or "/" in owner:
            raise SimulatorError(f"owner must be an account login, got {owner!r}")
        with self._lock:
            if owner.lower() in self._accounts:
                raise SimulatorError(f"the App is already installed on {owner!r}", 409)
            inst = Installation(
                next(self._next_installation), owner, next(self._next_account), owner_type, self._clock()
            )
            self._installations[inst.id] = inst
            self._accounts[owner.lower()] = inst
            if owner_type == "Organization":
                self._groups[owner.lower()] = {
                    REPO_RUNNER_GROUP: RunnerGroup(REPO_RUNNER_GROUP, DEFAULT_GROUP_NAME, True, False)
                }
            added = [self._add_repo(inst, name, private) for name in repos]
            return dataclasses.replace(inst), added

    def remove_installation(self, installation_id: int) -> Installation:
        """The App is uninstalled: its repositories and runner groups vanish from the App's view."""
        with self._lock:
            inst = self._installations.pop(installation_id, None)
            if inst is None:
                raise SimulatorError(f"installation {installation_id} does not exist", 404)
            del self._accounts[inst.account.lower()]
            self._groups.pop(inst.account.lower(), None)
            for key in [k for k, repo in self._repos.items() if repo.installation_id == installation_id]:
                del self._repos[key]
            return inst

    def add_repository(self, owner: str, name: str, private: bool) -> Repository:
        with self._lock:
            inst = self._accounts.get(owner.lower())
            if inst is None:
                raise SimulatorError(f"the App is not installed on {owner!r}; add the installation first", 404)
            return self._add_repo(inst, name, private)

    def _add_repo(self, inst: Installation, name: str, private: bool) -> Repository:
        if not name or "/" in name:
            raise SimulatorError(f"a repository name must not be empty or contain '/', got {name!r}")
        key = f"{inst.account}/{name}".lower()
        if key in self._repos:
            raise SimulatorError(f"repository {inst.account}/{name} already exists", 409)
        repo = Repository(next(self._next_repo), inst.account, name, private, inst.id)
        self._repos[key] = repo
        return dataclasses.replace(repo)

    def add_runner_group(self, org: str, name: str, allows_public_repositories: bool) -> RunnerGroup:
        with self._lock:
            groups = self._groups.get(org.lower())
            if groups is None:
                raise SimulatorError(f"{org!r} is not an organisation with the App installed", 404)
            if any(g.name.lower() == name.lower() for g in groups.values()):
                raise SimulatorError(f"runner group {name!r} already exists in {org!r}", 409)
            group = RunnerGroup(next(self._next_group), name, False, allows_public_repositories)
            groups[group.id] = group
            return dataclasses.replace(group)

    def installation(self, installation_id: int) -> Installation | None:
        with self._lock:
            inst = self._installations.get(installation_id)
            return dataclasses.replace(inst) if inst else None

    def account(self, login: str) -> Installation | None:
        with self._lock:
            inst = self._accounts.get(login.lower())
            return dataclasses.replace(inst) if inst else None

    def repository(self, owner: str, name: str) -> Repository | None:
        with self._lock:
            repo = self._repos.get(f"{owner}/{name}".lower())
            return dataclasses.replace(repo) if repo else None

    def runner_groups(self, org: str) -> list[RunnerGroup] | None:
        with self._lock:
            groups = self._groups.get(org.lower())
            return None if groups is None else [dataclasses.replace(g) for g in groups.values()]

    # -- runners ---------------------------------------------------------------------------

    def register_runner(
        self, owner: str, repo: str | None, name: str, labels: Sequence[str], group_id: int, work_folder: str
    ) -> Runner:
        """A new JIT runner, offline until its agent connects; 409 when the name is taken in the scope."""
        with self._lock:
            scope = self._scope_key(owner, repo)
            if (scope, name.lower()) in self._runner_names:
                raise SimulatorError(f"Already exists - A runner with the name {name} already exists.", 409)
            group_name = DEFAULT_GROUP_NAME
            if repo is None:
                group = self._groups.get(owner.lower(), {}).get(group_id)
                if group is None:
                    raise SimulatorError(f"No runner group with id {group_id} in {owner}", 422)
                group_name = group.name
            elif group_id != REPO_RUNNER_GROUP:
                raise SimulatorError(f"Repository runners belong to runner group 1, got {group_id}", 422)
            unique: dict[str, str] = {}
            for label in (SELF_HOSTED, *labels):
                unique.setdefault(label.lower(), label)
            runner = Runner(
                id=next(self._next_runner),
                name=name,
                owner=self._display_owner(owner),
                repo=self._display_repo(owner, repo),
                labels=tuple(unique.values()),
                group_id=group_id,
                group_name=group_name,
                work_folder=work_folder,
                credential=secrets.token_hex(16),
                created_at=self._clock(),
            )
            self._runners[runner.id] = runner
            self._runner_names[(scope, name.lower())] = runner.id
            self._credentials[runner.credential] = runner.id
            self._wakeups[runner.id] = threading.Event()
            return dataclasses.replace(runner)

    def add_stale_runner(
        self, owner: str, repo: str | None, name: str, labels: Sequence[str], group_id: int, work_folder: str
    ) -> Runner:
        """A runner that ran before and went away without deregistering (a leftover of a crash)."""
        with self._lock:
            runner = self.register_runner(owner, repo, name, labels, group_id, work_folder)
            live = self._runners[runner.id]
            live.config_used = live.spent = True
            live.os = "linux"
            return dataclasses.replace(live)

    def runners(self, owner: str | None = None, repo: str | None = None, *, scope_only: bool = False) -> list[Runner]:
        """Runners, oldest first; ``scope_only`` keeps exactly one scope (the REST listing)."""
        with self._lock:
            found = []
            for runner in self._runners.values():
                if owner is not None and runner.owner.lower() != owner.lower():
                    continue
                if (scope_only or repo is not None) and (runner.repo or "").lower() != (repo or "").lower():
                    continue
                found.append(dataclasses.replace(runner))
            return found

    def runner(self, runner_id: int) -> Runner | None:
        with self._lock:
            runner = self._runners.get(runner_id)
            return dataclasses.replace(runner) if runner else None

    def delete_runner(self, runner_id: int) -> Runner:
        """Remove a registration; 404 when gone, 422 while it runs a job (as GitHub answers)."""
        with self._lock:
            runner = self._runners.get(runner_id)
            if runner is None:
                raise SimulatorError("Not Found", 404)
            if runner.busy:
                raise SimulatorError(f'Bad request - Runner "{runner.name}" is still running a job"', 422)
            self._remove_runner(runner)
            return dataclasses.replace(runner)

    def _remove_runner(self, runner: Runner) -> None:
        del self._runners[runner.id]
        self._runner_names.pop((self._scope_key(runner.owner, runner.repo), runner.name.lower()), None)
        self._credentials.pop(runner.credential, None)
        self._idle.pop(runner.id, None)
        wakeup = self._wakeups.pop(runner.id, None)
        if wakeup:
            wakeup.set()

    # -- runs and jobs ---------------------------------------------------------------------

    def queue_job(
        self,
        repository: str,
        labels: Sequence[str],
        name: str,
        run_id: int | None,
        workflow_name: str,
        head_branch: str,
        waiting: bool = False,
    ) -> Job:
        """Queue a job; ``waiting`` holds it (an environment awaiting approval) until :meth:`approve_job`."""
        repo_name = repository.partition("/")[2]
        with self._lock:
            repo = self._repos.get(repository.lower())
            if repo is None or not repo_name:
                raise SimulatorError(f"repository {repository!r} is not in any installation of the App", 404)
            now = self._clock()
            if run_id is None:
                number = self._run_numbers.get(repository.lower(), 0) + 1
                self._run_numbers[repository.lower()] = number
                run = Run(
                    id=next(self._next_run),
                    repository=repo.full_name,
                    run_number=number,
                    workflow_name=workflow_name,
                    head_branch=head_branch,
                    head_sha=secrets.token_hex(20),
                    created_at=now,
                    updated_at=now,
                )
                self._runs[run.id] = run
                self._repo_runs.setdefault(repository.lower(), []).append(run.id)
            else:
                found = self._runs.get(run_id)
                if found is None or found.repository.lower() != repository.lower():
                    raise SimulatorError(f"run {run_id} does not exist in {repository}", 404)
                run = found
            job = Job(
                id=next(self._next_job),
                run_id=run.id,
                run_attempt=run.run_attempt,
                repository=repo.full_name,
                labels=tuple(labels),
                name=name,
                workflow_name=run.workflow_name,
                head_branch=run.head_branch,
                head_sha=run.head_sha,
                created_at=now,
                started_at=now,
            )
            self._jobs[job.id] = job
            run.job_ids.append(job.id)
            if waiting:
                job.status = "waiting"
                self._refresh_run(run)
                self._notify("waiting", job)
            else:
                self._enqueue(job)
            return dataclasses.replace(job)

    def approve_job(self, job_id: int) -> Job:
        """A waiting job's environment is approved: it becomes ``queued`` (with webhook)."""
        with self._lock:
            job = self._job(job_id)
            if job.status != "waiting":
                raise SimulatorError(f"job {job_id} is {job.status}, not waiting", 409)
            job.status = "queued"
            self._enqueue(job)
            return dataclasses.replace(job)

    def rerun_job(self, job_id: int) -> Job:
        """Re-run a completed job of the run's latest attempt: a new job (new id) in attempt + 1.

        GitHub refuses (409 here) while the run is still going and for a job of an older attempt.
        """
        with self._lock:
            job = self._job(job_id)
            run = self._runs[job.run_id]
            if job.status != "completed" or run.status != "completed":
                raise SimulatorError(f"job {job_id} cannot be re-run while its workflow run is running", 409)
            if job.run_attempt != run.run_attempt:
                raise SimulatorError(f"job {job_id} belongs to attempt {job.run_attempt}, not the latest", 409)
            run.run_attempt += 1
            now = self._clock()
            again = dataclasses.replace(
                job,
                id=next(self._next_job),
                run_attempt=run.run_attempt,
                created_at=now,
                started_at=now,
                status="queued",
                conclusion=None,
                completed_at=None,
                runner_id=None,
                runner_name=None,
                runner_group_id=None,
                runner_group_name=None,
            )
            self._jobs[again.id] = again
            run.job_ids.append(again.id)
            self._enqueue(again)
            return dataclasses.replace(again)

    def _enqueue(self, job: Job) -> None:
        """Make a job ``queued``: webhook, then an idle runner with matching labels takes it."""
        self._queued.setdefault(self._queue_key(job), {})[job.id] = None
        self._refresh_run(self._runs[job.run_id])
        self._notify("queued", job)
        for runner_id in self._idle:
            runner = self._runners[runner_id]
            if self._can_take(runner, job):
                self._assign(runner, job)
                break

    def cancel_job(self, job_id: int) -> Job:
        with self._lock:
            job = self._job(job_id)
            if job.status == "completed":
                raise SimulatorError(f"job {job_id} is already completed ({job.conclusion})", 409)
            if job.status in ("queued", "waiting"):
                self._unqueue(job)
            else:
                runner = self._runners.get(job.runner_id or 0)
                if runner is not None:
                    self._release(runner)
            self._complete(job, "cancelled")
            return dataclasses.replace(job)

    def job(self, job_id: int) -> Job:
        with self._lock:
            return dataclasses.replace(self._job(job_id))

    def jobs(self, repository: str | None = None) -> list[Job]:
        with self._lock:
            return [
                dataclasses.replace(job)
                for job in self._jobs.values()
                if repository is None or job.repository.lower() == repository.lower()
            ]

    def runs(self, repository: str) -> list[Run]:
        """The repository's runs, newest first (the REST order)."""
        with self._lock:
            ids = self._repo_runs.get(repository.lower(), [])
            return [dataclasses.replace(self._runs[i], job_ids=list(self._runs[i].job_ids)) for i in reversed(ids)]

    def run(self, run_id: int) -> Run | None:
        with self._lock:
            run = self._runs.get(run_id)
            return dataclasses.replace(run, job_ids=list(run.job_ids)) if run else None

    def _job(self, job_id: int) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise SimulatorError(f"job {job_id} does not exist", 404)
        return job

    # -- the runner agent ------------------------------------------------------------------

    def agent_connect(self, credential: str, version: str, heartbeat: bool) -> Runner:
        """The agent of a JIT runner comes online idle and may take a queued job at once."""
        with self._lock:
            runner_id = self._credentials.get(credential)
            runner = self._runners.get(runner_id) if runner_id is not None else None
            if runner is None:
                raise SimulatorError("the JIT config belongs to no registered runner", 404)
            if runner.config_used:
                raise SimulatorError(f"the JIT config of runner {runner.name} was already used", 409)
            runner.config_used = True
            runner.status, runner.os, runner.version = "online", "linux", version
            runner.heartbeat, runner.last_seen = heartbeat, self._clock()
            self._become_idle(runner)
            return dataclasses.replace(runner)

    def agent_poll(self, runner_id: int, credential: str | None, timeout: float) -> Job | None:
        """The job assigned to the runner, waiting up to ``timeout`` seconds for one."""
        with self._lock:
            runner = self._agent(runner_id, credential)
            wakeup = self._wakeups[runner_id]
            if runner.job_id is None and timeout > 0:
                wakeup.clear()
                self._polls[runner_id] = self._polls.get(runner_id, 0) + 1
            else:
                timeout = 0.0
        if timeout > 0:
            wakeup.wait(timeout)
            with self._lock:
                left = self._polls.pop(runner_id) - 1
                if left:
                    self._polls[runner_id] = left
        with self._lock:
            runner = self._agent(runner_id, credential)
            runner.last_seen = self._clock()
            return dataclasses.replace(self._jobs[runner.job_id]) if runner.job_id is not None else None

    def agent_finish(self, runner_id: int, credential: str | None, conclusion: str) -> Job:
        if conclusion not in CONCLUSIONS:
            raise SimulatorError(f"conclusion must be one of {CONCLUSIONS}, got {conclusion!r}")
        with self._lock:
            runner = self._agent(runner_id, credential)
            job = self._jobs.get(runner.job_id or 0)
            if job is None or job.status != "in_progress" or not runner.busy:
                raise SimulatorError(f"runner {runner.name} has no job in progress", 409)
            self._release(runner)
            self._complete(job, conclusion)
            return dataclasses.replace(job)

    def agent_leave(self, runner_id: int, credential: str | None) -> None:
        """An ephemeral runner that ran its job deregisters; one that did not just goes offline."""
        with self._lock:
            runner = self._agent(runner_id, credential)
            if runner.busy:
                raise SimulatorError(f"runner {runner.name} is running job {runner.job_id}; finish it first", 409)
            if runner.spent:
                self._remove_runner(runner)
            else:
                runner.status = "offline"
                self._idle.pop(runner.id, None)

    def kill_runner(self, runner_id: int) -> None:
        """The runner's machine vanishes (a spot reclaim): offline at once, its job fails."""
        with self._lock:
            runner = self._runners.get(runner_id)
            if runner is None:
                raise SimulatorError(f"runner {runner_id} does not exist", 404)
            self._lose(runner)

    def expire_heartbeats(self, timeout_s: float) -> None:
        """Runners connected over HTTP that stopped polling for ``timeout_s`` go offline."""
        with self._lock:
            now = self._clock()
            for runner in list(self._runners.values()):
                if (
                    runner.heartbeat
                    and runner.status == "online"
                    and not self._polls.get(runner.id)
                    and now - runner.last_seen > timeout_s
                ):
                    self._lose(runner)

    def wake_all(self) -> None:
        """End every waiting poll now (the simulator is stopping)."""
        with self._lock:
            for wakeup in self._wakeups.values():
                wakeup.set()

    def _agent(self, runner_id: int, credential: str | None) -> Runner:
        runner = self._runners.get(runner_id)
        if runner is None or (credential is not None and not secrets.compare_digest(runner.credential, credential)):
            raise SimulatorError(f"runner {runner_id} is not registered", 404)
        if not runner.config_used:
            raise SimulatorError(f"runner {runner.name} has not connected", 409)
        return runner

    # -- assignment ------------------------------------------------------------------------

    def _become_idle(self, runner: Runner) -> None:
        best: tuple[int, tuple[str, frozenset[str]]] | None = None
        for key, waiting in self._queued.items():
            oldest = next(iter(waiting))
            if (best is None or oldest < best[0]) and self._can_take(runner, self._jobs[oldest]):
                best = (oldest, key)
        if best is None:
            self._idle[runner.id] = None
        else:
            self._assign(runner, self._jobs[best[0]])

    def _can_take(self, runner: Runner, job: Job) -> bool:
        if runner.status != "online" or runner.busy or runner.spent:
            return False
        owner = job.repository.partition("/")[0]
        if runner.repo is not None:
            if job.repository.lower() != f"{runner.owner}/{runner.repo}".lower():
                return False
        else:
            if owner.lower() != runner.owner.lower():
                return False
            repo = self._repos.get(job.repository.lower())
            group = self._groups.get(owner.lower(), {}).get(runner.group_id)
            if repo is None or group is None or (not repo.private and not group.allows_public_repositories):
                return False
        return labels_match(job.labels, runner.labels)

    def _assign(self, runner: Runner, job: Job) -> None:
        self._unqueue(job)
        self._idle.pop(runner.id, None)
        runner.busy, runner.job_id, runner.spent = True, job.id, True
        job.status, job.started_at = "in_progress", self._clock()
        job.runner_id, job.runner_name = runner.id, runner.name
        job.runner_group_id, job.runner_group_name = runner.group_id, runner.group_name
        self._refresh_run(self._runs[job.run_id])
        self._notify("in_progress", job)
        self._wakeups[runner.id].set()

    def _release(self, runner: Runner) -> None:
        runner.busy = False
        self._wakeups[runner.id].set()

    def _lose(self, runner: Runner) -> None:
        runner.status = "offline"
        self._idle.pop(runner.id, None)
        job = self._jobs.get(runner.job_id or 0)
        if runner.busy and job is not None and job.status == "in_progress":
            self._release(runner)
            self._complete(job, "failure")
        self._wakeups[runner.id].set()

    def _complete(self, job: Job, conclusion: str) -> None:
        job.status, job.conclusion, job.completed_at = "completed", conclusion, self._clock()
        self._refresh_run(self._runs[job.run_id])
        self._notify("completed", job)

    def _unqueue(self, job: Job) -> None:
        key = self._queue_key(job)
        waiting = self._queued.get(key)
        if waiting is not None:
            waiting.pop(job.id, None)
            if not waiting:
                del self._queued[key]

    def _refresh_run(self, run: Run) -> None:
        newest: dict[str, int] = {}
        for i in run.job_ids:
            job = self._jobs[i]
            newest[job.name] = max(newest.get(job.name, 0), job.run_attempt)
        current = [i for i in run.job_ids if self._jobs[i].run_attempt == newest[self._jobs[i].name]]
        statuses = [self._jobs[i].status for i in current]
        if "in_progress" in statuses:
            run.status, run.conclusion = "in_progress", None
        elif "queued" in statuses:
            run.status, run.conclusion = "queued", None
        elif "waiting" in statuses:
            run.status, run.conclusion = "waiting", None
        else:
            conclusions = {self._jobs[i].conclusion for i in current}
            run.status = "completed"
            run.conclusion = next((c for c in ("failure", "cancelled") if c in conclusions), "success")
        run.updated_at = self._clock()

    def _notify(self, action: str, job: Job) -> None:
        repo = self._repos.get(job.repository.lower())
        if repo is None:  # the App was uninstalled: no more deliveries for this repository
            return
        self._emit(action, dataclasses.replace(job), repo, self._installations[repo.installation_id])

    @staticmethod
    def _queue_key(job: Job) -> tuple[str, frozenset[str]]:
        return job.repository.lower(), frozenset(label.lower() for label in job.labels)

    @staticmethod
    def _scope_key(owner: str, repo: str | None) -> str:
        return f"{owner}/{repo}".lower() if repo else owner.lower()

    def _display_owner(self, owner: str) -> str:
        inst = self._accounts.get(owner.lower())
        return inst.account if inst else owner

    def _display_repo(self, owner: str, repo: str | None) -> str | None:
        if repo is None:
            return None
        found = self._repos.get(f"{owner}/{repo}".lower())
        return found.name if found else repo
