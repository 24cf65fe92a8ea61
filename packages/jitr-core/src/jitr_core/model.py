"""Domain model: jobs, scopes, runner and job records, VMs and launch requests.

Plain frozen dataclasses with no behaviour beyond derived names; parsing and serialising live
in :mod:`jitr_core.messages` and :mod:`jitr_core.webhook`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Where a workflow job stands, as far as jitr knows."""

    QUEUED = "queued"  # waiting for a runner; a launch may be in flight
    RUNNING = "running"  # some runner took it
    COMPLETED = "completed"  # finished with a runner
    CANCELLED = "cancelled"  # finished before any runner took it
    DEAD_LETTERED = "dead-lettered"  # its runners kept exiting without taking it; jitr stopped launching


class RunnerState(StrEnum):
    """Life of one single-use runner (one VM)."""

    CLAIMED = "claimed"  # (job, attempt) claimed; VM not launched yet
    LAUNCHED = "launched"  # VM exists; runner not seen working yet
    BUSY = "busy"  # GitHub assigned it a job
    FINISHED = "finished"  # its job completed; the VM deletes itself
    RETIRED = "retired"  # removed by jitr (surplus, stale, lifetime, failed launch)


IN_FLIGHT_RUNNER_STATES: tuple[RunnerState, ...] = (
    RunnerState.CLAIMED,
    RunnerState.LAUNCHED,
    RunnerState.BUSY,
)
OPEN_JOB_STATES: tuple[JobState, ...] = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where runners register: a repository (``repo`` set) or an organisation/user (``repo`` None)."""

    installation_id: int | None
    owner: str
    repo: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}" if self.repo else self.owner

    @property
    def is_org(self) -> bool:
        return self.repo is None


@dataclass(frozen=True, slots=True)
class WorkflowJob:
    """The fields of a ``workflow_job`` webhook that the control plane acts on."""

    action: str
    job_id: int
    run_id: int
    run_attempt: int
    name: str
    status: str
    labels: tuple[str, ...]
    repository: str  # "owner/name"
    owner: str
    private: bool
    installation_id: int | None
    conclusion: str | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    created_at: str | None = None

    @property
    def repo(self) -> str:
        return self.repository.split("/", 1)[1]


_NAME_UNSAFE = re.compile(r"[^a-z0-9-]+")
MAX_ID = 2**63 - 1  # GitHub's ids (jobs, runs, installations, runners) are signed 64-bit integers
MAX_ATTEMPT = 9999  # jitr's launches of one job; keeps runner names within every cloud's 63 characters
MAX_NAME = 63  # GCE instance names and DNS labels; EC2 tags and GitHub runner names allow more


RUNNER_PREFIX = "jitr-"  # every runner jitr names starts so


def runner_name_for(pool: str, job_id: int, attempt: int) -> str:
    """The runner (and VM) name for one launch of a job: deterministic, DNS- and label-safe.

    Deterministic so that the claim, the cloud idempotency token and the GitHub runner name all
    agree after a crash and a redelivery. With ids up to :data:`MAX_ID` and attempts up to
    :data:`MAX_ATTEMPT` it stays within :data:`MAX_NAME` characters.
    """
    if not (0 <= job_id <= MAX_ID and 0 <= attempt <= MAX_ATTEMPT):
        raise ValueError(f"job id must be in 0..{MAX_ID} and attempt in 0..{MAX_ATTEMPT}, found {job_id}, {attempt}")
    safe_pool = _NAME_UNSAFE.sub("-", pool.lower()).strip("-")[:24] or "pool"
    return f"{RUNNER_PREFIX}{safe_pool}-{job_id}-{attempt}"


def idempotency_token(runner_name: str, candidate: int) -> str:
    """A cloud idempotency token for one candidate (machine type/placement) of one launch."""
    digest = hashlib.sha256(f"{runner_name}/{candidate}".encode()).hexdigest()
    return digest[:32]


@dataclass(frozen=True, slots=True)
class Record:
    """One item in the state store.

    ``kind`` separates record families (``job``, ``runner``, ``delivery``, ``lease``) inside one
    table; ``state``, ``pool`` and ``updated_at`` are indexed for the periodic queries;
    ``version`` increases on every write and guards conditional updates; ``expires_at`` (epoch
    seconds) lets the store drop finished records.
    """

    kind: str
    key: str
    state: str = ""
    pool: str = ""
    version: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Loaded:
    """Answer of a store load: ``record`` is None when absent (distinct from "not my call")."""

    record: Record | None


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """Indexed query: records of one kind and state, optionally one pool, last written before a time."""

    kind: str
    state: str
    pool: str | None = None
    updated_before: float | None = None
    limit: int = 100
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class RecordPage:
    """One page of a query, oldest ``updated_at`` first; ``cursor`` is None on the last page."""

    records: tuple[Record, ...]
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Written:
    """Answer of a store write: ``ok`` is False when the condition did not hold."""

    ok: bool


@dataclass(frozen=True, slots=True)
class Admission:
    """Answer of a counted claim: ``ok``, or what refused it.

    ``refused_by`` is ``"exists"`` (another claim on the same runner won), ``"pool"`` (the pool's
    cap is full) or ``"global"`` (the global cap is full).
    """

    ok: bool
    refused_by: str | None = None


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """One attempt to start one VM for one runner, on one candidate of the pool's chain."""

    runner_name: str
    pool: str
    machine_type: str
    placement: str | None  # subnet (AWS), zone (GCP) or None for the provider's default
    spot: bool
    image: str
    disk_gb: int
    startup_script: str
    idempotency_token: str
    max_lifetime_s: int
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LaunchResult:
    """A VM that exists (new, or found again through the idempotency token)."""

    vm_id: str
    provider: str
    machine_type: str
    placement: str | None
    spot: bool


@dataclass(frozen=True, slots=True)
class VMInfo:
    """A managed VM as the provider lists it."""

    vm_id: str
    runner_name: str
    pool: str
    provider: str
    created_at: float
    running: bool = True
    # what the startup script reported as the runner exited: "job" (it ran one), "no-job", or None
    runner_exit: str | None = None


@dataclass(frozen=True, slots=True)
class VMIdentity:
    """Who a VM proved to be with its cloud identity, as a provider verified it.

    The broker matches it against the runner record jitr wrote at launch before it answers the
    VM's JIT config. ``vm_id`` is the provider's VM id (EC2 instance id, GCE instance id, the
    embedded VM's id); ``zone`` the availability zone or GCE zone; ``account`` the AWS account
    id or GCP project id (empty for the embedded provider); ``issued_at`` the epoch seconds at
    which the proof was issued.
    """

    provider: str
    vm_id: str
    zone: str
    account: str
    issued_at: float


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """A message as sent to a queue: the versioned JSON body plus small string attributes."""

    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message taken from a queue; ``receipt`` acknowledges it, ``receive_count`` counts tries.

    ``last_try`` is set by a queue that knows this receive reaches its dead-letter limit, so a
    failure now can be dead-lettered with its reason instead of being buried without one.
    """

    body: str
    receipt: str
    receive_count: int
    attributes: Mapping[str, str] = field(default_factory=dict)
    last_try: bool = False
