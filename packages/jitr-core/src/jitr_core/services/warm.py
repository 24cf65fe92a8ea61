"""Warm pools: booted broker-mode VMs that wait at the broker for a job.

A warm VM has a record of kind ``warm`` (key: its name ``jitr-<pool>-warm-<hex>``, which no
runner name can take, as runner names end in ``-<job>-<attempt>``):

- ``waiting``: launched (``vm_id`` set once the launch is written) and long-polling the broker
  (``asked_at`` set at its first call);
- ``assigned``: a job's runner claim took it (``runner_name``); the runner record now holds the
  VM (``vm_id``) and the broker mints that runner's JIT config when the VM next asks;
- ``retiring``: scaledown took it out of the pool; its VM is terminated and the record deleted.

Every move out of ``waiting`` is a conditional write at the version read, so of a scaleup and
another scaleup (or scaledown) racing for one VM exactly one wins: two jobs never get one VM,
and a warm VM just assigned is never retired. The record goes once the broker hands the config
over (the runner record owns the VM from then on).

Warm VMs count against the caps: a pool is filled only into the headroom its in-flight runners
and waiting warm VMs leave under the pool's and the global ``max_runners``, and a cold launch
retires the waiting warm VMs it would put over a cap.

A pool's ``max_lifetime_s`` limits a job, and a warm VM waits up to the warm deadline before it
has one: its script's watchdog and the cloud's own limit allow :func:`warm_lifetime_s` from the
boot (the wait and a whole job), and a second watchdog gives the job ``max_lifetime_s`` from the
moment its config arrives (:mod:`jitr_core.broker_script`).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from ..backend import Backend
from ..errors import CapacityError, JitrError
from ..model import LaunchResult, Record, RecordQuery, VMInfo
from ..secret import Secret
from ..settings import Pool, Settings
from ..startup import ScriptContext
from .candidates import fallback_chain, launch_request
from .common import in_flight, isolated
from .records import Store

log = logging.getLogger("jitr.warm")

WARM = "warm"
WAITING, ASSIGNED, RETIRING = "waiting", "assigned", "retiring"
WARM_STATES = (WAITING, ASSIGNED, RETIRING)
_CLAIM_ATTEMPTS = 3  # per warm VM: its record changes at most once more (the first call) while it waits
_NAME_UNSAFE = re.compile(r"[^a-z0-9-]+")
_WARM_NAME = re.compile(r"^jitr-[a-z0-9-]{1,24}-warm-[0-9a-f]{10}$")


def warm_name(pool: str) -> str:
    """A fresh name for a warm VM of ``pool``; not secret (it is the VM's name in the cloud)."""
    safe_pool = _NAME_UNSAFE.sub("-", pool.lower()).strip("-")[:24] or "pool"
    return f"jitr-{safe_pool}-warm-{secrets.token_hex(5)}"


def is_warm_name(name: str) -> bool:
    return bool(_WARM_NAME.match(name))


def warm_lifetime_s(settings: Settings, pool: Pool) -> int:
    """The longest a warm VM of ``pool`` lives from its boot: the longest wait, then a whole job."""
    return settings.warm_deadline_s(pool) + pool.max_lifetime_s


def warm_script_context(settings: Settings, pool: Pool, name: str, provider: str) -> ScriptContext:
    """What the startup script of warm VM ``name`` of ``pool`` is rendered from: no config, a broker
    call under its warm name until the warm deadline, the job's lifetime from its config on."""
    return ScriptContext(
        name,
        pool,
        provider,
        Secret(""),
        settings.runner_version,
        warm_lifetime_s(settings, pool),
        handoff="broker",
        broker_url=settings.broker_url,
        broker_audience=settings.broker_audience,
        broker_deadline_s=settings.warm_deadline_s(pool),
        job_max_lifetime_s=pool.max_lifetime_s,
    )


class WarmPools:
    """Claims, launches and upkeep of the warm VMs of every pool."""

    def __init__(self, backend: Backend, store: Store) -> None:
        self.backend = backend
        self.settings = backend.settings
        self.store = store

    def waiting(self, pool: str | None = None) -> list[Record]:
        """Waiting warm VMs, oldest first (those the broker holds longest are taken first)."""
        return list(self.backend.query_all(RecordQuery(WARM, WAITING, pool=pool, limit=500)))

    def claim(self, pool: Pool, runner_name: str) -> Record | None:
        """Take one launched waiting warm VM of ``pool`` for ``runner_name``; None when none is left.

        VMs already waiting at the broker (``asked_at``) go first, the longest waiting first. A
        write that loses to another writer is retried on a fresh read while the VM still waits
        (the broker noting its first call), and given up once another job took it.
        """
        launched = [r for r in self.waiting(pool.name) if r.data.get("vm_id") is not None]
        for record in sorted(launched, key=lambda r: r.data.get("asked_at") is None):
            current: Record | None = record
            for _ in range(_CLAIM_ATTEMPTS):
                if current is None or current.state != WAITING:
                    break
                now = self.store.clock()
                taken = self.store.write(current, state=ASSIGNED, runner_name=runner_name, assigned_at=now)
                if taken is not None:
                    log.info("warm vm assigned", extra={"warm_vm": record.key, "runner_name": runner_name})
                    return taken
                current = self.backend.load(WARM, record.key)
        return None

    def assigned_to(self, pool: Pool, runner_name: str) -> Record | None:
        """The warm VM a crashed worker already took for ``runner_name``, so a redelivery takes no second."""
        records = self.backend.query_all(RecordQuery(WARM, ASSIGNED, pool=pool.name, limit=500))
        return next((r for r in records if r.data.get("runner_name") == runner_name), None)

    def _counts(self, pool: Pool) -> tuple[int, int]:
        """VMs counted against ``pool``'s cap and against the global cap: runners in flight and waiting warm VMs."""
        runners = list(in_flight(self.backend))
        warm = self.waiting()
        in_pool = sum(1 for r in runners if r.record.pool == pool.name) + sum(1 for w in warm if w.pool == pool.name)
        return in_pool, len(runners) + len(warm)

    def headroom(self, pool: Pool) -> int:
        """Warm VMs that may still be launched for ``pool`` under the pool's and the global caps."""
        in_pool, overall = self._counts(pool)
        return max(0, min(pool.max_runners - in_pool, self.settings.max_runners - overall))

    def over_caps(self, pool: Pool) -> int:
        """VMs beyond a cap (cold launches raced a refill): as many warm VMs of ``pool`` go."""
        in_pool, overall = self._counts(pool)
        return max(0, in_pool - pool.max_runners, overall - self.settings.max_runners)

    def make_room(self, pool: Pool) -> int:
        """Retire the waiting warm VMs that a cold launch for ``pool`` (its claim already counted)
        puts over a cap: the pool's own for its cap, then any pool's for the global one."""
        runners = list(in_flight(self.backend))
        warm = self.waiting()
        in_pool = sum(1 for r in runners if r.record.pool == pool.name) + sum(1 for w in warm if w.pool == pool.name)
        over_pool = in_pool - pool.max_runners
        over_all = len(runners) + len(warm) - self.settings.max_runners
        launched = [w for w in warm if w.data.get("vm_id") is not None]  # a launch under way finishes first
        retired: set[str] = set()
        for record in [w for w in launched if w.pool == pool.name][: max(0, over_pool)]:
            if self.retire(record, "over-cap"):
                retired.add(record.key)
        for record in [w for w in launched if w.key not in retired][: max(0, over_all - len(retired))]:
            if self.retire(record, "over-cap"):
                retired.add(record.key)
        return len(retired)

    def replenish(self, pool: Pool, now: float) -> int:
        """Launch the warm VMs ``pool`` lacks now (within the caps); returns how many were launched.

        What is lacking is read again before each launch: refills overlap (every scaleup that takes
        a warm VM refills, and scaledown does), and a launch takes seconds, in which another refill
        may have recorded the VMs this one would launch next. Stops at the first launch without capacity.
        """
        launched = 0
        while launched < pool.warm_wanted(now) and self._lacking(pool, now) > 0:
            if not self.launch(pool):
                break
            launched += 1
        return launched

    def _lacking(self, pool: Pool, now: float) -> int:
        missing = pool.warm_wanted(now) - len(self.waiting(pool.name))
        return min(missing, self.headroom(pool)) if missing > 0 else 0

    def launch(self, pool: Pool) -> bool:
        """Record, then boot one warm VM through the pool's fallback chain; False when no capacity."""
        name = warm_name(pool.name)
        record = self.store.create(WARM, name, WAITING, pool=pool.name, data={"vm_id": None})
        if record is None:
            return False
        provider = self.settings.provider("vm")
        context = warm_script_context(self.settings, pool, name, provider)
        script = self.backend.render_startup_script(context, self.backend.user_data_limit(provider))
        result = self._boot(pool, name, script, context.max_lifetime_s)
        if result is None:
            self.backend.delete(WARM, name, expected_version=record.version)
            log.warning("no capacity for a warm vm", extra={"pool": pool.name})
            return False
        at = self.store.clock()
        self.store.update(WARM, name, lambda r: _launched(r, result, at))
        log.info("warm vm launched", extra={"warm_vm": name, "vm_id": result.vm_id, "pool": pool.name})
        return True

    def _boot(self, pool: Pool, name: str, script: str, lifetime_s: int) -> LaunchResult | None:
        """Launch on the first candidate with capacity; ``lifetime_s`` is the cloud's own limit, from the boot."""
        for index, candidate in enumerate(fallback_chain(pool)):
            request = launch_request(pool, name, candidate, index, script, {"jitr-job": "warm", "jitr-attempt": "0"})
            request = replace(request, max_lifetime_s=lifetime_s)
            try:
                return self.backend.launch_vm(request)
            except CapacityError:
                continue
        return None

    def retire(self, record: Record, reason: str) -> bool:
        """Take a waiting warm VM out of its pool, unless a job claimed it since it was read."""
        taken = self.store.write(record, state=RETIRING, retired_reason=reason)
        if taken is None:
            return False
        vm_id = record.data.get("vm_id")
        if vm_id:
            self.backend.terminate_vm(str(vm_id))
        self.backend.delete(WARM, record.key, expected_version=taken.version)
        log.info("warm vm retired", extra={"warm_vm": record.key, "reason": reason})
        return True

    def upkeep(self, now: float, vms: Mapping[str, VMInfo]) -> Counter[str]:
        """Scaledown's pass: drop dead and idle warm VMs, settle old assignments, fill each pool to its count."""
        report: Counter[str] = Counter()
        by_name = {vm.runner_name: vm for vm in vms.values()}
        for record in self.backend.query_all(RecordQuery(WARM, ASSIGNED, limit=500)):
            isolated(report, "warm assignment", partial(self._settle, record, now), warm_vm=record.key)
        for record in self.backend.query_all(RecordQuery(WARM, RETIRING, limit=500)):
            if now - record.updated_at > self.settings.claim_timeout_s:  # a retirement that stopped half-way
                isolated(report, "warm retirement", partial(self._finish_retiring, record), warm_vm=record.key)
        configured = {pool.name for pool in self.settings.pools}
        for record in self.waiting():  # of a pool renamed or removed: nothing else checks them, the caps count them
            if record.pool not in configured:
                retired = partial(self._retired, record, "unconfigured")
                isolated(report, "warm retirement", retired, warm_vm=record.key)
        for pool in self.settings.pools:
            alive = []
            for record in self.waiting(pool.name):
                check = partial(self._check, record, pool, now, vms, by_name)
                if isolated(report, "warm vm check", check, warm_vm=record.key) is None:
                    alive.append(record)  # or its check failed: it counts as waiting until the next pass
            extra = max(0, len(alive) - pool.warm_wanted(now))
            for record in alive[:extra]:  # the oldest go first
                isolated(report, "warm retirement", partial(self._retired, record, "extra"), warm_vm=record.key)
            if alive[extra:] and (over := self.over_caps(pool)):
                for record in alive[extra:][:over]:
                    retired = partial(self._retired, record, "over-cap")
                    isolated(report, "warm retirement", retired, warm_vm=record.key)
            if not pool.keeps_warm:
                continue
            try:
                if launched := self.replenish(pool, now):
                    report["warm-launched"] += launched
            except JitrError as exc:
                log.warning("warm pool not refilled", extra={"pool": pool.name, "reason": str(exc)})
                report["warm-launch-errors"] += 1
        report.pop("ok", None)
        return report

    def _retired(self, record: Record, reason: str) -> str:
        return f"warm-{reason}" if self.retire(record, reason) else "ok"

    def _check(
        self, record: Record, pool: Pool, now: float, vms: Mapping[str, VMInfo], by_name: Mapping[str, VMInfo]
    ) -> str | None:
        """Why a waiting warm VM leaves the pool now (its outcome), or None if it stays."""
        vm_id = record.data.get("vm_id")
        age = now - float(record.data.get("launched_at") or record.created_at)
        if vm_id is None:
            if now - record.created_at < self.settings.claim_timeout_s:
                return None
            found = by_name.get(record.key)  # launched by a worker that died before writing it down
            if found is not None:
                self.store.write(record, vm_id=found.vm_id, provider=found.provider, launched_at=found.created_at)
                return None
            return "warm-abandoned" if self.backend.delete(WARM, record.key, expected_version=record.version) else "ok"
        if vm_id not in vms and age > self.settings.ghost_grace_s:
            return "warm-vm-gone" if self.retire(record, "vm-gone") else "ok"
        if age > pool.warm_max_idle_s:
            return "warm-idle" if self.retire(record, "idle") else "ok"
        return None

    def _settle(self, record: Record, now: float) -> str:
        """An assignment the broker did not close: the runner owns the VM, or the claim died with it."""
        runner = self.store.runner(str(record.data.get("runner_name") or ""))
        if runner is not None and runner.vm_id == record.data.get("vm_id"):
            # the runner record holds the VM (scaledown retires it with the runner): the warm record is done
            done = runner.get("handoff") == "handed" or not runner.is_live(now, self.settings.claim_timeout_s)
            if done and self.backend.delete(WARM, record.key, expected_version=record.version):
                return "warm-handed"
            return "ok"
        if now - float(record.data.get("assigned_at") or record.updated_at) < self.settings.claim_timeout_s:
            return "ok"  # its worker is writing the runner record
        if runner is not None and runner.is_live(now, self.settings.claim_timeout_s):
            return "ok"
        retiring = self.store.write(record, state=RETIRING, retired_reason="assignment-abandoned")
        return self._finish_retiring(retiring) if retiring is not None else "ok"

    def _finish_retiring(self, record: Record) -> str:
        vm_id = record.data.get("vm_id")
        if vm_id:
            self.backend.terminate_vm(str(vm_id))
        self.backend.delete(WARM, record.key, expected_version=record.version)
        return "warm-retired"


def _launched(record: Record, result: LaunchResult, at: float) -> dict[str, Any] | None:
    if record.data.get("vm_id") is not None:
        return None
    return {
        "vm_id": result.vm_id,
        "provider": result.provider,
        "machine_type": result.machine_type,
        "placement": result.placement,
        "spot": result.spot,
        "launched_at": at,
    }
