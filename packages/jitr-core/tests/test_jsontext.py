"""jsontext writes the text the json module writes; queue messages and log lines written with it are unchanged."""

from __future__ import annotations

import enum
import io
import json
import logging
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jitr_core import jsontext
from jitr_core.logs import JsonFormatter, log_context, log_line
from jitr_core.messages import _ENCODER, JobMessage, LifecycleMessage, decode, encode, encode_job
from jitr_core.model import MAX_ID, WorkflowJob

KEYS = st.text(max_size=12)
FLAT = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and the infinities too: json spells them NaN, Infinity, -Infinity
    st.text(),  # quotes, backslashes, control and non-ASCII characters: escaped as json escapes them
    st.lists(st.text(), max_size=4),
    st.lists(st.text(), max_size=4).map(tuple),
)
OTHER = st.one_of(  # what jsontext leaves to the json module
    st.lists(st.integers(), min_size=1, max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.text().map(lambda text: type("Text", (str,), {})(text)),
    st.integers().map(lambda number: type("Number", (int,), {})(number)),
)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@settings(max_examples=300)
@given(st.dictionaries(KEYS, FLAT, max_size=8), st.data())
def test_a_writer_writes_what_json_writes(obj: dict[str, Any], data: st.DataObject) -> None:
    keys = tuple(obj)
    write = jsontext.writer(keys, tuple(map(type, obj.values())))

    assert write is not None
    assert write(tuple(obj.values())) == dumps(obj)
    fixed = {i: v for i, v in enumerate(obj.values()) if data.draw(st.booleans())}  # values written in ahead
    write = jsontext.writer(keys, tuple(None if i in fixed else type(v) for i, v in enumerate(obj.values())), fixed)
    assert write is not None
    assert write(tuple(v for i, v in enumerate(obj.values()) if i not in fixed)) == dumps(obj)


@given(st.dictionaries(KEYS, FLAT, max_size=4), KEYS, OTHER)
def test_what_a_writer_cannot_write_is_left_to_the_json_module(obj: dict[str, Any], key: str, other: Any) -> None:
    obj[key] = other
    write = jsontext.writer(tuple(obj), tuple(map(type, obj.values())))
    if write is not None:  # a list: the writer refuses it when it meets an item that is not a str
        try:
            text = write(tuple(obj.values()))
        except TypeError:
            return
        assert text == dumps(obj)  # a list of str after all


def test_keys_and_values_are_data_never_code() -> None:
    keys = ('"}{v0}', "%s{T0}", "\\", "{{", "\u00e9")
    values = ("{quote(v0)}", 1, None, ["{", "}"], "\\u0000")
    write = jsontext.writer(keys, tuple(map(type, values)))
    assert write is not None
    assert write(values) == dumps(dict(zip(keys, values, strict=True)))


# -- queue messages -------------------------------------------------------------------------------


def jobs() -> st.SearchStrategy[WorkflowJob]:
    ids = st.integers(min_value=0, max_value=MAX_ID)
    names = st.text(min_size=1, max_size=40)
    optional = st.none() | names
    segments = st.text(alphabet=st.characters(blacklist_characters="/"), min_size=1, max_size=40)
    return st.builds(
        WorkflowJob,
        action=st.sampled_from(["queued", "in_progress", "completed"]),
        job_id=ids,
        run_id=ids,
        run_attempt=st.integers(min_value=1, max_value=50),
        name=st.text(max_size=20),
        status=st.sampled_from(["queued", "in_progress", "completed"]),
        labels=st.lists(names, max_size=5).map(tuple),
        repository=st.tuples(segments, segments).map("/".join),  # the webhook's full_name: owner/name
        owner=names,
        private=st.booleans(),
        installation_id=st.none() | ids,
        conclusion=optional,
        runner_id=st.none() | ids,
        runner_name=optional,
        created_at=optional,
    )


@given(jobs(), st.text(max_size=64), st.floats(min_value=0, max_value=4e9))
def test_encode_job_is_encode_of_the_message_from_job(job: WorkflowJob, delivery_id: str, received_at: float) -> None:
    for cls in (JobMessage, LifecycleMessage):
        message = cls.from_job(job, delivery_id, received_at)
        fast, made = encode_job(cls, job, delivery_id, received_at), encode(message)
        assert fast == made
        assert decode(fast.body) == message


def test_a_message_jsontext_cannot_write_is_written_by_the_json_module() -> None:
    class Repository(str):
        pass

    class Attempt(enum.IntEnum):
        FIRST = 1

    message = JobMessage(1, 2, Repository("o/r"), "o", None, ("self-hosted",), True, attempt=Attempt.FIRST)
    expected = {"v": 1, "type": "job", **{name: getattr(message, name) for name in JobMessage.__dataclass_fields__}}
    assert encode(message).body == _ENCODER.encode(expected)


# -- log lines ------------------------------------------------------------------------------------


def jitr_style_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    """A logger set up as configure_logging sets up "jitr" (its own JSON handler, not propagating)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler._jitr = True  # type: ignore[attr-defined]
    parent = logging.getLogger(name)
    parent.handlers[:] = [handler]
    parent.propagate = False
    parent.setLevel(logging.INFO)
    return logging.getLogger(f"{name}.child"), stream


@settings(max_examples=150)
@given(
    st.dictionaries(st.sampled_from(["delivery_id", "job_id", "level", "message", "x"]), FLAT | OTHER, max_size=3),
    st.dictionaries(st.sampled_from(["queue", "reason", "time", "severity", "y"]), FLAT | OTHER, max_size=3),
)
def test_log_line_writes_what_the_logging_module_writes(context: dict[str, Any], fields: dict[str, Any]) -> None:
    logger, stream = jitr_style_logger("jitr-test-jsontext")
    with log_context(**context):
        log_line(logger, logging.INFO, "routed", **fields)
        logger.info("routed", extra=fields)
    fast, standard = stream.getvalue().splitlines()
    assert fast.partition(",")[2] == standard.partition(",")[2]  # the same text after the time
