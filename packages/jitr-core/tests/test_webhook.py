"""Webhook verification, parsing and routing against GitHub's real payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jitr_core.errors import JitrError, PayloadError, SignatureError
from jitr_core.webhook import READ_HEADERS, inspect, lower_headers, parse_workflow_job, read_headers, verify_signature

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SECRET = "test-webhook-secret"
LIMIT = 1024 * 1024


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(body: bytes, event: str = "workflow_job", **extra: str) -> dict[str, str]:
    return {
        "x-github-event": event,
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "x-hub-signature-256": sign(body),
        "content-type": "application/json",
        **extra,
    }


def test_githubs_documented_vector_verifies() -> None:
    verify_signature(
        "It's a Secret to Everybody",
        b"Hello, World!",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )


@pytest.mark.parametrize(
    ("name", "queue", "installation"),
    [
        ("queued.payload.json", "jobs", True),
        ("waiting.payload.json", None, True),
        ("in_progress.payload.json", "lifecycle", True),
        ("completed.success.with-organization.payload.json", "lifecycle", False),
    ],
)
def test_every_workflow_job_example_parses_and_routes(name: str, queue: str | None, installation: bool) -> None:
    body = (FIXTURES / name).read_bytes()
    event = inspect(headers(body), body, SECRET, LIMIT)
    raw = json.loads(body)
    assert event.queue == queue
    assert event.job is not None
    assert event.job.job_id == raw["workflow_job"]["id"]
    assert event.job.run_id == raw["workflow_job"]["run_id"]
    assert event.job.labels == tuple(raw["workflow_job"]["labels"])
    assert event.job.repository == raw["repository"]["full_name"]
    assert (event.job.installation_id is not None) == installation
    assert event.delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"


@pytest.mark.parametrize("name", ["ping.payload.json", "ping.with-organization.payload.json"])
def test_ping_is_acknowledged_without_a_route(name: str) -> None:
    body = (FIXTURES / name).read_bytes()
    event = inspect(headers(body, event="ping"), body, SECRET, LIMIT)
    assert event.event == "ping" and event.queue is None and event.job is None


def test_other_events_are_acknowledged_and_ignored() -> None:
    body = b'{"action":"requested"}'
    event = inspect(headers(body, event="workflow_run"), body, SECRET, LIMIT)
    assert event.queue is None and event.job is None


def test_header_names_are_case_insensitive() -> None:
    body = (FIXTURES / "queued.payload.json").read_bytes()
    mixed = {"X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": "d1", "X-Hub-Signature-256": sign(body)}
    assert inspect(lower_headers(mixed), body, SECRET, LIMIT).queue == "jobs"


FUNCTION_URL = {  # a function URL's delivery: GitHub's headers in lower case, and the URL's own
    "accept": "*/*",
    "user-agent": "GitHub-Hookshot/3f9c2a1",
    "x-github-hook-id": "412345678",
    "x-forwarded-for": "140.82.115.12",
    "x-amzn-trace-id": "Root=1-674e1c2b-5f302e550dcde3b12402207d",
}


@pytest.mark.parametrize(
    "delivered",
    [
        pytest.param(lambda h: {**FUNCTION_URL, **h}, id="lower-case names"),
        pytest.param(lambda h: {k.title(): v for k, v in {**FUNCTION_URL, **h}.items()}, id="title-case names"),
        pytest.param(lambda h: {**FUNCTION_URL, **h, "x-github-event": 7}, id="a value not a string"),
        pytest.param(lambda h: {k: v for k, v in h.items() if k != "content-type"}, id="no content type"),
    ],
)
def test_the_headers_read_are_those_lower_headers_gives_for_the_names_inspect_reads(delivered: Any) -> None:
    given = delivered(headers(b"{}"))
    lowered = lower_headers(given)
    assert read_headers(given) == {name: lowered[name] for name in READ_HEADERS if name in lowered}


def test_a_content_type_named_in_another_case_is_read_beside_lower_case_names() -> None:
    body = (FIXTURES / "queued.payload.json").read_bytes()
    given = {k: v for k, v in headers(body).items() if k != "content-type"} | {"Content-Type": "text/plain"}
    with pytest.raises(PayloadError) as info:
        inspect(read_headers(given), body, SECRET, LIMIT)
    assert info.value.status == 415


def test_a_single_altered_byte_is_rejected() -> None:
    body = (FIXTURES / "queued.payload.json").read_bytes()
    h = headers(body)
    tampered = body.replace(b'"queued"', b'"qeeued"', 1)
    with pytest.raises(SignatureError) as info:
        inspect(h, tampered, SECRET, LIMIT)
    assert info.value.status == 401


def test_reserialised_json_is_rejected() -> None:
    body = (FIXTURES / "queued.payload.json").read_bytes()
    h = headers(body)
    with pytest.raises(SignatureError):
        inspect(h, json.dumps(json.loads(body)).encode(), SECRET, LIMIT)


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "0" * 40,
        "sha256=" + "z" * 64,
        "sha256=" + "0" * 63,
        "garbage",
        "sha256=" + "0" * 64,
    ],
)
def test_missing_or_malformed_signatures_are_rejected(signature: str | None) -> None:
    body = b"{}"
    h = headers(body)
    if signature is None:
        del h["x-hub-signature-256"]
    else:
        h["x-hub-signature-256"] = signature
    with pytest.raises(SignatureError):
        inspect(h, body, SECRET, LIMIT)


def test_an_empty_secret_accepts_nothing() -> None:
    body = b"{}"
    with pytest.raises(SignatureError, match="secret is empty"):
        verify_signature("", body, "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest())


def test_the_wrong_secret_is_rejected() -> None:
    body = (FIXTURES / "queued.payload.json").read_bytes()
    with pytest.raises(SignatureError):
        inspect(headers(body), body, "another-secret", LIMIT)


def test_an_oversized_body_is_refused_before_anything_else() -> None:
    body = b"x" * 2048
    with pytest.raises(PayloadError) as info:
        inspect({}, body, SECRET, 1024)
    assert info.value.status == 413


@pytest.mark.parametrize("missing", ["x-github-event", "x-github-delivery"])
def test_missing_github_headers_are_rejected(missing: str) -> None:
    body = b"{}"
    h = headers(body)
    del h[missing]
    with pytest.raises(
        PayloadError,
        match=missing.replace("x-github-", "X-GitHub-").replace("event", "Event").replace("delivery", "Delivery"),
    ):
        inspect(h, body, SECRET, LIMIT)


def test_form_encoded_deliveries_get_a_clear_415() -> None:
    body = b"payload=%7B%7D"
    with pytest.raises(PayloadError, match="application/json") as info:
        inspect(headers(body, **{"content-type": "application/x-www-form-urlencoded"}), body, SECRET, LIMIT)
    assert info.value.status == 415


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("workflow_job"), "workflow_job is required"),
        (lambda p: p.update(action="exploded"), "action must be one of"),
        (lambda p: p["workflow_job"].update(id="12"), "workflow_job.id must be int"),
        (lambda p: p["workflow_job"].update(id=-1), "workflow_job.id must be int"),
        (lambda p: p["workflow_job"].update(labels="self-hosted"), "workflow_job.labels must be list"),
        (lambda p: p["workflow_job"].update(labels=[1]), "labels must be at most 64 non-empty strings"),
        (lambda p: p["workflow_job"].update(labels=["x"] * 65), "at most 64"),
        (lambda p: p["repository"].update(full_name="no-slash"), "owner/name"),
        (lambda p: p.update(installation=[]), "installation must be an object"),
        (lambda p: p["repository"].pop("owner"), "repository.owner is required"),
    ],
)
def test_malformed_payloads_say_what_is_wrong(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    payload = json.loads((FIXTURES / "queued.payload.json").read_bytes())
    mutate(payload)
    with pytest.raises(PayloadError, match=message):
        parse_workflow_job(payload)


def test_null_runner_fields_while_queued_are_accepted() -> None:
    payload = json.loads((FIXTURES / "queued.payload.json").read_bytes())
    payload["workflow_job"].update(runner_id=None, runner_name=None, runner_group_id=None)
    job = parse_workflow_job(payload)
    assert job.runner_name is None and job.runner_id is None


def test_a_float_run_id_is_read_as_an_integer() -> None:
    payload = json.loads((FIXTURES / "queued.payload.json").read_bytes())
    payload["workflow_job"]["run_id"] = float(payload["workflow_job"]["run_id"])
    assert isinstance(parse_workflow_job(payload).run_id, int)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), event=st.sampled_from(["workflow_job", "ping", "push", ""]))
def test_fuzzed_bytes_never_raise_anything_but_jitr_errors(body: bytes, event: str) -> None:
    try:
        inspect(headers(body, event=event), body, SECRET, LIMIT)
    except JitrError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    payload=st.fixed_dictionaries(
        {"action": st.sampled_from(["queued", "in_progress", "completed", "waiting", "x"]) | json_values},
        optional={
            "workflow_job": json_values
            | st.fixed_dictionaries(
                {},
                optional={
                    "id": json_values,
                    "run_id": json_values,
                    "labels": json_values,
                    "status": json_values,
                    "runner_name": json_values,
                    "name": json_values,
                },
            ),
            "repository": json_values
            | st.fixed_dictionaries(
                {}, optional={"full_name": json_values, "owner": json_values, "private": json_values}
            ),
            "installation": json_values,
        },
    )
)
def test_fuzzed_signed_payloads_never_raise_anything_but_jitr_errors(payload: dict) -> None:  # type: ignore[type-arg]
    body = json.dumps(payload).encode()
    try:
        inspect(headers(body), body, SECRET, LIMIT)
    except JitrError:
        pass


@pytest.mark.parametrize("digest", ["é" * 64, "\u0661" * 64, "0" * 63 + "\u00e9"])
def test_a_non_ascii_signature_is_refused_with_401(digest: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify_signature(SECRET, b"x", "sha256=" + digest)
    assert info.value.status == 401


def test_a_signed_deeply_nested_body_is_a_400() -> None:
    body = b"[" * 100_000
    with pytest.raises(PayloadError, match="too deeply") as info:
        inspect(headers(body), body, SECRET, LIMIT)
    assert info.value.status == 400


@pytest.mark.parametrize("field", ["id", "run_id", "runner_id", "run_attempt"])
@pytest.mark.parametrize("value", [2**63, 2**70, 1e300])
def test_ids_outside_githubs_64_bit_range_are_refused(field: str, value: float) -> None:
    payload = json.loads((FIXTURES / "queued.payload.json").read_bytes())
    payload["workflow_job"][field] = value
    with pytest.raises(PayloadError, match=f"workflow_job.{field} must be int in 0..{2**63 - 1}"):
        parse_workflow_job(payload)


def test_the_largest_ids_are_accepted() -> None:
    payload = json.loads((FIXTURES / "queued.payload.json").read_bytes())
    payload["workflow_job"].update(id=2**63 - 1, run_id=2**63 - 1)
    payload["installation"] = {"id": 2**63 - 1}
    job = parse_workflow_job(payload)
    assert job.job_id == job.run_id == job.installation_id == 2**63 - 1
    payload["installation"] = {"id": 2**63}
    with pytest.raises(PayloadError, match=r"installation\.id must be int"):
        parse_workflow_job(payload)


def test_names_from_the_payload_are_bounded() -> None:
    payload = json.loads((FIXTURES / "queued.payload.json").read_bytes())
    payload["repository"]["owner"]["login"] = "o" * 101
    with pytest.raises(PayloadError, match=r"repository\.owner\.login must be 1 to 100 characters"):
        parse_workflow_job(payload)
    payload = json.loads((FIXTURES / "queued.payload.json").read_bytes())
    payload["workflow_job"]["runner_name"] = "r" * 257
    with pytest.raises(PayloadError, match=r"workflow_job\.runner_name must be 1 to 256 characters"):
        parse_workflow_job(payload)
