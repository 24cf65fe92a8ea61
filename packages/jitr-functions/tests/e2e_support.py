"""Shared helpers of the end-to-end tests: pools, waiting, reading the store and the simulator, signing.

Every helper reads real state (the embedded store, the simulator, the simulated cloud); none
replaces a part of the control plane.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from jitr_core.backend import Backend
from jitr_core.errors import BackendError, CapacityError
from jitr_core.hookspecs import hookimpl
from jitr_core.messages import JOBS_QUEUE
from jitr_core.model import IN_FLIGHT_RUNNER_STATES, LaunchRequest, QueueMessage, Record, RecordQuery
from jitr_core.settings import Settings
from jitr_core.testing.environment import wait_until
from jitr_functions.local import Intervals
from jitr_functions.sandbox import Sandbox
from jitr_github.simulator import Faults

LABELS = ["self-hosted", "linux", "x64"]
POOL: dict[str, Any] = {
    "name": "linux",
    "labels": LABELS,
    "machine_types": ["m7.large", "m6.large"],
    "placements": ["zone-a", "zone-b"],
    "max_runners": 50,
}
# Periodic functions that never tick on their own: the test runs scaledown/rebalancer itself.
QUIET = Intervals(scaledown_s=3600.0, rebalancer_s=3600.0, visibility_timeout_s=1)


def wait_for(
    predicate: Callable[[], object],
    timeout_s: float = 60.0,
    what: str = "condition",
    step_s: float = 0.05,
    detail: Callable[[], object] | None = None,
) -> Any:
    """Poll until ``predicate`` is truthy; fail naming ``what`` (and ``detail()``) after the scaled ``timeout_s``."""
    return wait_until(predicate, timeout_s, what, step_s, detail)


# -- the simulated world ------------------------------------------------------------------------

_SEEDS = iter(range(1000, 10**9))


def set_faults(sandbox: Sandbox, **faults: Any) -> None:
    """Change the simulator's faults mid-test, each change with a seed of its own."""
    sandbox.sim.faults = Faults(seed=next(_SEEDS), **faults)


def queue_jobs(
    sandbox: Sandbox, count: int, repos: Sequence[str] | None = None, labels: Sequence[str] = LABELS
) -> list[int]:
    repos = list(repos or sandbox.repositories)
    return [sandbox.sim.queue_job(repos[i % len(repos)], list(labels), name=f"job-{i}") for i in range(count)]


def statuses(sandbox: Sandbox, job_ids: Iterable[int]) -> dict[int, str]:
    return {job_id: sandbox.sim.job(job_id).status for job_id in job_ids}


def all_completed(sandbox: Sandbox, job_ids: Iterable[int]) -> bool:
    return all(status == "completed" for status in statuses(sandbox, job_ids).values())


def wait_completed(sandbox: Sandbox, job_ids: Sequence[int], timeout_s: float = 60.0) -> None:
    wait_for(
        lambda: all_completed(sandbox, job_ids),
        timeout_s,
        f"{len(job_ids)} jobs to complete",
        step_s=0.1,
        detail=lambda: describe(sandbox, job_ids),
    )


def job_of(runner_name: str) -> tuple[int, int]:
    """(job id, attempt) of a runner name ``jitr-<pool>-<job>-<attempt>``."""
    _, job, attempt = runner_name.rsplit("-", 2)
    return int(job), int(attempt)


def launches_per_job(sandbox: Sandbox) -> Counter[int]:
    """VMs started per job, over all attempts, as the simulated cloud counted them."""
    counts: Counter[int] = Counter()
    for name, n in dict(sandbox.vms.launches).items():
        counts[job_of(name)[0]] += n
    return counts


def assert_one_vm_per_attempt(sandbox: Sandbox) -> None:
    """Invariant 1: the cloud never started two VMs for one (job, attempt)."""
    twice = {name: n for name, n in dict(sandbox.vms.launches).items() if n != 1}
    assert not twice, f"runner names launched more than once: {twice}"


def assert_vms_accounted(
    sandbox: Sandbox, job_ids: Sequence[int], timeout_s: float = 60.0, exact: bool = False, scaledown: bool = False
) -> int:
    """Every VM is accounted for once the jobs are done; returns how many VMs served no job.

    Each (job, attempt) was launched at most once; no runner is left in flight and no VM runs;
    every launched runner has a record, and exactly one finished runner per job. A JIT runner
    takes any queued job with matching labels, so a VM launched for one job may serve another,
    and jitr compensates with a new launch; a VM that then served nothing must be retired.
    ``exact``: no VM beyond one per job at all. ``scaledown``: run scale-down passes while
    waiting, for sandboxes whose periodic functions do not tick on their own.
    """
    assert sandbox.app is not None
    app = sandbox.app
    assert_one_vm_per_attempt(sandbox)

    def settled() -> bool:
        if scaledown:
            app.scaledown.run()
        return not in_flight_records(sandbox) and not running_vms(sandbox)

    wait_for(
        settled,
        timeout_s,
        "every runner to finish and every VM to end",
        step_s=0.2,
        detail=lambda: describe(sandbox, job_ids),
    )
    records = {r.key: r for r in runner_records(sandbox)}
    launched = set(sandbox.vms.launches)
    assert launched <= set(records), f"VMs without a runner record: {launched - set(records)}"
    finished = {k for k, r in records.items() if r.state == "finished"}
    served = {int(r.data["serving_job_id"]) for k, r in records.items() if k in finished}
    assert served == set(job_ids), describe(sandbox, job_ids)
    assert len(finished) == len(job_ids), describe(sandbox, job_ids)
    idle = launched - finished
    assert all(records[k].state == "retired" for k in idle), describe(sandbox, job_ids)
    if exact:
        assert not idle, f"{len(idle)} VMs served no job: {sorted(idle)}\n{describe(sandbox, job_ids)}"
    return len(idle)


def running_vms(sandbox: Sandbox) -> dict[str, str]:
    """vm id → runner name of the VMs the simulated cloud lists as running."""
    assert sandbox.app is not None
    return {vm.vm_id: vm.runner_name for vm in sandbox.app.backend.list_vms() if vm.running}


def logged(sandbox: Any, message: str) -> list[dict[str, Any]]:
    """The sandbox's JSON log lines with this ``message`` (``e2e_sandbox`` gives it ``log_text``)."""
    lines = map(json.loads, sandbox.log_text().splitlines())
    return [line for line in lines if line.get("message") == message]


def github_runner_names(sandbox: Sandbox) -> set[str]:
    return {runner.name for runner in sandbox.sim.runners()}


# -- the store ------------------------------------------------------------------------------------


def record(sandbox: Sandbox, kind: str, key: str | int) -> Record | None:
    assert sandbox.app is not None
    return sandbox.app.backend.load(kind, str(key))


RUNNER_STATES = ("claimed", "launched", "busy", "finished", "retired")


def runners_in(backend: Backend, states: Iterable[str] = RUNNER_STATES) -> list[Record]:
    """One record per runner, in ``states``: a query each, in the order a runner moves through them,
    so a runner that moves on between two queries is seen twice; the later sighting is the newer."""
    latest = {r.key: r for state in states for r in backend.query_all(RecordQuery("runner", state, limit=500))}
    return list(latest.values())


def runner_records(sandbox: Sandbox, states: Iterable[str] = RUNNER_STATES) -> list[Record]:
    assert sandbox.app is not None
    return runners_in(sandbox.app.backend, states)


def in_flight_records(sandbox: Sandbox) -> list[Record]:
    return runner_records(sandbox, [str(s) for s in IN_FLIGHT_RUNNER_STATES])


def describe(sandbox: Sandbox, job_ids: Iterable[int] = ()) -> str:
    """A snapshot for failure messages: jobs on GitHub and in the store, runner records, launches."""
    lines = []
    for job_id in job_ids:
        rec = record(sandbox, "job", job_id)
        state = "-"
        if rec:
            state = f"{rec.state} attempt={rec.data.get('attempt')} runner={rec.data.get('launched_runner')}"
        lines.append(f"job {job_id}: github={sandbox.sim.job(job_id).status} store={state}")
    for r in runner_records(sandbox):
        lines.append(f"runner {r.key}: {r.state} vm={r.data.get('vm_id')} reason={r.data.get('retired_reason')}")
    lines.append(f"launches: {dict(sandbox.vms.launches)}")
    return "\n".join(lines)


def store_rows(sandbox: Sandbox, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query on the embedded store's database: one consistent snapshot (WAL), read-only."""
    assert sandbox.app is not None
    sandbox.app.backend.load("runner", "-")  # the backend creates its tables on first use
    path = sandbox.dir / "state" / "jitr.sqlite3"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    finally:
        conn.close()


def dead_letters(sandbox: Sandbox, queue: str) -> list[tuple[str, str]]:
    """(body, reason) of every dead-lettered message of ``queue``."""
    assert sandbox.app is not None
    return [(m.body, m.attributes.get("dead_letter_reason", "")) for m in sandbox.app.backend.dead_letters(queue)]


# -- webhooks over HTTP ---------------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(
    secret: str | None, body: bytes, event: str = "workflow_job", delivery: str | None = None
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = signature(secret, body)
    return headers


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float = 15.0) -> tuple[int, dict[str, Any]]:
    """POST over a fresh connection; (status, JSON answer)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        conn.request("POST", parts.path or "/", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})
    finally:
        conn.close()


def get(url: str, timeout_s: float = 15.0) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})
    finally:
        conn.close()


# -- small plugins that inject faults through the hooks ------------------------------------------


class NoCapacity:
    """A VM-provider fault: refuses every spot candidate (or every candidate) before the real provider.

    Registered like any plugin; ``tryfirst`` so it sees each launch request before the simulated
    cloud, which answers the requests this plugin lets through.
    """

    def __init__(self, refuse_on_demand: bool = False) -> None:
        self.refuse_on_demand = refuse_on_demand
        self.requests: list[LaunchRequest] = []
        self._lock = threading.Lock()

    @hookimpl(tryfirst=True)
    def jitr_launch_vm(self, request: LaunchRequest, settings: Settings) -> None:
        with self._lock:
            self.requests.append(request)
        if request.spot or self.refuse_on_demand:
            market = "spot" if request.spot else "on-demand"
            raise CapacityError(f"no {market} {request.machine_type} in {request.placement}", "InsufficientCapacity")


class DeletionProtection:
    """A VM-provider fault: the VMs in ``vm_ids`` (every VM while ``all_vms``) refuse to be
    deleted, before the simulated cloud sees the call."""

    def __init__(self, all_vms: bool = False) -> None:
        self.vm_ids: set[str] = set()
        self.all_vms = all_vms

    @hookimpl(tryfirst=True)
    def jitr_terminate_vm(self, vm_id: str, settings: Settings) -> None:
        if self.all_vms or vm_id in self.vm_ids:
            raise BackendError(f"{vm_id} has deletion protection")


class JobsRefused:
    """A queue fault: the jobs queue refuses the messages of the jobs in ``job_ids``."""

    def __init__(self, job_ids: Iterable[int] = ()) -> None:
        self.job_ids = set(job_ids)

    @hookimpl(tryfirst=True)
    def jitr_enqueue(self, queue: str, message: QueueMessage, delay_s: int, settings: Settings) -> None:
        if queue == JOBS_QUEUE and int(message.attributes.get("job_id", 0)) in self.job_ids:
            raise BackendError(f"the jobs queue refused job {message.attributes['job_id']}")


class Gate:
    """Holds a periodic run inside its first store/VM read until released, so two runs surely overlap.

    ``armed_for`` names the read to hold: ``"list_vms"`` (scaledown) or ``"repo-query"`` (rebalancer).
    Terminations are counted, to prove no VM is killed twice.
    """

    def __init__(self) -> None:
        self.armed_for: str | None = None
        self.entered = threading.Event()
        self.release = threading.Event()
        self.terminated: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _hold(self, which: str) -> None:
        if self.armed_for == which:
            self.entered.set()
            self.release.wait(30)

    @hookimpl(tryfirst=True)
    def jitr_list_vms(self, settings: Settings) -> None:
        self._hold("list_vms")

    @hookimpl(tryfirst=True)
    def jitr_query_records(self, query: RecordQuery, settings: Settings) -> None:
        if query.kind == "repo":
            self._hold("repo-query")

    @hookimpl(tryfirst=True)
    def jitr_terminate_vm(self, vm_id: str, settings: Settings) -> None:
        with self._lock:
            self.terminated[vm_id] += 1
