"""Label routing and admission: which pool (if any) serves a job, and on what machine type.

GitHub gives a job to a runner only when every label of the job is among the runner's labels,
so a pool can serve a job when the job's labels are a subset of the pool's. A pool with
``machine_type_labels`` or ``machine_sizes`` also serves a job that asks for its labels plus
sizing labels: one machine type its patterns accept, or ``cpu=N``/``ram=N`` resolved to the
smallest of its sizes that fits; the runner is then registered with those labels too. A label
becomes a machine type only when it fits the strict type grammar and the pool's allow-list, so
no other label text ever reaches a cloud call. Among the pools that can serve a job, the highest
``priority`` wins, then the most specific (fewest labels the job did not ask for), then a pool
that has the job's labels outright over one that sizes from them, then the name, so the choice
is stable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .model import WorkflowJob
from .settings import MACHINE_TYPE, Pool, Settings

SELF_HOSTED = "self-hosted"
_SIZE_LABEL = re.compile(r"^(cpu|ram)=([1-9][0-9]{0,4})$")
_TYPE_CHAR = "[a-z0-9._-]"


@dataclass(frozen=True, slots=True)
class Sizing:
    """What a job's sizing labels chose: the machine types to try, in order, instead of the pool's."""

    labels: tuple[str, ...]
    machine_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Admission:
    """The routing decision for a job: a pool (and the sizing its labels chose), or the reason there is none."""

    pool: Pool | None
    reason: str = ""
    sizing: Sizing | None = None


def type_pattern(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regular expression for a pool's ``machine_type_labels`` globs (``*``, ``?`` within a type's characters)."""
    parts = [
        "".join(f"{_TYPE_CHAR}*" if c == "*" else _TYPE_CHAR if c == "?" else re.escape(c) for c in pattern)
        for pattern in patterns
    ]
    return re.compile(f"(?:{'|'.join(parts)})") if parts else None


def sizing_for(pool: Pool, extra: frozenset[str], types: re.Pattern[str] | None) -> Sizing | None:
    """The sizing that the labels ``extra`` (beyond the pool's) choose on ``pool``, or None if they are not sizing.

    Either one machine-type label the pool's patterns accept (``types``), or ``cpu=N`` and/or
    ``ram=N`` (at most one of each) resolved to the pool's ``machine_sizes`` that fit, smallest first.
    """
    if len(extra) == 1 and types is not None:
        [label] = extra
        if MACHINE_TYPE.match(label) and types.fullmatch(label):
            return Sizing((label,), (label,))
    if not pool.machine_sizes or len(extra) > 2:
        return None
    wanted: dict[str, int] = {}
    for label in extra:
        match = _SIZE_LABEL.match(label)
        if match is None or match[1] in wanted:
            return None
        wanted[match[1]] = int(match[2])
    cpu, ram = wanted.get("cpu", 0), wanted.get("ram", 0)
    fitting = sorted(
        (size for size in pool.machine_sizes if size.cpu >= cpu and size.ram_gib >= ram),
        key=lambda size: (size.cpu, size.ram_gib),
    )
    if not fitting:
        return None
    return Sizing(tuple(sorted(extra)), tuple(size.machine_type for size in fitting))


class Router:
    """Routes jobs to pools and applies the owner/repository allow-lists."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pools = [(pool, type_pattern(pool.machine_type_labels)) for pool in settings.pools]

    def pool_for(self, labels: Iterable[str]) -> Pool | None:
        return self.route(labels)[0]

    def route(self, labels: Iterable[str]) -> tuple[Pool | None, Sizing | None]:
        """The pool that serves a job with ``labels``, and the sizing its labels chose (None: the pool's own types)."""
        wanted = frozenset(label.lower() for label in labels)
        if SELF_HOSTED not in wanted:
            return None, None
        best: tuple[tuple[int, int, bool, str], Pool, Sizing | None] | None = None
        for pool, types in self._pools:
            extra = wanted - pool.labels
            sizing = sizing_for(pool, extra, types) if extra else None
            if extra and sizing is None:
                continue
            key = (-pool.priority, len(pool.labels - wanted), sizing is not None, pool.name)
            if best is None or key < best[0]:
                best = (key, pool, sizing)
        return (best[1], best[2]) if best is not None else (None, None)

    def admit(self, job: WorkflowJob) -> Admission:
        return self.admit_parts(job.repository, job.owner, job.labels, job.private)

    def admit_parts(self, repository: str, owner: str, labels: Iterable[str], private: bool) -> Admission:
        labels = tuple(labels)
        if not self.allowed(repository, owner):
            return Admission(None, f"{repository} is not in the allowed owners or repositories")
        pool, sizing = self.route(labels)
        if pool is None:
            hint = self._sizing_hint(frozenset(label.lower() for label in labels))
            return Admission(None, f"no pool serves labels {sorted(label.lower() for label in labels)}{hint}")
        if not private and not pool.allow_public:
            return Admission(None, f"{repository} is public and pool {pool.name!r} does not allow public repositories")
        return Admission(pool, sizing=sizing)

    def _sizing_hint(self, wanted: frozenset[str]) -> str:
        """Why a pool that sizes from labels refused the job's extra labels, if one would otherwise serve it."""
        for pool, _ in self._pools:
            extra = sorted(label[:64] for label in wanted - pool.labels)
            if (pool.machine_type_labels or pool.machine_sizes) and len(extra) <= 2:
                return f" (pool {pool.name!r} does not accept {extra} as sizing labels)"
        return ""

    def allowed(self, repository: str, owner: str) -> bool:
        s = self._settings
        if not s.allowed_owners and not s.allowed_repos:
            return True
        return owner.lower() in s.allowed_owners or repository.lower() in s.allowed_repos
