"""Typed views of the store's records, and the few writes every service makes.

A job record (kind ``job``, key the job id) tracks what jitr knows of a workflow job; a runner
record (kind ``runner``, key the runner name) tracks one single-use runner and its VM. Writes are
optimistic: read, change, replace at the read version, retry on conflict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..backend import Backend
from ..errors import RecordError, StoreConflictError
from ..messages import JobMessage, LifecycleMessage
from ..model import JobState, Record, RunnerState, Scope

JOB = "job"
RUNNER = "runner"
REPO = "repo"
LEASE = "lease"

TIMELINE_MAX = 40  # entries kept per job record; older ones are dropped and counted
_TIMELINE_TEXT = 200  # characters kept of any string in an entry (error codes, names, reasons)

_RUNNER_RANK = {
    RunnerState.CLAIMED: 0,
    RunnerState.LAUNCHED: 1,
    RunnerState.BUSY: 2,
    RunnerState.FINISHED: 3,
    RunnerState.RETIRED: 3,
}
# a dead-lettered job still moves on if some runner takes it after all
_JOB_RANK = {
    JobState.QUEUED: 0,
    JobState.DEAD_LETTERED: 1,
    JobState.RUNNING: 2,
    JobState.COMPLETED: 3,
    JobState.CANCELLED: 3,
}


def runner_can_move(old: str, new: RunnerState) -> bool:
    """States only move forward, so late or duplicated events cannot undo newer facts."""
    return _RUNNER_RANK[RunnerState(old)] < _RUNNER_RANK[new]


def job_can_move(old: str, new: JobState) -> bool:
    return _JOB_RANK[JobState(old)] < _JOB_RANK[new]


@dataclass(frozen=True, slots=True)
class JobView:
    record: Record

    @property
    def job_id(self) -> int:
        return int(self.record.key)

    @property
    def state(self) -> JobState:
        return JobState(self.record.state)

    @property
    def attempt(self) -> int:
        return int(self.record.data.get("attempt", 1))

    @property
    def launched_runner(self) -> str | None:
        return self.record.data.get("launched_runner")

    @property
    def scope_owner(self) -> str:
        return str(self.record.data.get("owner", ""))

    @property
    def timeline(self) -> list[dict[str, Any]]:
        """The job's steps, oldest first (at most :data:`TIMELINE_MAX`; see ``timeline_dropped``)."""
        entries = self.record.data.get("timeline") or []
        return [dict(entry) for entry in entries if isinstance(entry, Mapping)]

    def get(self, key: str, default: Any = None) -> Any:
        return self.record.data.get(key, default)


def step(event: str, at: float, **facts: Any) -> dict[str, Any]:
    """One timeline entry: what happened (``event``), when (``t``, epoch seconds) and its facts.

    Facts that are None are left out; strings are cut to a bounded length so that a record stays
    small whatever a payload or a provider's error carried.
    """
    entry: dict[str, Any] = {"t": round(at, 3), "event": event}
    for key, value in facts.items():
        if value is None:
            continue
        entry[key] = value[:_TIMELINE_TEXT] if isinstance(value, str) else value
    return entry


def with_steps(data: Mapping[str, Any], *entries: Mapping[str, Any]) -> dict[str, Any]:
    """The ``timeline`` and ``timeline_dropped`` fields of a job record after appending ``entries``.

    Meant to be merged into the write that already changes the record, so a step costs no round
    trip of its own. Entries are kept in time order; the newest :data:`TIMELINE_MAX` are kept and
    the dropped ones counted.
    """
    # in time order: a step written late (the launch, linked after its runner already took a job)
    # goes where it happened
    timeline = sorted([*(data.get("timeline") or []), *entries], key=lambda entry: float(entry.get("t", 0.0)))
    dropped = int(data.get("timeline_dropped") or 0)
    if len(timeline) > TIMELINE_MAX:
        dropped += len(timeline) - TIMELINE_MAX
        timeline = timeline[-TIMELINE_MAX:]
    return {"timeline": timeline, "timeline_dropped": dropped}


@dataclass(frozen=True, slots=True)
class RunnerView:
    record: Record

    @property
    def name(self) -> str:
        return self.record.key

    @property
    def state(self) -> RunnerState:
        return RunnerState(self.record.state)

    @property
    def job_id(self) -> int:
        value = self.record.data.get("job_id")
        try:
            return int(value)  # type: ignore[arg-type]  # None and the like: the TypeError below
        except (TypeError, ValueError):
            raise RecordError(f"runner record {self.name} has no job id (found {value!r:.40})") from None

    @property
    def vm_id(self) -> str | None:
        return self.record.data.get("vm_id")

    @property
    def scope(self) -> Scope:
        d = self.record.data
        owner = d.get("owner")
        if not owner or not isinstance(owner, str):
            raise RecordError(f"runner record {self.name} has no owner")
        return Scope(d.get("installation_id"), owner, d.get("repo"))

    @property
    def github_runner_id(self) -> int | None:
        value = self.record.data.get("github_runner_id")
        return int(value) if value is not None else None

    @property
    def claimed_at(self) -> float:
        """When its launching worker last made progress: the claim, a takeover or the JIT minting.

        Unlike ``updated_at``, other services' rewrites (a swap pointing the claim at another job)
        leave it alone, so a dead claim ages even while it is passed around.
        """
        value = self.record.data.get("claimed_at")
        return float(value) if value is not None else self.record.created_at

    def is_live(self, now: float, claim_timeout_s: float) -> bool:
        """A runner that holds or will soon hold a VM: launched or busy, or claimed recently."""
        if self.state in (RunnerState.FINISHED, RunnerState.RETIRED):
            return False
        if self.state != RunnerState.CLAIMED or self.vm_id is not None:
            return True
        return now - self.claimed_at < claim_timeout_s

    def get(self, key: str, default: Any = None) -> Any:
        return self.record.data.get(key, default)


@dataclass
class Store:
    """Record reads and optimistic writes on top of the backend facade."""

    backend: Backend
    clock: Callable[[], float] = time.time
    conflicts: int = field(default=0)

    def job(self, job_id: int) -> JobView | None:
        record = self.backend.load(JOB, str(job_id))
        return JobView(record) if record else None

    def runner(self, name: str) -> RunnerView | None:
        record = self.backend.load(RUNNER, name)
        return RunnerView(record) if record else None

    def new(
        self,
        kind: str,
        key: str,
        state: str,
        pool: str = "",
        data: Mapping[str, Any] | None = None,
        expires_at: float | None = None,
    ) -> Record:
        """A record at version 1, not yet written."""
        now = self.clock()
        return Record(
            kind,
            key,
            state=state,
            pool=pool,
            version=1,
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
            data=dict(data or {}),
        )

    def create(
        self,
        kind: str,
        key: str,
        state: str,
        pool: str = "",
        data: Mapping[str, Any] | None = None,
        expires_at: float | None = None,
    ) -> Record | None:
        record = self.new(kind, key, state, pool, data, expires_at)
        return record if self.backend.create(record) else None

    def write(
        self, record: Record, state: str | None = None, expires_at: float | None = None, **data: Any
    ) -> Record | None:
        """Replace ``record`` with changes at its version; None when someone wrote in between."""
        now = self.clock()
        new = replace(
            record,
            state=state if state is not None else record.state,
            version=record.version + 1,
            updated_at=now,
            expires_at=expires_at if expires_at is not None else record.expires_at,
            data={**record.data, **data},
        )
        if self.backend.replace(new, record.version):
            return new
        self.conflicts += 1
        return None

    def update(
        self, kind: str, key: str, change: Callable[[Record], dict[str, Any] | None], attempts: int = 8
    ) -> Record | None:
        """Load, compute a change (None: nothing to do), write; retried on conflicts."""
        for _ in range(attempts):
            record = self.backend.load(kind, key)
            if record is None:
                return None
            changes = change(record)
            if changes is None:
                return record
            written = self.write(record, **changes)
            if written is not None:
                return written
        raise StoreConflictError(f"{kind} {key} kept changing under {attempts} attempts to update it")


def new_job_data(message: JobMessage | LifecycleMessage, private: bool, attempt: int) -> dict[str, Any]:
    """The data of a job record first written from a queue message."""
    return {
        "run_id": message.run_id,
        "run_attempt": message.run_attempt,
        "repository": message.repository,
        "owner": message.owner,
        "installation_id": message.installation_id,
        "labels": list(message.labels),
        "private": private,
        "attempt": attempt,
        "queued_at": message.received_at,
        "launched_runner": None,
        **with_steps({}, step("received", message.received_at, via=_via(message))),
    }


def _via(message: JobMessage | LifecycleMessage) -> str:
    """How jitr first heard of a job: the job message's reason, or the lifecycle event's action."""
    return message.reason if isinstance(message, JobMessage) else message.action
