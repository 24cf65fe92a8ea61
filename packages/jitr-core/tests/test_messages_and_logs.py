"""Queue messages round-trip and reject malformed input; logs are JSON and redact secrets."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jitr_core.errors import JitrError, PayloadError
from jitr_core.logs import JsonFormatter, log_context, log_line, register_secret
from jitr_core.messages import JobMessage, LifecycleMessage, decode, encode
from jitr_core.model import MAX_ATTEMPT, MAX_ID, MAX_NAME, runner_name_for


def test_messages_round_trip() -> None:
    job = JobMessage(1, 2, "o/r", "o", 5, ("self-hosted", "linux"), True, attempt=3, delivery_id="d", received_at=1.5)
    assert decode(encode(job).body) == job
    life = LifecycleMessage("completed", 1, 2, "o/r", "o", None, ("self-hosted",), "jitr-x-1-1", 9, "success")
    assert decode(encode(life).body) == life
    assert encode(job).attributes == {"type": "job", "job_id": "1"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("nope", "not JSON"),
        ("[1]", "must be a JSON object"),
        ('{"v": 9, "type": "job"}', "version must be 1"),
        ('{"v": 1, "type": "party"}', "type must be one of"),
        ('{"v": 1, "type": "job", "job_id": 1}', "lacks 'run_id'"),
        (
            '{"v":1,"type":"job","job_id":1,"run_id":2,"repository":"o/r","owner":"o","installation_id":null,'
            '"labels":"self-hosted","private":false}',
            "'labels' must be",
        ),
        (
            '{"v":1,"type":"job","job_id":-4,"run_id":2,"repository":"o/r","owner":"o","installation_id":null,'
            '"labels":[],"private":false}',
            "'job_id' must be int",
        ),
        *(
            (
                '{"v":1,"type":"job","job_id":1,"run_id":2,"repository":"o/r","owner":"o","installation_id":null,'
                f'"labels":[],"private":false,"received_at":{received_at}}}',
                "'received_at' must be float (epoch seconds)",
            )
            for received_at in ("1" + "0" * 400, "1e400", "NaN", "-Infinity", "-1")
        ),
        *(
            (
                f'{{"v":1,"type":"job","job_id":1,"run_id":2,"repository":"{repository}","owner":"o",'
                '"installation_id":null,"labels":[],"private":false}',
                "'repository' must be 'owner/name'",
            )
            for repository in ("", "/r", "o/", "o", "o/r/x")
        ),
        (
            '{"v":1,"type":"lifecycle","action":"completed","job_id":1,"run_id":2,"repository":"o/r","owner":"",'
            '"installation_id":null,"labels":[]}',
            "'owner' must be a non-empty str",
        ),
    ],
)
def test_malformed_messages_say_what_is_wrong(body: str, message: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(message)):
        decode(body)


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzzed_messages_raise_only_payload_errors(body: bytes | str) -> None:
    try:
        decode(body)
    except JitrError:
        pass


def test_logs_are_json_with_context_and_redact_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("jitr.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    register_secret("ghs_supersecrettoken123")
    with log_context(delivery_id="d-1", job_id=7, runner_name="jitr-a-7-1"):
        logger.info("minted token ghs_supersecrettoken123", extra={"outcome": "ok"})
    entry = json.loads(stream.getvalue())
    assert entry["delivery_id"] == "d-1" and entry["job_id"] == 7 and entry["runner_name"] == "jitr-a-7-1"
    assert entry["outcome"] == "ok"
    assert "supersecret" not in stream.getvalue() and "[REDACTED]" in entry["message"]


def test_a_deeply_nested_message_is_poison_not_a_crash() -> None:
    with pytest.raises(PayloadError, match="too deeply"):
        decode("[" * 100_000)


@pytest.mark.parametrize(("field", "value"), [("job_id", 2**63), ("run_id", 2**70), ("attempt", 10_000)])
def test_message_ids_and_attempts_are_bounded(field: str, value: int) -> None:
    body = json.loads(encode(JobMessage(1, 2, "o/r", "o", 5, ("self-hosted",), False)).body)
    body[field] = value
    with pytest.raises(PayloadError, match=f"message field {field!r} must be int"):
        decode(json.dumps(body))


def test_the_longest_runner_name_fits_every_cloud() -> None:
    name = runner_name_for("P" * 80, MAX_ID, MAX_ATTEMPT)
    assert len(name) <= MAX_NAME
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name)
    with pytest.raises(ValueError, match="job id must be in"):
        runner_name_for("p", MAX_ID + 1, 1)


@pytest.mark.parametrize(
    "secret", ["line\nbreak-secret-1", 'quote"d-secret-22', "n\u00f6n-\u00e4scii-secret-3", "tab\tand\\slash-4"]
)
def test_secrets_that_json_escapes_are_still_redacted(secret: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("jitr.test-logs-escaped")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    register_secret(secret)
    try:
        raise ValueError(f"bad {secret}")
    except ValueError:
        with log_context(runner_name=f"r-{secret}"):
            logger.exception(
                f"minted {secret}", extra={"report": {"nested": [secret, {secret: 1}]}, "obj": ValueError(secret)}
            )
    logger.removeHandler(handler)
    text = stream.getvalue()
    entry = json.loads(text)
    assert secret not in json.dumps(entry) and secret not in text
    assert json.dumps(secret)[1:-1] not in text and json.dumps(secret, ensure_ascii=False)[1:-1] not in text
    assert entry["message"] == "minted [REDACTED]" and entry["runner_name"] == "r-[REDACTED]"
    assert entry["report"] == {"nested": ["[REDACTED]", {"[REDACTED]": 1}]} and entry["obj"] == "[REDACTED]"
    assert "[REDACTED]" in entry["exception"]


def _jitr_style_logger(name: str) -> tuple[logging.Logger, logging.StreamHandler[io.StringIO], io.StringIO]:
    """A logger set up as configure_logging sets up "jitr" (its own JSON handler, not propagating)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler._jitr = True  # type: ignore[attr-defined]
    parent = logging.getLogger(name)
    parent.handlers[:] = [handler]
    parent.propagate = False
    parent.setLevel(logging.INFO)
    return logging.getLogger(f"{name}.child"), handler, stream


def test_log_line_writes_the_line_the_logging_module_would() -> None:
    logger, _, stream = _jitr_style_logger("jitr-test-line")
    register_secret("ghs_linesecrettoken456")
    with log_context(delivery_id="d-1", job_id=7, action="queued"):
        log_line(logger, logging.INFO, "routed", queue="jobs", reason="ghs_linesecrettoken456", labels=("a", "b"))
        logger.info("routed", extra={"queue": "jobs", "reason": "ghs_linesecrettoken456", "labels": ("a", "b")})
    fast, standard = (json.loads(line) for line in stream.getvalue().splitlines())
    assert list(fast) == list(standard)  # the same fields in the same order
    assert {**fast, "time": None} == {**standard, "time": None}
    assert fast["reason"] == "[REDACTED]" and fast["delivery_id"] == "d-1" and fast["queue"] == "jobs"


def test_log_line_honours_levels_filters_and_other_handlers() -> None:
    logger, handler, stream = _jitr_style_logger("jitr-test-line-rules")
    logger.parent.setLevel(logging.WARNING)  # type: ignore[union-attr]
    log_line(logger, logging.INFO, "below the level")
    assert stream.getvalue() == ""
    log_line(logger, logging.WARNING, "at the level")
    assert json.loads(stream.getvalue())["level"] == "WARNING"

    seen: list[logging.LogRecord] = []
    handler.addFilter(lambda record: seen.append(record) or record.getMessage() != "dropped")
    log_line(logger, logging.WARNING, "dropped", queue="jobs")
    log_line(logger, logging.WARNING, "kept", queue="jobs")
    assert [r.getMessage() for r in seen] == ["dropped", "kept"] and seen[1].queue == "jobs"  # type: ignore[attr-defined]
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["at the level", "kept"]
    handler.filters.clear()

    other = logging.StreamHandler(io.StringIO())
    logger.addHandler(other)  # a second handler on the way: both get the record
    log_line(logger, logging.ERROR, "twice", queue="jobs")
    logger.removeHandler(other)
    assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "twice"
    assert other.stream.getvalue() == "twice\n"

    with pytest.raises(KeyError):  # a reserved name is refused as logging refuses it
        log_line(logger, logging.ERROR, "clash", message="x")
