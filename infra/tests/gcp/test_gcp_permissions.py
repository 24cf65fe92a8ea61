"""Permission coverage: each function's service account in infra/gcp/terraform grants exactly what the
function calls. The calls are recorded in an end-to-end run of the six functions with the
settings the module renders (see gcp_iac_e2e), each mapped to its IAM permission through
gcp_permissions.json (sourced from Google's documentation).

The run reads the first job's JIT config from its VM's startup script, so the example's first
pool is put on ``handoff = "metadata"`` here; its second pool keeps one warm VM on the broker
(the default handoff), so the run also covers scaledown filling a warm pool and the broker
handing a warm VM its job's config, and retiring a runner GitHub will not serve."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytest.importorskip("jitr_gcp", reason="the gcp extra is not installed")
pytest.importorskip("functions_framework", reason="the gcp extra is not installed")
pytest.importorskip("hcl2", reason="python-hcl2 is not installed")

from gcp_iac_e2e import FUNCTIONS, Run, needed, run, table
from gcp_iac_terraform import deployed_inputs, evaluate, resources, unquote
from jitr_gcp.testing.emulators import Emulator

GRANTS = (
    "{ roles = local.custom_roles, publishes = local.publishes, secrets = local.reads_secrets,"
    ' topics = merge(local.topic_names, { for q, n in local.dead_letter_topic_names : "${q}-dead-letter" => n }),'
    " secret_names = local.secret_names, runner = local.service_account_emails.runner,"
    " launchers = local.launchers, timeouts = { for name, f in local.functions : name => f.timeout_s } }"
)


@pytest.fixture(scope="module")
def inputs() -> dict[str, Any]:
    """The example's, in a project of this process's own (pytest-xdist workers share the emulators):
    its first pool on ``handoff = "metadata"``, its second with one warm VM on the broker, and the
    broker's hold of a warm VM's call short (the run waits it out)."""
    example = deployed_inputs()
    first, second, *rest = example["pools"]
    pools = [{**first, "handoff": "metadata"}, {**second, "warm": 1}, *rest]
    extra = {**(example.get("extra_settings") or {}), "JITR_WARM_HOLD_S": "1"}
    return {**example, "project_id": f"jitr-e2e-{uuid.uuid4().hex[:10]}", "pools": pools, "extra_settings": extra}


@pytest.fixture(scope="module")
def grants(inputs: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = evaluate(GRANTS, inputs)
    return values


@pytest.fixture(scope="module")
def recorded(
    pubsub_emulator: Emulator,
    firestore_emulator: Emulator,
    grants: dict[str, Any],
    inputs: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    settings: dict[str, str] = evaluate("local.function_environment", inputs)
    return run(settings, grants["timeouts"], pubsub_emulator, firestore_emulator, tmp_path_factory.mktemp("e2e"))


def granted(grants: dict[str, Any], function: str) -> set[tuple[str, str]]:
    """(permission, resource) pairs the module grants ``function``'s account; "" is the project."""
    roles = table()["roles"]
    out = {(p, "") for p in grants["roles"][function]}
    for topic in grants["publishes"][function]:
        out |= {(p, grants["topics"][topic]) for p in roles["roles/pubsub.publisher"]["permissions"]}
    for secret in grants["secrets"][function]:
        out |= {(p, grants["secret_names"][secret]) for p in roles["roles/secretmanager.secretAccessor"]["permissions"]}
    if function in grants["launchers"]:
        out.add(("iam.serviceAccounts.actAs", grants["runner"]))
    return out


def needs(recorded: Run, function: str) -> set[tuple[str, str]]:
    permissions = table()
    out: set[tuple[str, str]] = set()
    for entry in recorded.calls[function]:
        out |= needed(entry, permissions)
    return out


def test_the_run_did_everything_it_set_out_to(recorded: Run, grants: dict[str, Any]) -> None:
    assert recorded.steps == [
        "job served",
        "surplus VM deleted",
        "poison dead-lettered",
        "warm VM handed a job",
        "unserved warm job dead-lettered",
        "periodic runs",
    ]
    assert grants["launchers"] == ["scaleup", "scaledown"]  # scaledown fills the warm pool
    assert all(recorded.calls[f] for f in FUNCTIONS), {f: len(c) for f, c in recorded.calls.items()}


def test_the_recorder_saw_every_request_the_fakes_answered(recorded: Run) -> None:
    assert recorded.recorded_rest == recorded.fake_requests > 0
    assert not [e for c in recorded.calls.values() for e in c if "describe_error" in e]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_call_is_granted(recorded: Run, grants: dict[str, Any], function: str) -> None:
    missing = {
        (permission, resource)
        for permission, resource in needs(recorded, function)
        if (permission, resource) not in granted(grants, function) and (permission, "") not in granted(grants, function)
    }
    assert not missing, f"{function} calls what its service account is not granted: {sorted(missing)}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_grant_is_used_or_has_a_reason(recorded: Run, grants: dict[str, Any], function: str) -> None:
    used = needs(recorded, function)
    used_permissions = {p for p, _ in used}
    reasons = table()["unexercised"].get(function, {})
    unused = {
        (permission, resource)
        for permission, resource in granted(grants, function)
        if (permission, resource) not in used and not (resource == "" and permission in used_permissions)
    }
    unexplained = sorted(g for g in unused if g[0] not in reasons)
    assert not unexplained, f"{function} is granted what it never calls, with no reason given: {unexplained}"
    stale = sorted(set(reasons) - {p for p, _ in unused})
    assert not stale, f"gcp_permissions.json gives reasons for grants {function} uses or does not have: {stale}"


def test_every_documented_call_has_a_source() -> None:
    permissions = table()
    rules = [*permissions["grpc"].values(), *permissions["rest"], *permissions["roles"].values()]
    assert all(str(rule.get("source", "")).startswith("https://cloud.google.com/") for rule in rules)


def test_the_bindings_are_the_lists_the_test_checks() -> None:
    """iam.tf grants the function accounts what permissions.tf lists, and nothing else."""
    found = resources()
    custom = found[("google_project_iam_custom_role", "function")]
    assert custom["for_each"].startswith("${{for name, permissions in local.custom_roles")
    assert custom["permissions"] == "${each.value}"
    binding = found[("google_project_iam_member", "function")]
    assert binding["for_each"] == "${google_project_iam_custom_role.function}"
    assert binding["member"] == "${google_service_account.this[each.key].member}"
    publisher = found[("google_pubsub_topic_iam_member", "publisher")]
    assert (publisher["for_each"], unquote(publisher["role"])) == ("${local.topic_grants}", "roles/pubsub.publisher")
    accessor = found[("google_secret_manager_secret_iam_member", "accessor")]
    assert (accessor["for_each"], unquote(accessor["role"])) == (
        "${local.secret_grants}",
        "roles/secretmanager.secretAccessor",
    )
    act_as = found[("google_service_account_iam_member", "scaleup_acts_as_runner")]
    assert act_as["service_account_id"] == '${google_service_account.this["runner"].name}'
    assert act_as["member"] == '${google_service_account.this["scaleup"].member}'
    assert "count" not in act_as
    # scaledown's, as local.launchers lists it (where it fills warm pools)
    act_as = found[("google_service_account_iam_member", "scaledown_acts_as_runner")]
    assert act_as["service_account_id"] == '${google_service_account.this["runner"].name}'
    assert act_as["member"] == '${google_service_account.this["scaledown"].member}'
    assert act_as["count"] == '${contains(local.launchers, "scaledown") ? 1 : 0}'
    assert unquote(found[("google_project_iam_custom_role", "act_as")]["permissions"]) == ["iam.serviceAccounts.actAs"]
    # Every binding whose member is a function's account is one of the above.
    expected = {
        ("google_project_iam_member", "function"),
        ("google_pubsub_topic_iam_member", "publisher"),
        ("google_secret_manager_secret_iam_member", "accessor"),
        ("google_service_account_iam_member", "scaleup_acts_as_runner"),
        ("google_service_account_iam_member", "scaledown_acts_as_runner"),
    }
    functions = [f'google_service_account.this["{f}"]' for f in FUNCTIONS]
    binds_function = {
        key
        for key, body in found.items()
        if "member" in body
        and (
            body["member"] in ("${google_service_account.this[each.value.function].member}",)
            or any(f in str(body["member"]) for f in functions)
            or key == ("google_project_iam_member", "function")
        )
    }
    assert binds_function == expected
