"""Queue messages and their versioned JSON form.

Messages carry identifiers and labels only — never a token, a JIT config or a payload — so a
queue or a dead-letter queue can be read by an operator without exposing anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

from .errors import PayloadError
from .model import MAX_ATTEMPT, MAX_ID, QueueMessage, WorkflowJob

VERSION = 1
JOBS_QUEUE = "jobs"
LIFECYCLE_QUEUE = "lifecycle"


@dataclass(frozen=True, slots=True)
class JobMessage:
    """Work for scaleup: find a runner for this job (``attempt`` counts jitr's launches)."""

    job_id: int
    run_id: int
    repository: str
    owner: str
    installation_id: int | None
    labels: tuple[str, ...]
    private: bool
    attempt: int = 1
    delivery_id: str = ""
    received_at: float = 0.0
    reason: str = "webhook"
    run_attempt: int = 1  # GitHub's attempt of the run (a re-run's jobs come with a higher one)

    @classmethod
    def from_job(cls, job: WorkflowJob, delivery_id: str, received_at: float) -> JobMessage:
        return cls(
            job_id=job.job_id,
            run_id=job.run_id,
            repository=job.repository,
            owner=job.owner,
            installation_id=job.installation_id,
            labels=job.labels,
            private=job.private,
            delivery_id=delivery_id,
            received_at=received_at,
            run_attempt=job.run_attempt,
        )


@dataclass(frozen=True, slots=True)
class LifecycleMessage:
    """A job started (``in_progress``) or ended (``completed``) on a runner, for lifecycle."""

    action: str
    job_id: int
    run_id: int
    repository: str
    owner: str
    installation_id: int | None
    labels: tuple[str, ...]
    runner_name: str | None = None
    runner_id: int | None = None
    conclusion: str | None = None
    delivery_id: str = ""
    received_at: float = 0.0
    run_attempt: int = 1

    @classmethod
    def from_job(cls, job: WorkflowJob, delivery_id: str, received_at: float) -> LifecycleMessage:
        return cls(
            action=job.action,
            job_id=job.job_id,
            run_id=job.run_id,
            repository=job.repository,
            owner=job.owner,
            installation_id=job.installation_id,
            labels=job.labels,
            runner_name=job.runner_name,
            runner_id=job.runner_id,
            conclusion=job.conclusion,
            delivery_id=delivery_id,
            received_at=received_at,
            run_attempt=job.run_attempt,
        )


Message = JobMessage | LifecycleMessage
_TYPES: dict[str, type[JobMessage] | type[LifecycleMessage]] = {"job": JobMessage, "lifecycle": LifecycleMessage}
_TYPE_OF = {JobMessage: "job", LifecycleMessage: "lifecycle"}
# Each type's field names in order: a message's fields are flat (ids, strings, a tuple of
# labels), so reading them directly gives what dataclasses.asdict would, without its deep copy.
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in _TYPE_OF}
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)  # json.dumps builds one per call


def encode(message: Message) -> QueueMessage:
    """The versioned JSON body plus attributes a queue can filter on."""
    cls = type(message)
    kind = _TYPE_OF[cls]
    body: dict[str, Any] = {"v": VERSION, "type": kind}
    for name in _FIELDS[cls]:
        body[name] = getattr(message, name)
    return QueueMessage(body=_ENCODER.encode(body), attributes={"type": kind, "job_id": str(message.job_id)})


def decode(body: str | bytes) -> Message:
    """Parse a queue message; anything malformed raises :class:`PayloadError` saying what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"queue message is not JSON: {exc}") from None
    except RecursionError:
        raise PayloadError("queue message nests JSON too deeply") from None
    if not isinstance(data, dict):
        raise PayloadError(f"queue message must be a JSON object, found {type(data).__name__}")
    if data.get("v") != VERSION:
        raise PayloadError(f"queue message version must be {VERSION}, found {data.get('v')!r}")
    kind = data.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise PayloadError(f"queue message type must be one of {sorted(_TYPES)}, found {kind!r}")
    return _build(cls, data)


def _build(cls: type[JobMessage] | type[LifecycleMessage], data: Mapping[str, Any]) -> Message:
    values: dict[str, Any] = {}
    for name, field in cls.__dataclass_fields__.items():
        required = field.default is MISSING
        if name not in data:
            if required:
                raise PayloadError(f"{_TYPE_OF[cls]} message lacks {name!r}")
            continue
        values[name] = _check(name, data[name], str(field.type))
    return cls(**values)


def _check(name: str, value: Any, annotation: str) -> Any:
    optional = "None" in annotation
    if value is None and optional:
        return None
    if annotation.startswith("int"):
        limit = MAX_ATTEMPT if name == "attempt" else MAX_ID
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit
    elif annotation.startswith("float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif annotation.startswith("bool"):
        ok = isinstance(value, bool)
    elif annotation.startswith("str"):
        ok = isinstance(value, str) and len(value) <= 512
    elif annotation.startswith("tuple"):
        ok = isinstance(value, list) and len(value) <= 64 and all(isinstance(v, str) and len(v) <= 256 for v in value)
        value = tuple(value) if ok else value
    else:  # pragma: no cover - every field type is listed above
        raise AssertionError(annotation)
    if not ok:
        raise PayloadError(f"message field {name!r} must be {annotation}, found {value!r:.80}")
    return value
