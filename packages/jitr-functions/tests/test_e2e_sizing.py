"""Sizing from labels, end to end: ``runs-on: [self-hosted, linux, x64, c6i.4xlarge]`` through `jitr serve`.

The simulator sends each job's webhook over HTTP; the pool accepts machine-type labels matching
``c6i.*`` and ``cpu=N``/``ram=N`` from its size table. A labelled job launches the labelled type
(its runner registered with the label, or GitHub would not give it the job), a capacity error on
it walks the labelled type over the placements and then on-demand, the pool's cap still holds,
and a label outside the allow-list never reaches the cloud.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from e2e_support import (
    LABELS,
    POOL,
    QUIET,
    NoCapacity,
    describe,
    queue_jobs,
    record,
    runner_records,
    store_rows,
    wait_completed,
    wait_for,
)
from jitr_core.errors import CapacityError
from jitr_core.hookspecs import hookimpl
from jitr_core.model import LaunchRequest
from jitr_core.settings import Settings
from jitr_functions.sandbox import _JIT_IN_SCRIPT, RECORDING

SIZED_POOL: dict[str, Any] = {
    **POOL,
    "machine_type_labels": ["c6i.*", "m7i.2xlarge"],
    "machine_sizes": [
        {"machine_type": "c6i.large", "cpu": 2, "ram": 4},
        {"machine_type": "c6i.2xlarge", "cpu": 8, "ram": 16},
    ],
}
HOLDING_A_VM = "SELECT COUNT(*) FROM records WHERE kind = 'runner' AND state IN ('launched', 'busy') AND pool = ?"


class Launches:
    """Records every launch request before the simulated cloud answers it, and what the pool held then."""

    def __init__(self, sandbox_ref: list[Any] | None = None) -> None:
        self.requests: list[LaunchRequest] = []
        self.holding: list[int] = []
        self.sandbox_ref = sandbox_ref
        self._lock = threading.Lock()

    @hookimpl(tryfirst=True)
    def jitr_launch_vm(self, request: LaunchRequest, settings: Settings) -> None:
        holding = None
        if self.sandbox_ref:
            [(holding,)] = store_rows(self.sandbox_ref[0], HOLDING_A_VM, [request.pool])
        with self._lock:
            self.requests.append(request)
            if holding is not None:
                self.holding.append(int(holding))


def timeline(sandbox: Any, job_id: int) -> list[dict[str, Any]]:
    rec = record(sandbox, "job", job_id)
    assert rec is not None
    return list(rec.data.get("timeline") or [])


def job_state(sandbox: Any, job_id: int) -> str | None:
    rec = record(sandbox, "job", job_id)
    return rec.state if rec is not None else None


def job_attempt(sandbox: Any, job_id: int) -> int | None:
    rec = record(sandbox, "job", job_id)
    return int(rec.data["attempt"]) if rec is not None else None


def test_a_labelled_job_launches_the_labelled_type_and_a_plain_job_the_pools(e2e_sandbox):
    launches = Launches()
    sandbox = e2e_sandbox(pools=[SIZED_POOL], intervals=QUIET, extra_plugins=[("e2e-launches", launches)])
    [sized] = queue_jobs(sandbox, 1, labels=[*LABELS, "C6I.4xlarge"])
    [by_cpu] = queue_jobs(sandbox, 1, labels=["self-hosted", "cpu=4"])
    [plain] = queue_jobs(sandbox, 1)

    wait_completed(sandbox, [sized, by_cpu, plain], 60)

    types = {int(r.labels["jitr-job"]): r.machine_type for r in launches.requests}
    assert types == {sized: "c6i.4xlarge", by_cpu: "c6i.2xlarge", plain: POOL["machine_types"][0]}
    runners = {int(r.data["job_id"]): r for r in runner_records(sandbox)}
    assert runners[sized].data["sizing_labels"] == ["c6i.4xlarge"]
    assert runners[sized].data["machine_type"] == "c6i.4xlarge"
    assert runners[by_cpu].data["sizing_labels"] == ["cpu=4"]
    assert runners[plain].data["sizing_labels"] is None
    # the runner GitHub gave the sized job is the one launched for it (only it carries the label)
    assert runners[sized].data["serving_job_id"] == sized
    [sized_step] = [s for s in timeline(sandbox, sized) if s["event"] == "sized"]
    assert sized_step["labels"] == ["c6i.4xlarge"] and sized_step["machine_types"] == ["c6i.4xlarge"]
    assert not [s for s in timeline(sandbox, plain) if s["event"] == "sized"]


def test_no_spot_capacity_for_the_labelled_type_walks_its_placements_then_on_demand(e2e_sandbox):
    no_spot = NoCapacity()
    sandbox = e2e_sandbox(pools=[SIZED_POOL], intervals=QUIET, extra_plugins=[("e2e-no-spot", no_spot)])
    [job] = queue_jobs(sandbox, 1, labels=[*LABELS, "c6i.4xlarge"])

    wait_completed(sandbox, [job], 60)

    tried = [(r.machine_type, r.placement, r.spot) for r in no_spot.requests]
    assert tried == [
        ("c6i.4xlarge", "zone-a", True),
        ("c6i.4xlarge", "zone-b", True),
        ("c6i.4xlarge", "zone-a", False),
    ]
    [runner] = runner_records(sandbox)
    assert runner.data["machine_type"] == "c6i.4xlarge" and runner.data["spot"] is False
    outcomes = [(s.get("candidate"), s.get("outcome")) for s in timeline(sandbox, job) if s["event"] == "launch"]
    assert outcomes == [
        ("c6i.4xlarge/zone-a/spot", "no-capacity"),
        ("c6i.4xlarge/zone-b/spot", "no-capacity"),
        ("c6i.4xlarge/zone-a/on-demand", "launched"),
    ]


def test_the_pools_cap_holds_for_labelled_jobs(e2e_sandbox):
    ref: list[Any] = []
    launches = Launches(ref)
    capped = {**SIZED_POOL, "max_runners": 2}
    sandbox = e2e_sandbox(
        pools=[capped], intervals=QUIET, settings={"cap_wait_s": 1}, extra_plugins=[("e2e-launches", launches)]
    )
    ref.append(sandbox)
    jobs = queue_jobs(sandbox, 6, labels=[*LABELS, "c6i.8xlarge"])

    wait_completed(sandbox, jobs, 120)

    assert launches.requests and {r.machine_type for r in launches.requests} == {"c6i.8xlarge"}
    # at each launch the pool held fewer VMs than its cap: the launch being made is the cap's last slot at most
    assert max(launches.holding) < capped["max_runners"], launches.holding


def test_a_label_outside_the_allow_list_is_ignored_at_the_webhook_and_never_reaches_the_cloud(e2e_sandbox):
    launches = Launches()
    sandbox = e2e_sandbox(pools=[SIZED_POOL], intervals=QUIET, extra_plugins=[("e2e-launches", launches)])
    hostile = ["m7i.4xlarge", "c6i.4xlarge; rm -rf /", "../x", "c6i." + "x" * 200, "cpu=999", "c6i.$(id)"]
    refused = [queue_jobs(sandbox, 1, labels=[*LABELS, label])[0] for label in hostile]
    [allowed] = queue_jobs(sandbox, 1, labels=[*LABELS, "m7i.2xlarge"])

    wait_completed(sandbox, [allowed], 60)
    wait_for(
        lambda: {d.job_id for d in sandbox.sim.deliveries() if d.ok} >= set(refused),
        30,
        "the refused jobs' webhooks to be answered",
    )

    assert [r.machine_type for r in launches.requests] == ["m7i.2xlarge"]
    assert all(record(sandbox, "job", job_id) is None for job_id in refused)
    assert all(sandbox.sim.job(job_id).status == "queued" for job_id in refused)
    assert sandbox.log_text().count("does not accept") >= len(hostile)


class HoldUnsizedLaunches:
    """Refuses launches on the pool's own machine types until released: a sized job queued later launches first."""

    def __init__(self) -> None:
        self.refused = 0
        self.released = threading.Event()

    @hookimpl(tryfirst=True)
    def jitr_launch_vm(self, request: LaunchRequest, settings: Settings) -> None:
        if request.machine_type in POOL["machine_types"] and not self.released.is_set():
            self.refused += 1
            raise CapacityError(f"no {request.machine_type} in {request.placement}", "InsufficientCapacity")


def test_a_sized_job_whose_runner_an_unsized_job_took_gets_a_sized_runner_again(e2e_sandbox):
    """The sized runner takes the older unsized job; the unsized job's runner lacks the sizing label,
    so the sized job is not handed it (it would wait for ever) but launched for again.

    The sized runner is driven here as the runner agent would, so that its job finishes only once
    jitr has acted on its ``in_progress``.
    """
    hold = HoldUnsizedLaunches()
    launches = Launches()
    sandbox = e2e_sandbox(
        pools=[{**SIZED_POOL, "handoff": "metadata"}],  # the sized runner is driven from its script's config
        intervals=QUIET,
        vm_provider=RECORDING,
        boot_s=None,
        extra_plugins=[("e2e-hold", hold), ("e2e-launches", launches)],
    )
    [plain] = queue_jobs(sandbox, 1)
    wait_for(lambda: hold.refused > 0, 30, "the unsized job's first launch to be refused")
    [sized] = queue_jobs(sandbox, 1, labels=[*LABELS, "c6i.4xlarge"])
    wait_for(lambda: len(sandbox.vms.launches) == 1, 60, "the sized job to be launched for")
    hold.released.set()
    wait_for(lambda: len(sandbox.vms.launches) == 2, 60, "the unsized job to be launched for")
    [sized_launch] = [r for r in launches.requests if r.machine_type == "c6i.4xlarge"]
    jit = _JIT_IN_SCRIPT.search(sized_launch.startup_script)
    assert jit is not None

    agent = sandbox.sim.agent_connect(base64.b64decode(jit.group(1)).decode())
    taken = sandbox.sim.agent_poll(agent.id)
    assert taken is not None and taken.id == plain  # the older job, which the sized runner's labels cover
    wait_for(
        lambda: job_attempt(sandbox, sized) == 2,
        60,
        "the sized job to be launched for again",
        detail=lambda: describe(sandbox, [plain, sized]),
    )
    sandbox.sim.agent_finish(agent.id)
    sandbox.vms.boot()

    wait_completed(sandbox, [plain, sized], 60)
    wait_for(
        lambda: all(job_state(sandbox, job_id) == "completed" for job_id in (plain, sized)),
        60,
        "jitr to record both jobs completed",
        detail=lambda: describe(sandbox, [plain, sized]),
    )

    served = {int(r.data["serving_job_id"]): r for r in runner_records(sandbox) if r.data.get("serving_job_id")}
    assert served[plain].key == sized_launch.runner_name
    assert served[sized].data["sizing_labels"] == ["c6i.4xlarge"] and served[sized].key.endswith("-2")
    [requeued] = [s for s in timeline(sandbox, sized) if s["event"] == "requeued"]
    assert requeued["reason"] == "runner-taken-by-another-job"
