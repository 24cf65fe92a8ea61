"""Runners that exit without taking a job (a bad image, a rejected JIT config): detected by
scaledown, counted once, re-launched once on the next candidate, then dead-lettered.

The fault is a simulated VM whose agent never starts: it ends at once, its JIT config unused,
and reports ``no-job`` the way a startup script tags its VM before deleting it; and, with the
embedded VM provider's local processes, a runner command that exits at once (the process exit is
all that backend reports). Scaledown runs by hand (periodic functions never tick), until the
condition under test holds. A dead letter here is what ``jitr status`` lists.
"""

from __future__ import annotations

import shlex
import socket
import sys
import threading
import time
from collections.abc import Sequence

from e2e_support import (
    LABELS,
    POOL,
    QUIET,
    dead_letters,
    describe,
    logged,
    queue_jobs,
    record,
    running_vms,
    set_faults,
    wait_completed,
    wait_for,
)
from jitr_core.errors import BackendError
from jitr_core.hookspecs import hookimpl
from jitr_core.messages import LIFECYCLE_QUEUE
from jitr_core.metrics import Sample
from jitr_core.model import LaunchRequest, QueueMessage, Scope
from jitr_core.services import ScaledownService
from jitr_core.settings import Settings
from jitr_functions.sandbox import SandboxFaults, VMFaults

REPO = "octo-org/api"
GET_JOB = "GET /repos/{owner}/{repo}/actions/jobs/{job_id}"


class NoJobExitSamples:
    """Keeps the ``runner_no_job_exits`` samples the services emit, as a metrics backend would."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self._lock = threading.Lock()

    @hookimpl
    def jitr_emit_metrics(self, samples: Sequence[Sample], settings: Settings) -> None:
        with self._lock:
            self.samples += [s for s in samples if s.name == "runner_no_job_exits"]

    def counted(self, sandbox) -> list[tuple[tuple[str, str], ...]]:
        sandbox.app.backend.metrics.flush()
        with self._lock:
            return [s.labels for s in self.samples for _ in range(int(s.value))]


def _exits(sandbox, job: int) -> list[dict]:
    rec = record(sandbox, "job", job)
    return list(rec.data.get("no_job_exits") or []) if rec is not None else []


def _state(sandbox, job: int) -> str | None:
    rec = record(sandbox, "job", job)
    return rec.state if rec is not None else None  # None until scaleup wrote the record


def _scaledown_until(sandbox, predicate, what: str, job: int) -> None:
    def passed() -> bool:
        sandbox.app.scaledown.run()
        return bool(predicate())

    wait_for(passed, 60, what, step_s=0.2, detail=lambda: describe(sandbox, [job]))


def _candidate(sandbox, name: str) -> tuple[str, str]:
    data = record(sandbox, "runner", name).data
    return data["machine_type"], data["placement"]


def test_a_runner_that_exits_without_a_job_is_relaunched_on_the_next_candidate(e2e_sandbox):
    metrics = NoJobExitSamples()
    sandbox = e2e_sandbox(
        pools=[POOL],
        intervals=QUIET,
        faults=SandboxFaults(vms=VMFaults(no_job_exits=1)),
        extra_plugins=[("e2e-metrics", metrics)],
    )
    [job] = queue_jobs(sandbox, 1, [REPO])
    first, second = f"jitr-linux-{job}-1", f"jitr-linux-{job}-2"
    wait_for(lambda: first in sandbox.vms.launches and not running_vms(sandbox), 60, "the first VM to end")
    sandbox.sim.reset_call_counts()

    _scaledown_until(sandbox, lambda: _exits(sandbox, job), "the no-job exit to be detected", job)
    wait_completed(sandbox, [job], 60)

    assert sandbox.sim.job(job).runner_name == second
    assert record(sandbox, "runner", first).data["retired_reason"] == "no-job-exit"
    assert _candidate(sandbox, second) != _candidate(sandbox, first)  # not the candidate that failed
    assert _candidate(sandbox, second) == ("m7.large", "zone-b")  # the next one in the chain
    [exit_] = _exits(sandbox, job)
    assert exit_["runner"] == first and "no job" in exit_["reason"] and "queued" in exit_["reason"]
    events = [entry["event"] for entry in record(sandbox, "job", job).data["timeline"]]
    assert "no-job-exit" in events and events.index("no-job-exit") < events.index("in_progress")
    assert sandbox.sim.call_counts().get(GET_JOB) == 1  # one GitHub call, for the suspect only
    assert metrics.counted(sandbox) == [(("pool", "linux"),)]
    assert dict(sandbox.vms.launches) == {first: 1, second: 1}
    assert not dead_letters(sandbox, "jobs")


def test_a_second_no_job_exit_dead_letters_the_job_with_the_reason(e2e_sandbox):
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, faults=SandboxFaults(vms=VMFaults(no_job_exits=2)))
    [job] = queue_jobs(sandbox, 1, [REPO])
    first, second = f"jitr-linux-{job}-1", f"jitr-linux-{job}-2"

    _scaledown_until(sandbox, lambda: _state(sandbox, job) == "dead-lettered", "the job to be dead-lettered", job)

    [(body, reason)] = dead_letters(sandbox, "jobs")
    assert f'"job_id":{job}' in body.replace(" ", "")
    assert "2 times without taking the job" in reason and first in reason and second in reason
    assert [e["runner"] for e in _exits(sandbox, job)] == [first, second]
    timeline = record(sandbox, "job", job).data["timeline"]
    assert timeline[-1]["event"] == "dead-lettered" and "without taking the job" in timeline[-1]["reason"]
    # neither scaledown nor the rebalancer launches for it again, though GitHub still has it queued
    for _ in range(3):
        sandbox.app.scaledown.run()
        sandbox.app.rebalancer.run()
    assert sandbox.sim.job(job).status == "queued"
    assert dict(sandbox.vms.launches) == {first: 1, second: 1}
    assert record(sandbox, "job", job).state == "dead-lettered"
    assert len(dead_letters(sandbox, "jobs")) == 1


def test_a_runner_that_ran_its_job_unseen_is_not_counted(e2e_sandbox):
    """Every webhook is lost: the runner takes its job and ends without jitr seeing it busy.
    GitHub, asked about the job, names this runner: not a no-job exit, and no re-launch."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET)
    wait_completed(sandbox, queue_jobs(sandbox, 1, [REPO]), 60)  # the repository is known to be active
    set_faults(sandbox, drop_webhook=1.0)
    [job] = queue_jobs(sandbox, 1, [REPO])
    name = f"jitr-linux-{job}-1"
    sandbox.app.rebalancer.run()  # the lost queued webhook: the rebalancer finds the job
    wait_completed(sandbox, [job], 60)
    assert record(sandbox, "runner", name).state == "launched"  # jitr never saw it busy

    _scaledown_until(
        sandbox, lambda: record(sandbox, "runner", name).state == "retired", "the runner to be retired", job
    )

    assert not _exits(sandbox, job)
    retired = record(sandbox, "runner", name).data
    # what it did, as a finished runner's record says it
    assert (retired["retired_reason"], retired["serving_job_id"], retired["conclusion"]) == (
        "job-ran-unseen",
        job,
        "success",
    )
    assert sandbox.vms.launches[name] == 1 and f"jitr-linux-{job}-2" not in sandbox.vms.launches
    assert record(sandbox, "job", job).state == "completed"  # caught up with GitHub
    assert not dead_letters(sandbox, "jobs")


def _another_runner_takes(sandbox, job: int) -> None:
    """A runner that is not jitr's (registered by hand, as a user might) takes ``job`` and finishes it."""
    installation = record(sandbox, "job", job).data["installation_id"]
    owner, _, repo = REPO.partition("/")
    config = sandbox.app.github.generate_jit_config(Scope(installation, owner, repo), "someone-else", LABELS, "Default")
    other = sandbox.sim.agent_connect(config.encoded.reveal())
    assert sandbox.sim.agent_poll(other.id, timeout=10).id == job
    sandbox.sim.agent_finish(other.id)


def test_a_vanished_runner_whose_job_another_runner_took_unseen_is_not_launched_for_again(e2e_sandbox):
    """The runner's VM ends without taking its job; another runner takes the job while every webhook
    is lost. GitHub, asked about the job, names that runner: not an exit to count, and no re-launch
    for a job that ran (or, cancelled, needs no runner)."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, faults=SandboxFaults(vms=VMFaults(no_job_exits=2)))
    taken, cancelled = queue_jobs(sandbox, 2, [REPO])
    runners = {job: f"jitr-linux-{job}-1" for job in (taken, cancelled)}
    wait_for(
        lambda: set(runners.values()) <= set(sandbox.vms.launches) and not running_vms(sandbox), 60, "both VMs to end"
    )
    set_faults(sandbox, drop_webhook=1.0)
    _another_runner_takes(sandbox, taken)
    sandbox.sim.cancel_job(cancelled)

    for job, name in runners.items():
        _scaledown_until(
            sandbox,
            lambda name=name: record(sandbox, "runner", name).state == "retired",
            "the runner's retirement",
            job,
        )

    assert [record(sandbox, "runner", name).data["retired_reason"] for name in runners.values()] == ["vm-gone"] * 2
    assert dict(sandbox.vms.launches) == dict.fromkeys(runners.values(), 1)  # nothing launched again
    assert not _exits(sandbox, taken) and not _exits(sandbox, cancelled)
    done, gone = record(sandbox, "job", taken), record(sandbox, "job", cancelled)
    assert (done.state, done.data["runner_name"], done.data["conclusion"]) == ("completed", "someone-else", "success")
    assert (gone.state, gone.data["conclusion"]) == ("cancelled", "cancelled")
    assert done.data["timeline"][-1]["via"] == "github" and gone.data["timeline"][-1]["via"] == "github"
    assert not dead_letters(sandbox, "jobs")


_TAKER_FAULTS = SandboxFaults(vms=VMFaults(no_job_exits=1, job_seconds=(600.0, 600.0)))


def _first_job_taken_by_the_seconds_runner(sandbox) -> tuple[int, int, str, str]:
    """The first job's VM ends without taking it, then, every webhook lost, the runner launched for
    a second job takes the first: (first, second, the vanished runner, the taker)."""
    [first] = queue_jobs(sandbox, 1, [REPO])
    vanished = f"jitr-linux-{first}-1"
    wait_for(lambda: vanished in sandbox.vms.launches and not running_vms(sandbox), 60, "the first VM to end")
    set_faults(sandbox, drop_webhook=1.0)
    [second] = queue_jobs(sandbox, 1, [REPO])
    sandbox.app.rebalancer.run()  # the lost queued webhook: the rebalancer finds the job
    taker = f"jitr-linux-{second}-1"
    wait_for(lambda: sandbox.sim.job(first).status == "in_progress", 60, "a runner to take the first job")
    assert sandbox.sim.job(first).runner_name == taker
    return first, second, vanished, taker


class LifecycleQueueDown:
    """While armed, the lifecycle queue refuses every message."""

    armed = False

    @hookimpl(tryfirst=True)
    def jitr_enqueue(self, queue: str, message: QueueMessage, delay_s: int, settings: Settings) -> None:
        if self.armed and queue == LIFECYCLE_QUEUE:
            raise BackendError("the lifecycle queue is unavailable")


def test_a_vanished_runner_whose_job_another_jitr_runner_took_unseen_gets_that_runners_job_a_runner(e2e_sandbox):
    """The first job's VM ends without taking it; the runner launched for the second job, while
    every webhook is lost, takes the first (GitHub hands a runner the oldest job it can run).
    Scaledown, finding the first VM gone, learns from GitHub which runner took its job and hands
    lifecycle the lost ``in_progress``: the second job is launched for again while that runner still
    runs the first, instead of once its VM is gone too, with an exit without a job counted."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, faults=_TAKER_FAULTS)
    first, second, vanished, taker = _first_job_taken_by_the_seconds_runner(sandbox)

    _scaledown_until(
        sandbox, lambda: record(sandbox, "runner", vanished).state == "retired", "the runner's retirement", first
    )
    again = f"jitr-linux-{second}-2"
    wait_for(
        lambda: again in sandbox.vms.launches,
        60,
        "a runner for the second job",
        detail=lambda: describe(sandbox, [first, second]),
    )

    assert sandbox.sim.job(first).status == "in_progress"  # the taker still runs it
    assert record(sandbox, "runner", taker).state == "busy"
    assert record(sandbox, "runner", vanished).data["retired_reason"] == "vm-gone"
    assert record(sandbox, "job", first).state == "running"
    assert not _exits(sandbox, first) and not _exits(sandbox, second)
    requeued = [e for e in record(sandbox, "job", second).data["timeline"] if e["event"] == "requeued"]
    assert [e["reason"] for e in requeued] == ["runner-taken-by-another-job"]


def test_a_lost_webhook_that_cannot_be_replayed_leaves_the_takers_job_to_the_usual_path(e2e_sandbox):
    """As above, but the lifecycle queue refuses the replayed ``in_progress``: the pass goes on and
    counts no error, the job record still catches up, and the second job waits for the usual path
    (launched again once its taker's VM is gone) instead of failing every later pass."""
    down = LifecycleQueueDown()
    sandbox = e2e_sandbox(
        pools=[POOL], intervals=QUIET, faults=_TAKER_FAULTS, extra_plugins=[("e2e-lifecycle-down", down)]
    )
    first, second, vanished, taker = _first_job_taken_by_the_seconds_runner(sandbox)
    down.armed = True
    reports = []

    def retired() -> bool:
        reports.append(sandbox.app.scaledown.run())
        return record(sandbox, "runner", vanished).state == "retired"

    wait_for(retired, 60, "the runner's retirement", step_s=0.2, detail=lambda: describe(sandbox, [first]))

    assert not [r for r in reports if "errors" in r], reports
    assert record(sandbox, "runner", vanished).data["retired_reason"] == "vm-gone"
    assert record(sandbox, "job", first).state == "running"  # caught up with GitHub all the same
    [line] = logged(sandbox, "lost webhook not replayed")
    assert (line["level"], line["runner_name"], line["launched_for"]) == ("WARNING", taker, second)
    assert f"jitr-linux-{second}-2" not in sandbox.vms.launches
    assert record(sandbox, "runner", taker).state == "launched"  # the records still have it waiting for its own


class LoseWebhooksFromLaunch:
    """Every webhook is lost from the moment a VM is asked for, before its runner can take a job."""

    sandbox = None

    @hookimpl(tryfirst=True)
    def jitr_launch_vm(self, request: LaunchRequest, settings: Settings) -> None:
        set_faults(self.sandbox, drop_webhook=1.0)


def test_a_vanished_runner_that_reported_another_job_is_not_counted_and_its_job_is_launched_again(e2e_sandbox):
    """The runner takes an older job jitr never heard of, instead of its own, every webhook lost; its
    VM reports that a job ran. GitHub still has its own job queued: no exit is counted (the runner
    did run a job), and the job is launched for again as any vanished runner's."""
    lose = LoseWebhooksFromLaunch()
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, extra_plugins=[("e2e-lose", lose)])
    lose.sandbox = sandbox
    set_faults(sandbox, drop_webhook=1.0)
    [unseen] = queue_jobs(sandbox, 1, [REPO])  # its queued webhook lost: jitr never hears of it
    set_faults(sandbox)
    [job] = queue_jobs(sandbox, 1, [REPO])
    first = f"jitr-linux-{job}-1"
    wait_completed(sandbox, [unseen], 60)  # GitHub handed the older job to the runner launched for the newer
    wait_for(lambda: first in sandbox.vms.launches and not running_vms(sandbox), 60, "the first VM to end")
    assert sandbox.sim.job(job).status == "queued"

    _scaledown_until(
        sandbox, lambda: record(sandbox, "runner", first).state == "retired", "the runner's retirement", job
    )
    wait_completed(sandbox, [job], 60)

    assert record(sandbox, "runner", first).data["retired_reason"] == "vm-gone"
    assert not _exits(sandbox, job)
    assert sandbox.vms.launches[f"jitr-linux-{job}-2"] == 1
    assert not dead_letters(sandbox, "jobs")


def test_when_github_cannot_be_asked_the_usual_repair_applies_and_nothing_is_counted(e2e_sandbox):
    """GitHub refuses the job read (a 404 from a repository the App lost): no exit is written and
    the runner goes the way of any vanished VM, its job launched again."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, faults=SandboxFaults(vms=VMFaults(no_job_exits=1)))
    [job] = queue_jobs(sandbox, 1, [REPO])
    first = f"jitr-linux-{job}-1"
    wait_for(lambda: first in sandbox.vms.launches and not running_vms(sandbox), 60, "the first VM to end")
    sandbox.sim.fail_next(1, 404, path_contains=f"/actions/jobs/{job}")

    _scaledown_until(
        sandbox, lambda: record(sandbox, "runner", first).state == "retired", "the runner to be retired", job
    )
    wait_completed(sandbox, [job], 60)

    assert record(sandbox, "runner", first).data["retired_reason"] == "vm-gone"
    assert not _exits(sandbox, job)
    assert not dead_letters(sandbox, "jobs")


class Together:
    """Holds each scaledown pass at its VM listing until both passes are there, so they surely overlap."""

    def __init__(self) -> None:
        self.barrier: threading.Barrier | None = None

    @hookimpl(tryfirst=True)
    def jitr_list_vms(self, settings: Settings) -> None:
        if self.barrier is not None:
            self.barrier.wait(30)


def test_overlapping_scaledown_passes_count_an_exit_once(e2e_sandbox):
    """Two passes at once, as if the lease had expired under a slow one, and more after: one
    exit written, one re-launch."""
    together, metrics = Together(), NoJobExitSamples()
    sandbox = e2e_sandbox(
        pools=[POOL],
        intervals=QUIET,
        faults=SandboxFaults(vms=VMFaults(no_job_exits=1)),
        extra_plugins=[("e2e-together", together), ("e2e-metrics", metrics)],
    )
    [job] = queue_jobs(sandbox, 1, [REPO])
    first, second = f"jitr-linux-{job}-1", f"jitr-linux-{job}-2"
    wait_for(lambda: first in sandbox.vms.launches and not running_vms(sandbox), 60, "the first VM to end")
    app = sandbox.app
    grace = app.backend.settings.ghost_grace_s

    def past_grace() -> bool:  # the VM may end before its launch is recorded
        launched_at = record(sandbox, "runner", first).data.get("launched_at")
        return launched_at is not None and time.time() - launched_at > grace

    wait_for(past_grace, 60, "the grace")

    together.barrier = threading.Barrier(2)
    reports: list[dict] = []
    # past the lease: each pass runs as if it held it
    passes = [ScaledownService(app.backend, app.github) for _ in range(2)]
    threads = [threading.Thread(target=lambda s=s: reports.append(s._run())) for s in passes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    together.barrier = None
    for _ in range(3):
        app.scaledown.run()
    wait_completed(sandbox, [job], 60)

    assert sum(r.get("no-job-exits", 0) for r in reports) == 1, reports
    assert len(metrics.counted(sandbox)) == 1
    assert len(_exits(sandbox, job)) == 1
    assert record(sandbox, "job", job).data["attempt"] == 2
    assert dict(sandbox.vms.launches) == {first: 1, second: 1}


# -- real local processes: the embedded VM provider, its runner command as the fault ---------------

AGENT = f"{sys.executable} -m jitr_github.simulator.agent --job-seconds 0.1 --wait-seconds 30"
LOCAL_POOL = {**POOL, "machine_types": ["local-a", "local-b"], "placements": []}


def _local_sandbox(e2e_sandbox, runner_command: str):
    """A sandbox whose VMs are local processes (``[embedded] runner_command``), not simulated ones."""
    return e2e_sandbox(
        pools=[LOCAL_POOL],
        intervals=QUIET,
        settings={
            "vm_provider": "embedded",
            "embedded": {"runner_command": runner_command, "launch_grace_s": "1", "terminate_grace_s": "1"},
        },
    )


def _local_candidate(sandbox, name: str) -> str:
    return record(sandbox, "runner", name).data["machine_type"]


def test_a_local_runner_command_that_exits_at_once_is_relaunched_then_completes(e2e_sandbox, tmp_path):
    """The first process exits without running the agent (as a rejected JIT config would); the
    second runs it. The process exit is all the embedded backend reports."""
    once = tmp_path / "failed-once"
    sandbox = _local_sandbox(e2e_sandbox, f"mkdir {shlex.quote(str(once))} 2>/dev/null && exit 0; exec {AGENT}")
    [job] = queue_jobs(sandbox, 1, [REPO])
    first, second = f"jitr-linux-{job}-1", f"jitr-linux-{job}-2"
    wait_for(once.exists, 60, "the first runner command to exit")

    _scaledown_until(sandbox, lambda: _exits(sandbox, job), "the no-job exit to be detected", job)
    wait_completed(sandbox, [job], 60)

    assert sandbox.sim.job(job).runner_name == second
    assert (_local_candidate(sandbox, first), _local_candidate(sandbox, second)) == ("local-a", "local-b")
    assert "VM gone without the runner going busy" in _exits(sandbox, job)[0]["reason"]
    assert not dead_letters(sandbox, "jobs")
    _scaledown_until(sandbox, lambda: not running_vms(sandbox), "every local VM to end", job)


def test_a_local_runner_command_that_always_exits_dead_letters_the_job(e2e_sandbox):
    sandbox = _local_sandbox(e2e_sandbox, "exit 0")
    [job] = queue_jobs(sandbox, 1, [REPO])

    _scaledown_until(sandbox, lambda: _state(sandbox, job) == "dead-lettered", "the job to be dead-lettered", job)

    [(_, reason)] = dead_letters(sandbox, "jobs")
    assert f"jitr-linux-{job}-1 on local-a/-/spot" in reason and f"jitr-linux-{job}-2 on local-b/-/spot" in reason
    assert sandbox.sim.job(job).status == "queued"
    assert not running_vms(sandbox)


def test_a_vm_that_cannot_reach_the_broker_is_an_exit_that_names_the_broker(e2e_sandbox):
    """The startup script of a broker pool's VM finds nothing at ``broker_url``, gives up after its
    deadline and ends: no runner was ever registered, and the exit's reason says where to look."""
    with socket.socket() as closed:  # a port nothing listens on once the socket is closed
        closed.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}/broker"
    sandbox = e2e_sandbox(
        pools=[{**LOCAL_POOL, "handoff": "broker"}],
        intervals=QUIET,
        settings={
            "vm_provider": "embedded",
            "broker_url": nowhere,
            "boot_timeout_s": 2,  # the script's deadline for the broker
            "embedded": {"runner_command": AGENT, "launch_grace_s": "1", "terminate_grace_s": "1"},
        },
    )
    [job] = queue_jobs(sandbox, 1, [REPO])

    _scaledown_until(sandbox, lambda: _exits(sandbox, job), "the exit to be detected", job)

    [exit_] = _exits(sandbox, job)
    assert exit_["runner"] == f"jitr-linux-{job}-1"
    assert "without fetching its JIT config from the broker" in exit_["reason"], exit_
    assert not [r for r in sandbox.sim.runners() if r.name.startswith("jitr-")]  # nothing was registered
