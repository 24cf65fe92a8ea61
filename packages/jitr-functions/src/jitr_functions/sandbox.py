"""A whole jitr deployment on one machine against the GitHub simulator: the demo's and the tests' engine.

The embedded backend holds state and queues; VMs are simulated runner agents that boot the
way a real VM does: they get their JIT config from the broker (the deployment's own, on the
local runtime's HTTP server) with a per-VM identity token, or read it out of the rendered
script for a pool with ``handoff = "metadata"``; then they connect to the simulator, take
whatever job GitHub gives them, run it and leave.
"""

from __future__ import annotations

import base64
import queue
import random
import re
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from jitr_core.broker_script import BROKER
from jitr_core.errors import CapacityError, JitrError
from jitr_core.hookspecs import hookimpl
from jitr_core.interruption import Interruption, encode_interruption
from jitr_core.model import LaunchRequest, LaunchResult, VMIdentity, VMInfo
from jitr_core.services.stats import pool_stats
from jitr_core.settings import Settings
from jitr_github.simulator import Faults, GitHubSimulator, SimulatorError

from .app import App, build_app
from .local import Intervals, LocalRuntime, Workers, free_port
from .sandbox_broker import VMTokens, ask_broker

PROVIDER = "simulated"
RECORDING = "recording"
MIN_BROKER_DEADLINE_S = 60.0
_JIT_IN_SCRIPT = re.compile(r"ACTIONS_RUNNER_INPUT_JITCONFIG=\"\$\(printf %s '([A-Za-z0-9+/=]+)' \| base64 -d\)\"")

DEMO_POOLS: list[dict[str, Any]] = [
    {
        "name": "linux-x64",
        "labels": ["self-hosted", "linux", "x64"],
        "machine_types": ["c7i.large", "c6i.large"],
        "placements": ["zone-a", "zone-b"],
        "max_runners": 40,
    },
    {
        "name": "linux-arm64",
        "labels": ["self-hosted", "linux", "arm64"],
        "machine_types": ["c7g.large"],
        "placements": ["zone-a", "zone-b"],
        "arch": "arm64",
        "max_runners": 40,
    },
    {
        "name": "gpu",
        "labels": ["self-hosted", "linux", "gpu"],
        "machine_types": ["g5.xlarge", "g6.xlarge"],
        "spot": False,
        "max_runners": 12,
    },
]


class SimulatedCrash(Exception):
    """A worker dying between two steps (raised at a scaleup checkpoint)."""


@dataclass
class VMFaults:
    """Faults of the simulated cloud, drawn from a seeded generator."""

    capacity: float = 0.0  # chance a candidate has no capacity
    never_boots: float = 0.0  # chance a VM never starts its runner
    no_job_exits: int = 0  # the first this many VMs end at once without taking a job (a bad image)
    job_seconds: tuple[float, float] = (0.05, 0.3)


@dataclass
class _VM:
    vm_id: str
    runner_name: str
    pool: str
    created_at: float
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    runner_id: int | None = None
    runner_exit: str | None = None  # "job" once its runner took one, "no-job" if it ends without: its script's report
    jit: str | None = field(default=None, repr=False)  # from the script; None: asked from the broker
    token: str = field(default="", repr=False)  # its identity for the broker
    broker_url: str = ""
    boot_deadline_s: float = 0.0

    def config(self, provider: str) -> str | None:
        """The JIT config: the one in its script, or the broker's answer (None if it gets none)."""
        if self.jit is not None:
            return self.jit
        got = ask_broker(self.broker_url, self.runner_name, provider, self.token, self.stop, self.boot_deadline_s)
        if got is not None:
            self.runner_name, self.jit = got  # a warm VM becomes the runner the broker names
        return self.jit


def _handoff(request: LaunchRequest, settings: Settings, vm: _VM, tokens: VMTokens) -> None:
    """Give ``vm`` its JIT config from the script, or what it needs to ask the broker for it."""
    if settings.pool(request.pool).handoff == BROKER:
        vm.token, vm.broker_url = tokens.issue(vm.vm_id), settings.broker_url
        # a real VM asks until boot_timeout_s (600 s by default), longer than a crashed launch takes
        # to be recorded by the redelivery; the sandbox's boot timeout is seconds, so its VMs ask
        # for at least a minute (a runner retired meanwhile is refused, and its VM ends then)
        vm.boot_deadline_s = max(settings.boot_timeout_s, MIN_BROKER_DEADLINE_S)
        return
    match = _JIT_IN_SCRIPT.search(request.startup_script)
    if match is None:
        raise JitrError("the startup script carries no JIT config")
    vm.jit = base64.b64decode(match.group(1)).decode()


class SimulatedVMs:
    """The ``simulated`` VM provider: each VM is a thread acting as the runner agent."""

    def __init__(self, sim: GitHubSimulator, faults: VMFaults, seed: int) -> None:
        self.sim = sim
        self.faults = faults
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._by_token: dict[str, _VM] = {}
        self._vms: dict[str, _VM] = {}
        self.launches: Counter[str] = Counter()  # runner name → VMs started for it
        self.launched_at: dict[str, float] = {}
        self.capacity_errors = 0
        self.tokens = VMTokens(PROVIDER)

    def _draw(self, chance: float) -> bool:
        with self._lock:
            return self._rng.random() < chance

    @hookimpl
    def jitr_launch_vm(self, request: LaunchRequest, settings: Settings) -> LaunchResult | None:
        if settings.provider("vm") != PROVIDER:
            return None
        with self._lock:
            existing = self._by_token.get(request.idempotency_token)
        if existing is not None:
            return LaunchResult(existing.vm_id, PROVIDER, request.machine_type, request.placement, request.spot)
        if self._draw(self.faults.capacity):
            with self._lock:
                self.capacity_errors += 1
            raise CapacityError(f"no {request.machine_type} capacity in {request.placement}", "InsufficientCapacity")
        with self._lock:
            vm = _VM(f"sim-{len(self._vms) + 1:06d}", request.runner_name, request.pool, time.time())
            _handoff(request, settings, vm, self.tokens)
            self._by_token[request.idempotency_token] = vm
            self._vms[vm.vm_id] = vm
            if len(self._vms) <= self.faults.no_job_exits:
                vm.runner_exit = "no-job"
            self.launches[request.runner_name] += 1
            self.launched_at.setdefault(request.runner_name, vm.created_at)
        boots = not self._draw(self.faults.never_boots)
        threading.Thread(target=self._run, args=(vm, boots), daemon=True, name=vm.vm_id).start()
        return LaunchResult(vm.vm_id, PROVIDER, request.machine_type, request.placement, request.spot)

    @hookimpl
    def jitr_verify_vm_identity(
        self, provider: str, proof: dict[str, str], audience: str, settings: Settings
    ) -> VMIdentity | None:
        return self.tokens.verify(proof) if provider == PROVIDER else None

    @hookimpl
    def jitr_terminate_vm(self, vm_id: str, settings: Settings) -> bool | None:
        if settings.provider("vm") != PROVIDER:
            return None
        with self._lock:
            vm = self._vms.get(vm_id)
        if vm is not None and not vm.done.is_set():
            vm.stop.set()
            if vm.runner_id is not None:
                try:
                    self.sim.kill_runner(vm.runner_id)
                except SimulatorError:
                    pass
        return True

    def vm_of(self, runner_name: str) -> str | None:
        with self._lock:
            return next((v.vm_id for v in self._vms.values() if v.runner_name == runner_name), None)

    def reclaim(self, runner_name: str) -> str:
        """The cloud takes the runner's VM back (a spot reclaim): it stops, and a job it ran fails; its id."""
        with self._lock:
            vm = next((v for v in self._vms.values() if v.runner_name == runner_name), None)
        if vm is None:
            raise JitrError(f"no simulated VM runs runner {runner_name}")
        vm.stop.set()
        if vm.runner_id is not None:  # else the VM's thread sees the stop once it has connected
            self._kill(vm.runner_id)
        return vm.vm_id

    def _kill(self, runner_id: int) -> None:
        try:
            self.sim.kill_runner(runner_id)
        except SimulatorError:
            pass  # already removed

    @hookimpl
    def jitr_list_vms(self, settings: Settings) -> Sequence[VMInfo] | None:
        if settings.provider("vm") != PROVIDER:
            return None
        with self._lock:
            vms = list(self._vms.values())
        # an ended VM is listed only with its exit report, as a cloud lists a deleted VM's tags a while
        return [
            VMInfo(v.vm_id, v.runner_name, v.pool, PROVIDER, v.created_at, not v.done.is_set(), v.runner_exit)
            for v in vms
            if not v.done.is_set() or v.runner_exit is not None
        ]

    def _run(self, vm: _VM, boots: bool) -> None:
        try:
            if vm.runner_exit == "no-job":
                vm.config(PROVIDER)  # the script gets its config as ever; then the agent never starts
                return
            if not boots:
                vm.stop.wait()
                return
            jit = vm.config(PROVIDER)
            if jit is None:
                return  # refused, or stopped while it asked: the VM ends without a runner
            runner = self.sim.agent_connect(jit)
            vm.runner_id = runner.id
            if vm.stop.is_set():  # reclaimed while it connected: GitHub sees it go offline
                self._kill(runner.id)
            job = None
            while job is None and not vm.stop.is_set():
                job = self.sim.agent_poll(runner.id, timeout=0.5)
            if job is not None:
                vm.runner_exit = "job"  # as the teardown reports it, whichever job the runner took
            if job is not None and not vm.stop.is_set():
                with self._lock:
                    low, high = self.faults.job_seconds
                    duration = self._rng.uniform(low, high)
                vm.stop.wait(duration)
                if not vm.stop.is_set():
                    self.sim.agent_finish(runner.id, "success")
            if not vm.stop.is_set():
                self.sim.agent_leave(runner.id)
        except SimulatorError:
            pass  # the runner was removed under us (retired, killed): the VM just ends
        finally:
            self.tokens.forget(vm.vm_id)
            vm.done.set()


class RecordingVMs:
    """The ``recording`` VM provider: records each launch and starts nothing per VM.

    For measuring the control plane alone: no thread or process per VM competes with it for
    the CPU. With ``boot_s`` None the VMs do not boot until :meth:`boot` (jobs stay queued;
    launches are all there is to see). Otherwise one driver thread plays every runner ``boot_s``
    after its launch (or at once, for those launched before :meth:`boot`), straight
    against the simulator's state (no HTTP): it connects the runner, takes whatever job GitHub
    assigns it, finishes it at once and leaves, so jobs complete, lifecycle webhooks flow and
    runner swaps happen as with real runners.
    """

    def __init__(self, sim: GitHubSimulator, boot_s: float | None = 0.0) -> None:
        self.sim = sim
        self.boot_s = boot_s
        self._lock = threading.Lock()
        self._by_token: dict[str, _VM] = {}
        self._vms: dict[str, _VM] = {}
        self._inbox: queue.SimpleQueue[tuple[float, _VM]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._unbooted: list[tuple[float, _VM]] = []
        self._driver = threading.Thread(target=self._drive, name="recording-vms", daemon=True)
        self.launches: Counter[str] = Counter()  # runner name → VMs started for it
        self.launched_at: dict[str, float] = {}
        self.capacity_errors = 0
        self.tokens = VMTokens(RECORDING)

    def start(self) -> None:
        if self.boot_s is not None:
            self._driver.start()

    def boot(self) -> None:
        """Boot the VMs launched so far, and every later one on launch."""
        with self._lock:
            self.boot_s = 0.0
            unbooted, self._unbooted = self._unbooted, []
            for item in unbooted:
                self._inbox.put(item)
        if not self._driver.is_alive() and not self._stop.is_set():
            self._driver.start()

    def stop(self) -> None:
        self._stop.set()
        if self._driver.is_alive():
            self._driver.join(5.0)

    @hookimpl
    def jitr_launch_vm(self, request: LaunchRequest, settings: Settings) -> LaunchResult | None:
        if settings.provider("vm") != RECORDING:
            return None
        with self._lock:
            vm = self._by_token.get(request.idempotency_token)
            if vm is None:
                vm = _VM(f"rec-{len(self._vms) + 1:06d}", request.runner_name, request.pool, time.time())
                _handoff(request, settings, vm, self.tokens)
                self._by_token[request.idempotency_token] = vm
                self._vms[vm.vm_id] = vm
                self.launches[request.runner_name] += 1
                self.launched_at.setdefault(request.runner_name, vm.created_at)
                if self.boot_s is None:
                    self._unbooted.append((0.0, vm))
                else:
                    self._inbox.put((time.monotonic() + self.boot_s, vm))
        return LaunchResult(vm.vm_id, RECORDING, request.machine_type, request.placement, request.spot)

    @hookimpl
    def jitr_verify_vm_identity(
        self, provider: str, proof: dict[str, str], audience: str, settings: Settings
    ) -> VMIdentity | None:
        return self.tokens.verify(proof) if provider == RECORDING else None

    @hookimpl
    def jitr_terminate_vm(self, vm_id: str, settings: Settings) -> bool | None:
        if settings.provider("vm") != RECORDING:
            return None
        with self._lock:
            vm = self._vms.get(vm_id)
        if vm is not None and not vm.done.is_set():
            vm.stop.set()
        return True

    @hookimpl
    def jitr_list_vms(self, settings: Settings) -> Sequence[VMInfo] | None:
        if settings.provider("vm") != RECORDING:
            return None
        with self._lock:
            vms = list(self._vms.values())
        return [
            VMInfo(v.vm_id, v.runner_name, v.pool, RECORDING, v.created_at, running=True)
            for v in vms
            if not v.done.is_set()
        ]

    def _drive(self) -> None:
        booting: deque[tuple[float, _VM]] = deque()  # launched, in launch order (so in boot order)
        idle: list[_VM] = []  # connected runners waiting for a job
        while not self._stop.is_set():
            wait_s = 0.2 if not (idle or booting) else 0.02
            booting.extend(self._take(wait_s))
            now = time.monotonic()
            while booting and booting[0][0] <= now:
                _, vm = booting.popleft()
                jit = None if vm.stop.is_set() else vm.config(RECORDING)
                try:
                    if jit is not None:
                        vm.runner_id = self.sim.agent_connect(jit).id
                        idle.append(vm)
                        continue
                except SimulatorError:
                    pass
                self._end(vm)
            idle = [vm for vm in idle if not self._step(vm)]

    def _take(self, timeout_s: float) -> list[tuple[float, _VM]]:
        try:
            taken = [self._inbox.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        while True:
            try:
                taken.append(self._inbox.get_nowait())
            except queue.Empty:
                return taken

    def _step(self, vm: _VM) -> bool:
        """One look at a runner: True when it is done (ran its job, or was removed or stopped)."""
        assert vm.runner_id is not None
        try:
            if vm.stop.is_set():
                self.sim.kill_runner(vm.runner_id)
            elif self.sim.agent_poll(vm.runner_id) is not None:
                self.sim.agent_finish(vm.runner_id, "success")
                self.sim.agent_leave(vm.runner_id)
            else:
                return False
        except SimulatorError:
            pass  # removed under us (retired, killed): the VM just ends
        self._end(vm)
        return True

    def _end(self, vm: _VM) -> None:
        self.tokens.forget(vm.vm_id)
        vm.done.set()


@dataclass
class SandboxFaults:
    """Every fault the sandbox can inject; all draws are seeded."""

    github: Faults = field(default_factory=Faults)
    vms: VMFaults = field(default_factory=VMFaults)
    crash: float = 0.0  # chance a scaleup worker dies at each checkpoint

    @classmethod
    def demo(cls, seed: int) -> SandboxFaults:
        return cls(
            github=Faults(
                seed=seed,
                drop_webhook=0.08,
                duplicate_webhook=0.1,
                reorder=0.1,
                http_5xx=0.03,
                http_429=0.01,
                retry_after_s=1,
            ),
            vms=VMFaults(capacity=0.25, never_boots=0.03),
            crash=0.03,
        )


class Sandbox:
    """Simulator + embedded backend + simulated VMs + the local runtime, started and stopped together."""

    def __init__(
        self,
        pools: list[dict[str, Any]] | None = None,
        faults: SandboxFaults | None = None,
        seed: int = 7,
        settings: dict[str, Any] | None = None,
        intervals: Intervals | None = None,
        log_stream: IO[str] | None = None,
        workers: int | Workers | None = 2,
        installations: dict[str, list[str]] | None = None,
        extra_plugins: Sequence[tuple[str, object]] = (),
        vm_provider: str = PROVIDER,
        boot_s: float | None = 0.0,
    ) -> None:
        if vm_provider not in (PROVIDER, RECORDING):
            raise ValueError(f"vm_provider must be {PROVIDER!r} or {RECORDING!r}, found {vm_provider!r}")
        self.faults = faults or SandboxFaults()
        self.seed = seed
        self._tmp = tempfile.TemporaryDirectory(prefix="jitr-sandbox-")
        self.dir = Path(self._tmp.name)
        self.sim = GitHubSimulator(faults=self.faults.github)
        self.vm_provider = vm_provider
        self.vms: SimulatedVMs | RecordingVMs = (
            SimulatedVMs(self.sim, self.faults.vms, seed) if vm_provider == PROVIDER else RecordingVMs(self.sim, boot_s)
        )
        self._pools = pools or DEMO_POOLS
        self._extra = settings or {}
        self._intervals = intervals or Intervals(scaledown_s=2.0, rebalancer_s=1.0, visibility_timeout_s=3)
        self._log_stream = log_stream
        self._workers = workers
        self._rng = random.Random(seed)
        self.installations = installations or {"octo-org": ["api", "web"], "mona": ["dotfiles"]}
        self._extra_plugins = list(extra_plugins)
        self.app: App | None = None
        self.runtime: LocalRuntime | None = None
        self.webhook_secret = "whsec-" + base64.b32encode(random.Random(seed).randbytes(15)).decode()

    def settings(self, api_url: str, port: int) -> Settings:
        """The deployment's settings; its VMs reach the broker on the runtime's ``port``."""
        (self.dir / "webhook_secret").write_text(self.webhook_secret)
        (self.dir / "app.pem").write_text(self.sim.private_key_pem)
        data: dict[str, Any] = {
            "provider": "embedded",
            "vm_provider": self.vm_provider,
            "github": {"app_id": str(self.sim.app_id), "api_url": api_url},
            "secrets": {
                "webhook_secret": f"file:{self.dir / 'webhook_secret'}",
                "github_app_private_key": f"file:{self.dir / 'app.pem'}",
            },
            "embedded": {"state_dir": str(self.dir / "state"), "max_receive_count": "5"},
            "pools": self._pools,
            "broker_url": f"http://127.0.0.1:{port}/broker",
            "boot_timeout_s": 5,
            "ghost_grace_s": 2,
            "stuck_after_s": 8,
            "claim_timeout_s": 3,
            "rebalance_grace_s": 0,
            "redelivery_interval_s": 0,
            "log_level": "INFO",
        }
        extra = dict(self._extra)
        data["embedded"] = {**data["embedded"], **extra.pop("embedded", {})}
        data.update(extra)
        return Settings.from_mapping(data, source="sandbox")

    def start(self) -> Sandbox:
        api_url = self.sim.start()
        for owner, repos in self.installations.items():
            self.sim.add_installation(owner, "Organization" if "-" in owner else "User", repos=repos)
        plugins = [(self.vm_provider, self.vms), *self._extra_plugins]
        if isinstance(self.vms, RecordingVMs):
            self.vms.start()
        port = free_port()
        settings = self.settings(api_url, port)
        self.app = build_app(settings, environ={}, extra_plugins=plugins, log_stream=self._log_stream)
        if self.faults.crash:
            self.app.scaleup.checkpoint = self._crash_point
        self.runtime = LocalRuntime(self.app, port=port, workers=self._workers, intervals=self._intervals).start()
        self.sim.set_webhook(self.runtime.url + "/webhook", self.webhook_secret)
        return self

    @property
    def repositories(self) -> list[str]:
        return [f"{owner}/{name}" for owner, names in self.installations.items() for name in names]

    def _crash_point(self, step: str) -> None:
        if self._rng.random() < self.faults.crash:
            raise SimulatedCrash(f"worker died after step {step!r}")

    def reclaim(self, runner_name: str, notices: int = 1, notice_first: bool = True) -> str:
        """A spot reclaim of the runner's VM: ``notices`` interruption messages reach the lifecycle queue
        (before the VM dies, as AWS warns, or after it, as GCE reports) and the VM stops; its id."""
        if not isinstance(self.vms, SimulatedVMs):
            raise JitrError(f"reclaims need the {PROVIDER!r} VM provider")
        if notice_first:
            self.notify_interruption(runner_name, self.vms.vm_of(runner_name), notices)
        vm_id = self.vms.reclaim(runner_name)
        if not notice_first:
            self.notify_interruption(runner_name, vm_id, notices)
        return vm_id

    def notify_interruption(self, runner_name: str, vm_id: str | None = None, copies: int = 1) -> None:
        """Deliver the interruption message of a reclaim (again, or late) to the lifecycle queue."""
        notice = Interruption(
            source="embedded", kind="interruption", notice_at=time.time(), vm_id=vm_id, runner_name=runner_name
        )
        for _ in range(copies):
            self._app().backend.enqueue("lifecycle", encode_interruption(notice))

    @property
    def settings_in_use(self) -> Settings:
        return self._app().settings

    def _app(self) -> App:
        if self.app is None:
            raise JitrError("the sandbox is not started")
        return self.app

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop(timeout_s=5.0)
        if isinstance(self.vms, RecordingVMs):
            self.vms.stop()
        self.sim.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(step_s)
        return predicate()

    def all_done(self, job_ids: Sequence[int]) -> bool:
        return all(self.sim.job(job_id).status == "completed" for job_id in reversed(job_ids))

    def all_launched(self, job_ids: Sequence[int]) -> bool:
        """Every job has had a VM launched for it (by runner name), whoever ran it in the end."""
        with self.vms._lock:
            names = list(self.vms.launched_at)
        launched = {_job_of(name) for name in names}
        return all(job_id in launched for job_id in job_ids)

    def report(self, job_ids: Sequence[int]) -> dict[str, Any]:
        """The summary the demo prints: counts, duplicate and surplus launches, lost jobs, GitHub
        calls per job, and webhook → launch latency percentiles, overall and per pool."""
        assert self.app is not None
        jobs = [self.sim.job(job_id) for job_id in job_ids]
        completed = [j for j in jobs if j.status == "completed" and j.conclusion == "success"]
        with self.vms._lock:
            launches = Counter(self.vms.launches)
            launched_at = dict(self.vms.launched_at)
        first_launch: dict[int, float] = {}
        for name, at in launched_at.items():
            job_id = _job_of(name)
            if job_id is not None and at < first_launch.get(job_id, float("inf")):
                first_launch[job_id] = at
        latencies: list[float] = []
        from_github: list[float] = []
        by_pool: dict[str, list[float]] = {}
        for job in jobs:
            first = first_launch.get(job.id)
            record = self.app.backend.load("job", str(job.id))
            if record is None or first is None:
                continue
            from_github.append((first - job.created_at) * 1000)
            latency = (first - float(record.data.get("queued_at", first))) * 1000
            latencies.append(latency)
            by_pool.setdefault(record.pool, []).append(latency)
        launched = sum(launches.values())
        calls = sum(self.sim.call_counts().values())
        return {
            "jobs": len(jobs),
            "completed": len(completed),
            "launches": launched,
            "duplicate_launches": sum(n - 1 for n in launches.values() if n > 1),
            "surplus_launches": max(0, launched - len(jobs)),
            "lost_jobs": len(jobs) - len([j for j in jobs if j.status == "completed"]),
            "capacity_errors": self.vms.capacity_errors,
            "github_calls": calls,
            "github_calls_per_job": round(calls / len(jobs), 3) if jobs else 0.0,
            "latency_ms": _percentiles(latencies),
            "queued_to_launch_ms": _percentiles(from_github),
            "pools": self._pools_report(by_pool),
        }

    def _pools_report(self, latencies: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
        """Per pool: the jobs counted in its webhook → launch latency and that latency, then the
        figures ``jitr status --pools`` shows (over the whole run) from the store."""
        assert self.app is not None
        figures = pool_stats(self.app.backend, time.time(), float("inf"))
        pools = sorted(set(latencies) | set(figures))
        return {
            pool: {
                "jobs": len(latencies.get(pool, ())),
                "latency_ms": _percentiles(latencies.get(pool, [])),
                **{key: value for key, value in figures.get(pool, {}).items() if key != "jobs"},
            }
            for pool in pools
        }


def _job_of(runner_name: str) -> int | None:
    """The job id in a runner name (``jitr-<pool>-<job id>-<attempt>``)."""
    parts = runner_name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {p: round(_percentile(ordered, q), 1) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]
