"""Warm pools end to end on ``jitr serve``: booted local VMs wait at the broker and take jobs.

The deployment of :mod:`broker_support` (local-process VMs, the broker at ``POST /broker``, the
GitHub simulator over HTTP) with a pool that keeps warm VMs. Scaledown, which fills and trims the
pool, is run by the tests. Checked: a burst larger than the pool (warm VMs first, then cold, every
job once, the pool refilled); two scaleups racing for one warm VM; a warm VM dying once assigned;
scaledown retiring a VM a job just took (it may not); idle retirement, and a VM that refuses to be
deleted; windows and a VM dying while it waits; the caps counting warm VMs, and a cold launch
making room under them; overlapping refills; the warm VMs of a pool no longer configured; a GCE
preemption naming a warm VM its runner took; the broker holding a warm VM's call only for that
VM's own identity.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from broker_support import RUNNER_COMMAND, Deployment, ask, start_deployment, stop_deployment, vm_token
from e2e_support import LABELS, DeletionProtection, wait_for
from jitr_core.errors import CapacityError, PassIncomplete
from jitr_core.hookspecs import hookimpl
from jitr_core.model import LaunchRequest, Record, RecordQuery
from jitr_core.services.warm import ASSIGNED, RETIRING, WAITING, WARM, WarmPools
from jitr_core.settings import Settings
from jitr_core.testing.environment import deadline_s
from jitr_functions.app import build_app


def _pool(**warm: Any) -> dict[str, Any]:
    return {
        "name": "linux",
        "labels": LABELS,
        "machine_types": ["local"],
        "max_runners": 10,
        "handoff": "broker",
        **warm,
    }


@pytest.fixture
def warm_deployment(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    started: list[Deployment] = []

    def start(
        pool: dict[str, Any],
        plugins: tuple[tuple[str, object], ...] = (),
        extra_pools: tuple[dict[str, Any], ...] | list[dict[str, Any]] = (),
        **extra: Any,
    ) -> Deployment:
        extra.setdefault("warm_hold_s", 2)
        started.append(start_deployment(tmp_path, [pool, *extra_pools], plugins=plugins, **extra))
        return started[-1]

    yield start
    for d in reversed(started):
        stop_deployment(d)


def warm_records(d: Deployment, state: str = WAITING) -> list[Record]:
    return list(d.app.backend.query_all(RecordQuery(WARM, state, limit=500)))


def polling(d: Deployment, count: int) -> list[Record]:
    """Wait until ``count`` warm VMs are launched, recorded and waiting at the broker."""
    return wait_for(
        lambda: (ready := [r for r in warm_records(d) if r.data.get("asked_at")]) and len(ready) == count and ready,
        60,
        f"{count} warm VMs launched",
        detail=lambda: [(r.key, r.state, r.data) for r in warm_records(d)],
    )


def running_vm_ids(d: Deployment) -> set[str]:
    return {vm.vm_id for vm in d.app.backend.list_vms() if vm.running}


def assert_each_job_once(d: Deployment, jobs: list[int]) -> None:
    """0 lost (every job completed on GitHub) and 0 duplicates (one finished runner per job, one VM per runner name)."""
    wait_for(lambda: all(d.sim.job(j).status == "completed" for j in jobs), 120, "every job to complete")
    finished = wait_for(
        lambda: (done := [r for r in d.runners() if r.state == "finished"]) and len(done) >= len(jobs) and done,
        60,
        "a finished runner per job",
    )
    served = Counter(int(r.data["serving_job_id"]) for r in finished)
    assert served == Counter(jobs), served
    names = Counter(name for _, name, _, _, _ in d.vm_rows())
    assert set(names.values()) == {1}, names  # never two VMs under one name
    by_vm = Counter(r.data["vm_id"] for r in d.runners() if r.data.get("vm_id"))
    assert set(by_vm.values()) == {1}, by_vm  # never one VM for two runners


class NoWarmCapacity:
    """While armed, the cloud has no capacity for warm VMs: the pool cannot refill during a burst."""

    def __init__(self) -> None:
        self.armed = False

    @hookimpl(tryfirst=True)
    def jitr_launch_vm(self, request: LaunchRequest, settings: Settings) -> None:
        if self.armed and request.labels.get("jitr-job") == "warm":
            raise CapacityError("no capacity for warm VMs now", "InsufficientCapacity")


def test_a_burst_larger_than_the_pool_takes_the_warm_vms_first_then_launches_cold(warm_deployment):
    no_refill = NoWarmCapacity()
    d = warm_deployment(_pool(warm=2), plugins=(("no-warm-capacity", no_refill),))
    d.app.scaledown.run()
    first = {r.data["vm_id"] for r in polling(d, 2)}
    no_refill.armed = True

    jobs = [d.sim.queue_job("octo-org/api", LABELS, name=f"burst-{i}") for i in range(5)]
    assert_each_job_once(d, jobs)

    warm_runners = [r for r in d.runners() if r.data.get("warm_vm")]
    assert {r.data["vm_id"] for r in warm_runners} == first  # both warm VMs served jobs
    assert len(d.runners()) - len(warm_runners) >= 3  # the rest launched cold
    assert all(r.data["handoff"] == "handed" for r in d.runners())
    no_refill.armed = False

    def refilled() -> bool:
        d.app.scaledown.run()
        ready = [r for r in warm_records(d) if r.data.get("vm_id") in running_vm_ids(d)]
        return len(ready) == 2 and not warm_records(d, ASSIGNED)

    wait_for(refilled, 60, "the pool back at 2 warm VMs", step_s=0.3)
    assert not {r.data["vm_id"] for r in warm_records(d)} & first  # new VMs, not the ones used


class HoldFirstClaim:
    """Holds the first write that assigns a warm VM until a second assignment of that VM was tried."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.second_tried = threading.Event()
        self.lock = threading.Lock()

    @hookimpl(tryfirst=True)
    def jitr_store_runner(self, record: Record, expected_version: int | None, settings: Settings) -> None:
        if record.kind != WARM or record.state != ASSIGNED:
            return
        with self.lock:
            mine = self.first is None
            if mine:
                self.first = str(record.data["runner_name"])
        if mine:
            self.second_tried.wait(deadline_s(60))
        else:
            self.second_tried.set()


def test_two_scaleups_racing_for_one_warm_vm_give_it_to_one_job(warm_deployment):
    hold = HoldFirstClaim()
    # the held job's message comes back while its write is held (visibility 1 s): with the
    # deployments' 2 s claim timeout, a busy machine let that copy take the held claim over and win
    # the VM as the second writer; the race under test is between the two jobs
    d = warm_deployment(_pool(warm=1), plugins=(("hold-first-claim", hold),), claim_timeout_s=120)
    d.app.scaledown.run()
    [warm] = polling(d, 1)

    jobs = [d.sim.queue_job("octo-org/api", LABELS, name=f"race-{i}") for i in range(2)]
    assert_each_job_once(d, jobs)

    assert hold.second_tried.is_set()
    holders = [r for r in d.runners() if r.data.get("vm_id") == warm.data["vm_id"]]
    assert len(holders) == 1  # one job got the VM; the other launched cold
    assert holders[0].data["warm_vm"] == warm.key and holders[0].key != hold.first


class KillOnAssignment:
    """The warm VM dies the moment a job takes it (its assignment is written)."""

    def __init__(self) -> None:
        self.killed: list[str] = []
        self.backend: Any = None

    @hookimpl(tryfirst=True)
    def jitr_store_runner(self, record: Record, expected_version: int | None, settings: Settings) -> None:
        if record.kind == WARM and record.state == ASSIGNED and not self.killed:
            self.killed.append(str(record.data["vm_id"]))
            self.backend.terminate_vm(str(record.data["vm_id"]))


def test_a_warm_vm_dying_once_assigned_leaves_its_job_launched_again(warm_deployment):
    kill = KillOnAssignment()
    d = warm_deployment(_pool(warm=1), plugins=(("kill-on-assignment", kill),))
    kill.backend = d.app.backend
    d.app.scaledown.run()
    polling(d, 1)

    job = d.sim.queue_job("octo-org/api", LABELS, name="warm-vm-dies")

    def completed() -> bool:
        d.app.scaledown.run()
        return d.sim.job(job).status == "completed"

    wait_for(completed, 120, "the job to complete on a new attempt", step_s=0.5, detail=d.log.getvalue)
    [dead] = kill.killed
    by_vm = {r.data.get("vm_id"): r for r in d.runners()}
    assert by_vm[dead].state == "retired" and by_vm[dead].key == f"jitr-linux-{job}-1"
    assert_each_job_once(d, [job])


class HoldScaledown:
    """Holds scaledown's VM listing until released, so an assignment lands while it is under way."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    @hookimpl(tryfirst=True)
    def jitr_list_vms(self, settings: Settings) -> None:
        if self.armed:
            self.armed = False
            self.entered.set()
            self.release.wait(30)


def test_scaledown_never_retires_a_warm_vm_a_job_just_took(warm_deployment):
    """Scaledown reads the pool, a job takes the VM, scaledown then wants it gone (idle and extra): it stays."""
    gate = HoldScaledown()
    d = warm_deployment(_pool(warm=1, warm_max_idle_s=60), plugins=(("hold-scaledown", gate),))
    d.app.scaledown.run()
    [warm] = polling(d, 1)

    # scaledown, an hour later (the VM idle past its maximum), holds inside its pass
    later = d.app.scaledown.clock() + 3600
    pass_ = type(d.app.scaledown)(d.app.backend, d.app.github, clock=lambda: later)
    wants_gone = [r for r in warm_records(d)]
    assert [r.key for r in wants_gone] == [warm.key]
    gate.armed = True
    result: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: result.append(pass_._run()))
    thread.start()
    assert gate.entered.wait(30)
    job = d.sim.queue_job("octo-org/api", LABELS, name="overlap")
    wait_for(lambda: warm_records(d, ASSIGNED) or d.sim.job(job).status != "queued", 60, "the job to take the VM")
    # the records scaledown read before the assignment: its retirement must lose the race
    assert not WarmPools(d.app.backend, pass_.store).retire(wants_gone[0], "idle")
    gate.release.set()
    thread.join(60)

    assert_each_job_once(d, [job])
    [runner] = [r for r in d.runners() if r.data.get("job_id") == job]
    assert runner.data.get("warm_vm") == warm.key and runner.data.get("retired_reason") is None


def test_an_idle_warm_vm_is_retired_and_replaced(warm_deployment):
    d = warm_deployment(_pool(warm=1, warm_max_idle_s=60))
    d.app.scaledown.run()
    [old] = polling(d, 1)

    later = d.app.scaledown.clock() + 120
    report = type(d.app.scaledown)(d.app.backend, d.app.github, clock=lambda: later).run()

    assert report.get("warm-idle") == 1 and report.get("warm-launched") == 1, report
    wait_for(lambda: old.data["vm_id"] not in running_vm_ids(d), 30, "the idle VM to end")
    [new] = polling(d, 1)
    assert new.key != old.key


def test_a_warm_vm_that_cannot_be_deleted_leaves_the_pool_and_goes_once_it_can(warm_deployment):
    protection = DeletionProtection()
    d = warm_deployment(_pool(warm=1, warm_max_idle_s=60), plugins=(("deletion-protection", protection),))
    d.app.scaledown.run()
    [old] = polling(d, 1)
    protection.vm_ids.add(old.data["vm_id"])
    later = d.app.scaledown.clock() + 120

    with pytest.raises(PassIncomplete) as incomplete:
        type(d.app.scaledown)(d.app.backend, d.app.github, clock=lambda: later).run()

    report = incomplete.value.report
    assert report.get("errors") == 1 and "warm-idle" not in report, report
    # out of the pool, so no job is handed it; its retirement stopped half-way, the VM runs
    assert old.key not in {r.key for r in warm_records(d)}
    assert [r.key for r in warm_records(d, RETIRING)] == [old.key]
    assert old.data["vm_id"] in running_vm_ids(d)

    protection.vm_ids.clear()
    much_later = later + d.app.settings.claim_timeout_s + 1
    report = type(d.app.scaledown)(d.app.backend, d.app.github, clock=lambda: much_later).run()

    assert report.get("warm-retired") == 1 and "errors" not in report, report
    wait_for(lambda: old.data["vm_id"] not in running_vm_ids(d), 30, "the VM to end once it can")
    assert not warm_records(d, RETIRING)


def test_windows_set_the_count_and_a_vm_that_dies_waiting_is_replaced(warm_deployment):
    # Mondays 08:00-10:00 UTC: 2 warm VMs; otherwise none
    window = {"days": ["mon"], "start_hour": 8, "end_hour": 10, "count": 2}
    d = warm_deployment(_pool(warm=0, warm_windows=[window], warm_max_idle_s=86400))
    monday_9 = 1_767_603_600.0  # 2026-01-05 09:00 UTC, a Monday
    at = [monday_9]
    scaledown = type(d.app.scaledown)(d.app.backend, d.app.github, clock=lambda: at[0])

    assert scaledown.run().get("warm-launched") == 2
    vms = polling(d, 2)
    d.app.backend.terminate_vm(str(vms[0].data["vm_id"]))  # one dies while waiting
    wait_for(lambda: vms[0].data["vm_id"] not in running_vm_ids(d), 30, "the VM to end")
    at[0] = monday_9 + 60  # past ghost_grace_s
    report = scaledown.run()
    assert report.get("warm-vm-gone") == 1 and report.get("warm-launched") == 1, report
    polling(d, 2)

    at[0] = monday_9 + 2 * 3600  # 11:00: out of the window
    assert scaledown.run().get("warm-extra") == 2
    wait_for(lambda: not warm_records(d) and not running_vm_ids(d), 30, "every warm VM gone")


def test_warm_vms_count_against_the_caps(warm_deployment):
    """A pool of 2 at most, both warm: the job that takes one leaves no room for a refill until it ends."""
    d = warm_deployment(_pool(warm=2, max_runners=2))
    d.app.scaledown.run()
    polling(d, 2)
    assert "warm-launched" not in d.app.scaledown.run()  # full: nothing more

    job = d.sim.queue_job("octo-org/api", LABELS, name="capped")
    wait_for(lambda: any(r.data.get("job_id") == job for r in d.runners()), 60, "the job to take a warm VM")
    runs = d.app.scaledown.run()
    assert "warm-launched" not in runs and len(warm_records(d)) == 1, runs  # 1 runner + 1 warm VM = the cap
    assert_each_job_once(d, [job])

    def refilled() -> bool:
        d.app.scaledown.run()
        return len([r for r in warm_records(d) if r.data.get("vm_id") in running_vm_ids(d)]) == 2

    wait_for(refilled, 60, "the pool refilled once the runner ended", step_s=0.3)


class SlowFirstWarmLaunch:
    """The first warm launch takes until released, as a cloud launch takes seconds."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.in_first = threading.Event()
        self.release = threading.Event()

    @hookimpl(tryfirst=True)
    def jitr_launch_vm(self, request: LaunchRequest, settings: Settings) -> None:
        if request.labels.get("jitr-job") != "warm":
            return
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.in_first.set()
            self.release.wait(deadline_s(30))


def test_overlapping_refills_launch_no_more_than_the_pool_lacks(warm_deployment):
    """A refill whose first launch is under way while another refill runs (scaleups refill after
    each warm VM they take, scaledown too) launches only what is still lacking after it."""
    slow = SlowFirstWarmLaunch()
    d = warm_deployment(_pool(warm=2, max_runners=2), plugins=(("slow-first-warm-launch", slow),))
    pool = d.app.settings.pools[0]
    pools = WarmPools(d.app.backend, d.app.scaledown.store)
    first = threading.Thread(target=pools.replenish, args=(pool, 0.0))
    first.start()
    assert slow.in_first.wait(deadline_s(30))
    assert pools.replenish(pool, 0.0) == 1  # the other refill: one is being launched already
    slow.release.set()
    first.join(deadline_s(30))
    assert slow.calls == 2 and len(warm_records(d)) == 2
    polling(d, 2)


def test_the_warm_vms_of_a_pool_no_longer_configured_are_retired(warm_deployment):
    """A pool renamed (or removed) leaves its warm VMs behind: scale-down retires them, and the
    room they held under the global cap goes to the pools configured now."""
    d = warm_deployment(_pool(warm=1), max_runners=1)
    d.app.scaledown.run()
    [old] = polling(d, 1)
    renamed = replace(d.app.settings, pools=(replace(d.app.settings.pools[0], name="renamed"),))
    app = build_app(renamed, environ={}, log_stream=io.StringIO())

    report = app.scaledown.run()
    assert report.get("warm-unconfigured") == 1 and report.get("warm-launched") == 1, report
    assert [r.pool for r in warm_records(d)] == ["renamed"]
    wait_for(lambda: old.data["vm_id"] not in running_vm_ids(d), 30, "the old pool's warm VM to end")


def test_a_gce_preemption_of_a_warm_vm_reaches_the_runner_that_took_it(warm_deployment, tmp_path):
    """GCE names the preempted instance, and a warm VM keeps its warm name under the runner that
    took it: the notice is that runner's (marked interrupted), not a VM jitr does not know."""
    long_job = RUNNER_COMMAND.replace("--job-seconds 0.2", "--job-seconds 5")  # busy long enough to be preempted
    assert long_job != RUNNER_COMMAND
    embedded = {"state_dir": str(tmp_path / "state"), "runner_command": long_job, "launch_grace_s": 1}
    d = warm_deployment(_pool(warm=1), embedded=embedded)
    d.app.scaledown.run()
    [warm] = polling(d, 1)
    job = d.sim.queue_job("octo-org/api", LABELS, name="preempted")
    runner = wait_for(
        lambda: next((r for r in d.runners() if r.data.get("warm_vm") == warm.key and r.state == "busy"), None),
        60,
        "the job's runner busy on the warm VM",
    )
    entry = json.loads((Path(__file__).parent / "fixtures/gcp/gce-preempted-log-entry.json").read_text())
    entry["protoPayload"]["resourceName"] = f"projects/jitr-test/zones/us-central1-a/instances/{warm.key}"

    assert d.app.lifecycle.handle(json.dumps(entry)) != "not-our-vm"
    assert d.runner(runner.key).data["interruption"] == "gcp:preempted"
    assert_each_job_once(d, [job])


def test_a_warm_vm_is_held_only_with_its_own_identity(warm_deployment):
    """Played with the VMs' tokens: another VM's, a forged one or an unknown warm name get nothing."""
    d = warm_deployment(_pool(warm=2), warm_hold_s=1)
    d.app.scaledown.run()
    first, second = polling(d, 2)
    _, token = vm_token(d, first.key)
    vm_id = str(first.data["vm_id"])

    assert ask(d, first.key, token)[0] == 204  # its own name: held, then "ask again"
    assert ask(d, second.key, token)[0] == 403  # a real VM asking under another warm VM's name
    assert ask(d, first.key, f"{vm_id}.{'A' * 43}")[0] == 401  # forged
    assert ask(d, "jitr-linux-warm-0000000000", token)[0] == 410  # no such warm VM (retired, or never)
    assert token not in d.log.getvalue()
    assert {r.key for r in warm_records(d)} == {first.key, second.key}  # nothing was taken


def test_a_cold_launch_retires_the_warm_vm_it_would_put_over_the_global_cap(warm_deployment):
    gpu = {"name": "gpu", "labels": ["self-hosted", "gpu"], "machine_types": ["local"], "max_runners": 5}
    d = warm_deployment(_pool(warm=1), max_runners=1, extra_pools=[gpu])
    d.app.scaledown.run()
    [warm] = polling(d, 1)

    job = d.sim.queue_job("octo-org/api", ["self-hosted", "gpu"], name="cold-under-the-cap")
    assert_each_job_once(d, [job])

    assert warm.key not in {r.key for r in warm_records(d)}  # retired for the cold launch
    [runner] = [r for r in d.runners() if r.data.get("job_id") == job]
    assert runner.pool == "gpu" and runner.data.get("warm_vm") is None
    wait_for(lambda: warm.data["vm_id"] not in running_vm_ids(d), 30, "the warm VM to end")


class RecordLaunches:
    """Notes every launch request (the embedded provider then makes the VM)."""

    def __init__(self) -> None:
        self.requests: list[LaunchRequest] = []

    @hookimpl(tryfirst=True)
    def jitr_launch_vm(self, request: LaunchRequest, settings: Settings) -> None:
        self.requests.append(request)


class BootedEarlier:
    """The cloud lists VM ``vm_id`` as booted ``by_s`` seconds before it did: a VM that waited that long."""

    def __init__(self) -> None:
        self.vm_id = ""
        self.by_s = 0.0

    @hookimpl(wrapper=True)
    def jitr_list_vms(self, settings: Settings) -> Any:
        listed = yield
        return [replace(vm, created_at=vm.created_at - self.by_s) if vm.vm_id == self.vm_id else vm for vm in listed]


def test_a_job_on_a_warm_vm_gets_its_lifetime_from_its_assignment_and_the_vm_no_more_than_its_wait_and_a_job(
    warm_deployment, tmp_path
):
    """The pool's ``max_lifetime_s`` limits the job, however long its warm VM waited: the VM may live
    the warm deadline and a whole job from its boot (its provider's own limit), scaledown counts
    the job's lifetime from its assignment, and retires a VM past the warm deadline plus a job."""
    launches, booted = RecordLaunches(), BootedEarlier()
    long_job = RUNNER_COMMAND.replace("--job-seconds 0.2", "--job-seconds 60")  # busy through the passes
    embedded = {"state_dir": str(tmp_path / "state"), "runner_command": long_job, "launch_grace_s": 1}
    plugins = (("record-launches", launches), ("booted-earlier", booted))
    d = warm_deployment(_pool(warm=1, max_lifetime_s=300), plugins=plugins, embedded=embedded)
    settings, pool = d.app.settings, d.app.settings.pools[0]
    deadline, lifetime = settings.warm_deadline_s(pool), pool.max_lifetime_s
    d.app.scaledown.run()
    [warm] = polling(d, 1)
    [request] = [r for r in launches.requests if r.runner_name == warm.key]
    assert request.max_lifetime_s == deadline + lifetime

    d.sim.queue_job("octo-org/api", LABELS, name="long-after-boot")
    runner = wait_for(
        lambda: next((r for r in d.runners() if r.data.get("warm_vm") == warm.key and r.state == "busy"), None),
        60,
        "the job's runner busy on the warm VM",
    )
    assigned = float(runner.data["launched_at"])
    booted.vm_id = str(warm.data["vm_id"])

    def scaledown_at(at: float) -> dict[str, Any]:
        return type(d.app.scaledown)(d.app.backend, d.app.github, clock=lambda: at).run()

    booted.by_s = lifetime + 600  # it waited longer than a job may run, within its warm deadline
    report = scaledown_at(assigned + lifetime - 60)
    assert "lifetime-exceeded" not in report and d.runner(runner.key).state == "busy", report

    booted.by_s = deadline + lifetime + 60  # booted longer ago than a warm VM lives
    report = scaledown_at(assigned + 60)
    assert report.get("lifetime-exceeded") == 1, report
    retired = d.runner(runner.key)
    assert retired.state == "retired" and retired.data["retired_reason"] == "maximum-lifetime"
    wait_for(lambda: booted.vm_id not in running_vm_ids(d), 30, "the VM to end")
