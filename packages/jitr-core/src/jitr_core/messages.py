"""Queue messages and their versioned JSON form.

Messages carry identifiers and labels only — never a token, a JIT config or a payload — so a
queue or a dead-letter queue can be read by an operator without exposing anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from operator import attrgetter, itemgetter
from typing import Any

from . import jsontext
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
# Each type's field names in order, and a getter of their values: a message's fields are flat
# (ids, strings, a tuple of labels), so reading them directly gives what dataclasses.asdict
# would, without its deep copy.
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in _TYPE_OF}
_VALUES = {cls: attrgetter(*names) for cls, names in _FIELDS.items()}  # several fields each: a tuple
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)  # json.dumps builds one per call
MAX_WRITERS = 64  # per message type: combinations of the optional fields' types given a writer


class _Body:
    """How a message type's body is written: {"v": VERSION, "type": kind, **fields}, by a jsontext
    writer per combination of value types (an optional field set or None, say); values it does not
    write (a str subclass, say) go through _ENCODER, which writes the same text."""

    __slots__ = ("fields", "kind", "writers")

    def __init__(self, cls: type[Message]) -> None:
        self.fields = _FIELDS[cls]
        self.kind = _TYPE_OF[cls]
        self.writers: dict[tuple[type, ...], jsontext.Writer | None] = {}

    def message(self, values: tuple[Any, ...], job_id: Any) -> QueueMessage:
        """The queue message whose body has these field values."""
        write = self.writers.get(tuple(map(type, values)))
        if write is not None:
            try:
                return QueueMessage(write(values), {"type": self.kind, "job_id": str(job_id)})
            except TypeError:  # labels holding something other than str
                pass
        return QueueMessage(self._text(values), {"type": self.kind, "job_id": str(job_id)})

    def _text(self, values: tuple[Any, ...]) -> str:
        """The body of values of types without a writer yet (one is made, up to MAX_WRITERS), or none."""
        types = tuple(map(type, values))
        if types not in self.writers and len(self.writers) < MAX_WRITERS:
            keys, fixed = ("v", "type", *self.fields), {0: VERSION, 1: self.kind}
            self.writers[types] = jsontext.writer(keys, (None, None, *types), fixed)
        write = self.writers.get(types)
        if write is not None:
            try:
                return write(values)
            except TypeError:
                pass
        return _ENCODER.encode({"v": VERSION, "type": self.kind, **dict(zip(self.fields, values, strict=True))})


_BODIES = {cls: _Body(cls) for cls in _TYPE_OF}


def encode(message: Message) -> QueueMessage:
    """The versioned JSON body plus attributes a queue can filter on."""
    cls = type(message)
    return _BODIES[cls].message(_VALUES[cls](message), message.job_id)


class _FromJob:
    """How ``cls.from_job`` fills the fields of ``cls``, for :func:`encode_job`: a field named as a
    :class:`WorkflowJob` field is the job's, ``delivery_id`` and ``received_at`` are the arguments,
    the others keep their defaults, which the writers hold already (a test holds encode_job to
    ``encode(cls.from_job(...))``)."""

    __slots__ = ("fixed", "job_values", "keys", "kind", "pick", "positions", "writers")

    def __init__(self, message: type[Message], shared: list[str], defaults: dict[str, Any]) -> None:
        names = _FIELDS[message]
        sources = [*shared, "delivery_id", "received_at"]
        self.kind = _TYPE_OF[message]
        self.keys = ("v", "type", *names)
        self.job_values = attrgetter(*shared)  # the job's fields, then the two arguments: pick's sources
        self.pick = itemgetter(*(sources.index(name) for name in names if name not in defaults))
        self.positions = tuple(2 + i for i, name in enumerate(names) if name not in defaults)  # of what pick picks
        self.fixed = {0: VERSION, 1: self.kind, **{2 + names.index(name): v for name, v in defaults.items()}}
        self.writers: dict[tuple[type, ...], jsontext.Writer | None] = {}

    @classmethod
    def of(cls, message: type[Message]) -> _FromJob | None:
        """The plan, or None when a field is none of the three kinds (encode_job then uses from_job)."""
        arguments = ("delivery_id", "received_at")
        of_job = {f.name for f in fields(WorkflowJob)} - set(arguments)
        shared = [name for name in _FIELDS[message] if name in of_job]
        defaulted = [f for f in fields(message) if f.name not in of_job and f.name not in arguments]
        if len(shared) < 2 or any(f.default is MISSING for f in defaulted):  # attrgetter of one name: no tuple
            return None
        return cls(message, shared, {f.name: f.default for f in defaulted})

    def message(self, job: WorkflowJob, delivery_id: str, received_at: float) -> QueueMessage | None:
        """The message of this job, or None for values the writers do not write (a str subclass, say)."""
        values = self.pick((*self.job_values(job), delivery_id, received_at))
        types = tuple(map(type, values))
        try:
            write = self.writers[types]
        except KeyError:
            write = self._writer(types)
        if write is None:
            return None
        try:
            return QueueMessage(write(values), {"type": self.kind, "job_id": str(job.job_id)})
        except TypeError:  # labels holding something other than str
            return None

    def _writer(self, types: tuple[type, ...]) -> jsontext.Writer | None:
        """The writer of these types (None: the json module's), kept for up to MAX_WRITERS of them."""
        all_types: list[type | None] = [None] * len(self.keys)
        for position, kind in zip(self.positions, types, strict=True):
            all_types[position] = kind
        write = jsontext.writer(self.keys, tuple(all_types), self.fixed)
        if len(self.writers) < MAX_WRITERS:
            self.writers[types] = write
        return write


_FROM_JOB = {cls: _FromJob.of(cls) for cls in _TYPE_OF}


def encode_job(cls: type[Message], job: WorkflowJob, delivery_id: str, received_at: float) -> QueueMessage:
    """``encode(cls.from_job(job, delivery_id, received_at))``, without making the message (the webhook's path)."""
    plan = _FROM_JOB[cls]
    message = plan.message(job, delivery_id, received_at) if plan is not None else None
    return message if message is not None else encode(cls.from_job(job, delivery_id, received_at))


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


def _full_name(value: str) -> bool:
    owner, slash, name = value.partition("/")
    return bool(owner and slash and name) and "/" not in name


MAX_EPOCH_S = 1e11  # past the year 5000: any time a message carries
# what the webhook accepted these fields as; a message that says otherwise was not made by jitr
_SHAPES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "repository": ("'owner/name'", _full_name),
    "owner": ("a non-empty str", bool),
}


def _check(name: str, value: Any, annotation: str) -> Any:
    optional = "None" in annotation
    if value is None and optional:
        return None
    if annotation.startswith("int"):
        limit = MAX_ATTEMPT if name == "attempt" else MAX_ID
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit
    elif annotation.startswith("float"):  # epoch seconds: NaN, infinities and huge numbers fail
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < MAX_EPOCH_S
        annotation = f"{annotation} (epoch seconds)"
    elif annotation.startswith("bool"):
        ok = isinstance(value, bool)
    elif annotation.startswith("str"):
        shape = _SHAPES.get(name)
        ok = isinstance(value, str) and len(value) <= 512 and (shape is None or shape[1](value))
        annotation = shape[0] if shape else annotation
    elif annotation.startswith("tuple"):
        ok = isinstance(value, list) and len(value) <= 64 and all(isinstance(v, str) and len(v) <= 256 for v in value)
        value = tuple(value) if ok else value
    else:  # pragma: no cover - every field type is listed above
        raise AssertionError(annotation)
    if not ok:
        raise PayloadError(f"message field {name!r} must be {annotation}, found {value!r:.80}")
    return value
