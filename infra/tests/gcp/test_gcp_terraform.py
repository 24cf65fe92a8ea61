"""infra/gcp/terraform and examples/gcp: the HCL parses, the settings the module renders are what jitr's
settings loader accepts, and the Firestore indexes and TTL policy are the ones jitr_gcp's queries need.

The Google provider cannot be downloaded here, so nothing is planned; the module's variable-only
files are evaluated by ``terraform console`` with the example's values (see gcp_iac_terraform)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hcl2", reason="python-hcl2 is not installed")

from gcp_iac_terraform import (
    EXAMPLE,
    INDEXES,
    MODULE,
    PROJECT_NUMBER,
    TerraformError,
    blocks,
    deployed_inputs,
    evaluate,
    example_inputs,
    load,
    metadata_inputs,
    resources,
    unquote,
)
from jitr_core.settings import Settings

FUNCTIONS = ("webhook", "scaleup", "lifecycle", "scaledown", "rebalancer")


@pytest.fixture(scope="module")
def environment() -> dict[str, str]:
    """The example's settings; its pools leave handoff unset, so they use the broker (the default)."""
    env: dict[str, str] = evaluate("local.function_environment", deployed_inputs())
    return env


@pytest.mark.parametrize("path", sorted([*MODULE.glob("*.tf"), *EXAMPLE.glob("*.tf")]), ids=lambda p: p.name)
def test_the_module_and_the_example_parse(path: Path) -> None:
    assert load(path)


def test_the_example_values_parse_and_fill_every_required_input() -> None:
    required = {name for name, body in blocks(_module_variables(), "variable").items() if "default" not in body}
    inputs = example_inputs()
    assert required <= {name for name, value in inputs.items() if value is not None}
    assert set(inputs) <= set(blocks(_module_variables(), "variable"))


def test_the_example_gives_the_project_number_its_broker_needs() -> None:
    """Its pools leave handoff unset (the broker), so its plan needs project_number (functions.tf's precondition)."""
    inputs = example_inputs()
    assert _precondition_holds(inputs), "examples/gcp's plan would stop: no project_number for the broker's URL"


def test_versions_allow_terraform_1_5_opentofu_and_google_5() -> None:
    terraform = load(MODULE / "versions.tf")["terraform"][0]
    assert unquote(terraform["required_version"]) == ">= 1.5.0"
    google = terraform["required_providers"][0]["google"]
    assert unquote(google["source"]) == "hashicorp/google"
    assert unquote(google["version"]).startswith(">= 5.0")


def test_every_variable_and_output_is_described_and_typed() -> None:
    for name, body in blocks(_module_variables(), "variable").items():
        assert unquote(body.get("description", "")), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"
    for name, body in blocks(load(MODULE / "outputs.tf"), "output").items():
        assert unquote(body.get("description", "")), f"output {name} has no description"
    assert {"webhook_url", "topics", "service_accounts"} <= set(blocks(load(MODULE / "outputs.tf"), "output"))


def test_pools_are_validated() -> None:
    pools = blocks(_module_variables(), "variable")["pools"]
    assert len(pools["validation"]) >= 8


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_gets_settings_jitr_loads(environment: dict[str, str], function: str) -> None:
    """The same variables for every function; the loader and the GCP plugin's validation accept them."""
    from jitr_gcp.config import gcp_config

    settings = Settings.from_env(environment)
    assert {settings.provider(role) for role in ("vm", "queue", "store", "secrets")} == {"gcp"}
    gcp = gcp_config(settings)
    inputs = example_inputs()
    project = inputs["project_id"]
    assert gcp.project == project
    assert gcp.zones == tuple(inputs["zones"])
    assert gcp.subnetwork == inputs["subnetwork"] and not gcp.external_ip
    assert gcp.service_account == f"jitr-runner@{inputs['project_id']}.iam.gserviceaccount.com"
    assert gcp.queue("jobs").topic == f"projects/{inputs['project_id']}/topics/jitr-jobs"
    assert settings.github_app_id == inputs["github_app_id"]
    assert settings.allowed_owners == frozenset(inputs["allowed_owners"])
    assert settings.secrets == {
        "webhook_secret": f"projects/{project}/secrets/{inputs['webhook_secret_id']}",
        "github_app_private_key": f"projects/{project}/secrets/{inputs['github_app_private_key_secret_id']}",
    }


def test_pools_render_as_the_example_declares_them(environment: dict[str, str]) -> None:
    settings = Settings.from_env(environment)
    declared = example_inputs()["pools"]
    assert [p.name for p in settings.pools] == [p["name"] for p in declared]
    for pool, raw in zip(settings.pools, declared, strict=True):
        assert pool.labels == frozenset(raw["labels"])
        assert pool.machine_types == tuple(raw["machine_types"])
        assert pool.image == raw["image"]
        assert pool.placements == tuple(raw["zones"])
        assert pool.max_runners == raw["max_runners"]
        assert pool.arch == raw.get("arch", "x64")
        assert dict(pool.options) == raw.get("options", {})
        assert pool.spot and pool.disk_gb == 30  # left unset: jitr's defaults
        assert pool.handoff == "broker"  # left unset: the broker
    # the handoff is written out, so the functions never depend on jitr's default
    assert [p["handoff"] for p in json.loads(environment["JITR_POOLS"])] == ["broker"] * len(declared)


def test_rerun_on_interruption_renders_into_the_pools() -> None:
    inputs = deployed_inputs()
    first, *rest = inputs["pools"]
    pools = evaluate("local.pool_settings", {**inputs, "pools": [{**first, "rerun_on_interruption": True}, *rest]})
    assert [p.get("rerun_on_interruption") for p in pools] == [True] + [None] * len(rest)  # unset: jitr's default
    loaded = Settings.from_mapping({"pools": pools, "broker_url": "https://broker.example/"}).pools
    assert [p.rerun_on_interruption for p in loaded] == [True] + [False] * len(rest)


def test_extra_settings_may_not_replace_the_pools() -> None:
    """The pools come from ``pools`` alone: the grants warm pools need are derived from them."""
    inputs = {**deployed_inputs(), "extra_settings": {"JITR_POOLS": "[]"}}
    with pytest.raises(TerraformError, match="extra_settings must not set JITR_POOLS"):
        evaluate("local.function_environment", inputs)


def test_every_setting_the_docs_mark_required_is_set(environment: dict[str, str]) -> None:
    """Rows whose default is "required" in the settings tables of the docs."""
    docs = Path(__file__).resolve().parents[3] / "docs"
    required_pool = _required(docs / "embedded-serve.md")
    required_gcp = _required(docs / "gcp-configuration.md")
    assert {"name", "labels", "machine_types"} <= required_pool and "project" in required_gcp
    for pool in json.loads(environment["JITR_POOLS"]):
        assert required_pool <= set(pool)
    assert all(environment.get(f"JITR_GCP_{key.upper()}") for key in required_gcp)
    # Not marked required but needed by every cloud deployment: the App and its secrets.
    assert environment["JITR_GITHUB_APP_ID"]
    assert environment["JITR_SECRETS_WEBHOOK_SECRET"] and environment["JITR_SECRETS_GITHUB_APP_PRIVATE_KEY"]


def test_secrets_given_by_value_are_created_under_the_prefix() -> None:
    inputs = {**example_inputs(), "name_prefix": "ci-jitr", "webhook_secret_id": None}
    inputs["github_app_private_key_secret_id"] = "projects/keys/secrets/app"
    names = evaluate("local.secret_names", inputs)
    assert names == {
        "webhook_secret": f"projects/{inputs['project_id']}/secrets/ci-jitr-webhook-secret",
        "github_app_private_key": "projects/keys/secrets/app",
    }
    created = resources()[("google_secret_manager_secret", "created")]
    assert created["for_each"] == "${local.created_secrets}"


def test_the_functions_are_jitr_functions_targets() -> None:
    from jitr_functions.bundle_gcp import TARGETS

    functions = evaluate("local.functions", deployed_inputs())
    # the broker too: the example's pools leave handoff at its default
    assert {name: f["entry_point"] for name, f in functions.items()} == {t: t for t in TARGETS}
    functions = evaluate("local.functions", metadata_inputs())  # every pool on metadata: no broker
    assert {name: f["entry_point"] for name, f in functions.items()} == {t: t for t in TARGETS if t != "broker"}
    function = resources()[("google_cloudfunctions2_function", "this")]
    build = function["build_config"][0]
    assert build["entry_point"] == "${each.value.entry_point}"
    service = function["service_config"][0]
    assert service["environment_variables"] == "${local.function_environment}"
    assert service["service_account_email"] == "${google_service_account.this[each.key].email}"
    public = resources()[("google_cloud_run_service_iam_member", "webhook_public")]
    assert unquote(public["member"]) == "allUsers" and "webhook" in public["service"]


def test_push_subscriptions_outlast_their_functions() -> None:
    """The handlers take push envelopes; the ack deadline covers the timeout plus the 20 s hold."""
    from jitr_functions.gcp.handlers import HOLD_LIMIT_S

    functions = evaluate("local.functions", example_inputs())
    queues = evaluate("local.queues", example_inputs())
    push = resources()[("google_pubsub_subscription", "push")]
    assert push["ack_deadline_seconds"] == "${local.functions[each.value].timeout_s + 30}"
    for target in queues.values():
        assert HOLD_LIMIT_S < 30 and functions[target]["timeout_s"] + 30 <= 600
    assert "oidc_token" in push["push_config"][0]
    assert push["dead_letter_policy"][0]["max_delivery_attempts"] == "${var.max_deliveries}"


def test_indexes_and_ttl_come_from_jitr_gcps_file() -> None:
    """One source of truth: the module reads the package's index file, which holds what the queries need."""
    from jitr_gcp import firestore

    locals_ = {k: v for block in load(MODULE / "firestore.tf")["locals"] for k, v in block.items()}
    default = re.search(r'"\$\{path\.module\}/([^"]+)"', locals_["firestore_indexes_file"])
    assert default and (MODULE / default.group(1)).resolve() == INDEXES.resolve()
    assert locals_["firestore_indexes"] == "${jsondecode(file(local.firestore_indexes_file))}"
    data = json.loads(INDEXES.read_text())
    fields = {tuple((f["fieldPath"], f["order"]) for f in index["fields"]) for index in data["indexes"]}
    # firestore.query: kind == K AND state == S [AND pool == P] ORDER BY updated_at (ascending)
    assert fields == {
        (("kind", "ASCENDING"), ("state", "ASCENDING"), ("updated_at", "ASCENDING")),
        (("kind", "ASCENDING"), ("state", "ASCENDING"), ("pool", "ASCENDING"), ("updated_at", "ASCENDING")),
    }
    ttl = [o["fieldPath"] for o in data["fieldOverrides"] if o.get("ttl")]
    assert ttl == [firestore.TTL_FIELD]
    found = resources()
    index = found[("google_firestore_index", "this")]
    assert "local.firestore_indexes.indexes" in index["for_each"]
    assert index["collection"] == "${var.firestore_collection}"
    field = found[("google_firestore_field", "this")]
    assert "local.firestore_indexes.fieldOverrides" in field["for_each"]
    assert {name for block in field["dynamic"] for name in unquote(block)} == {"ttl_config", "index_config"}


def test_runners_get_no_external_ip_and_a_closed_firewall() -> None:
    assert blocks(_module_variables(), "variable")["external_ip"]["default"] is False
    found = resources()
    egress = found[("google_compute_firewall", "runner_egress")]
    ports = sorted(p for rule in egress["allow"] for p in unquote(rule.get("ports", [])))
    assert ports == ["443", "53", "53", "80"]
    for name in ("runner_deny_egress", "runner_deny_ingress"):
        rule = found[("google_compute_firewall", name)]
        assert unquote(rule["deny"][0]["protocol"]) == "all"
        assert rule["target_service_accounts"] == ['${google_service_account.this["runner"].email}']


def test_firewall_rules_cover_every_network_a_pool_uses() -> None:
    """A pool on its own VPC network gets the same closed firewall as the module's network."""
    for name in ("runner_egress", "runner_deny_egress", "runner_deny_ingress"):
        rule = resources()[("google_compute_firewall", name)]
        assert rule["for_each"] == "${local.firewall_networks}" and rule["network"] == "${each.key}"
        assert unquote(rule["name"]).endswith("-${each.value}")
    inputs = example_inputs()
    project, pool = inputs["project_id"], inputs["pools"][0]
    other = {**pool, "name": "isolated", "options": {"network": "build-vpc"}}
    shared = {**pool, "name": "shared", "options": {"network": f"projects/{project}/global/networks/build-vpc"}}
    networks = evaluate("local.firewall_networks", {**inputs, "network": "default", "pools": [pool, other, shared]})
    assert set(networks) == {
        f"projects/{project}/global/networks/default",
        f"projects/{project}/global/networks/build-vpc",
    }
    assert len(set(networks.values())) == 2 and all(len(suffix) == 6 for suffix in networks.values())
    assert evaluate("local.firewall_networks", {**inputs, "manage_firewall": False}) == {}


def _module_variables() -> dict[str, Any]:
    return load(MODULE / "variables.tf")


def _required(doc: Path) -> set[str]:
    """Keys of table rows whose second column is "required" (``| `key` | required | ...``)."""
    return {m.group(1) for m in re.finditer(r"^\| `([a-z_]+)` \| required \|", doc.read_text(), re.MULTILINE)}


def _precondition_holds(inputs: dict[str, Any]) -> bool:
    """functions.tf's precondition on project_number, its own expression evaluated over ``inputs``."""
    lifecycle = resources()[("google_cloudfunctions2_function", "this")]["lifecycle"][0]
    [condition] = [p["condition"] for p in lifecycle["precondition"] if "project_number" in p["condition"]]
    assert condition.startswith("${") and condition.endswith("}")
    return bool(evaluate(condition[2:-1], inputs))


def test_the_broker_is_the_default_with_its_function_url_and_grants() -> None:
    """Pools that leave handoff unset get the broker: its function, its URL in every function's settings."""
    from jitr_functions.bundle_gcp import TARGETS

    inputs = deployed_inputs()
    assert all(pool.get("handoff") is None for pool in inputs["pools"])
    functions = evaluate("local.functions", inputs)
    assert {name: f["entry_point"] for name, f in functions.items()} == {t: t for t in TARGETS}
    url = f"https://jitr-broker-{inputs['project_number']}.{inputs['region']}.run.app"
    environment = evaluate("local.function_environment", inputs)
    settings = Settings.from_env(environment)  # a broker-mode pool loads only with the broker's URL
    assert settings.broker_url == url and {pool.handoff for pool in settings.pools} == {"broker"}
    assert _precondition_holds(inputs)
    roles = evaluate("local.custom_roles", inputs)
    # reads and hands over a runner record; retiring a runner GitHub will not serve, deletes its VM,
    # finds the job waiting for the freed cap and sends it on, and dead-letters the runner's job
    assert roles["broker"] == [
        "compute.instances.delete",
        "datastore.entities.get",
        "datastore.entities.list",
        "datastore.entities.update",
    ]
    assert evaluate("local.reads_secrets", inputs)["broker"] == ["github_app_private_key"]
    assert evaluate("local.publishes", inputs)["broker"] == ["jobs", "jobs-dead-letter"]
    public = resources()[("google_cloud_run_service_iam_member", "broker_public")]
    assert unquote(public["member"]) == "allUsers" and "broker" in public["service"]


def test_each_function_publishes_to_the_topics_its_code_paths_use() -> None:
    """Publishing is one permission for every topic: the end-to-end run's calls cannot tell which
    topics a function needs on paths it does not take, so the topics are checked against where
    each function sends: requeueing and nudging to ``jobs``, poison and dead-lettered jobs to the
    dead-letter topics, and scaledown's replay of a lost webhook to ``lifecycle``."""
    assert evaluate("local.publishes", deployed_inputs()) == {
        "webhook": ["jobs", "lifecycle"],
        "scaleup": ["jobs", "jobs-dead-letter"],
        "lifecycle": ["jobs", "lifecycle", "lifecycle-dead-letter"],
        "scaledown": ["jobs", "lifecycle", "jobs-dead-letter"],
        "rebalancer": ["jobs"],
        "broker": ["jobs", "jobs-dead-letter"],
    }


def test_the_broker_needs_the_project_number() -> None:
    """Without project_number there is no URL to give, and functions.tf's precondition stops the plan."""
    inputs = {**example_inputs(), "project_number": None}
    assert evaluate("local.broker_enabled", inputs) and evaluate("local.broker_url", inputs) is None
    assert "JITR_BROKER_URL" not in evaluate("local.function_environment", inputs)
    assert not _precondition_holds(inputs)
    message = next(
        p["error_message"]
        for p in resources()[("google_cloudfunctions2_function", "this")]["lifecycle"][0]["precondition"]
        if "project_number" in p["condition"]
    )
    assert "project_number is required" in message and "metadata" in message


def test_with_every_pool_on_metadata_nothing_is_granted_to_a_broker_and_no_project_number_is_needed() -> None:
    inputs = {**metadata_inputs(), "project_number": None}
    grants = evaluate("local.secret_grants", inputs)
    assert not [key for key in grants if key.startswith("broker/")]
    assert "broker" not in evaluate("local.custom_roles", inputs)
    assert "broker" not in evaluate("local.functions", inputs)
    environment = evaluate("local.function_environment", inputs)
    assert "JITR_BROKER_URL" not in environment and evaluate("local.broker_url", inputs) is None
    assert [p["handoff"] for p in json.loads(environment["JITR_POOLS"])] == ["metadata"] * len(inputs["pools"])
    assert {pool.handoff for pool in Settings.from_env(environment).pools} == {"metadata"}
    assert _precondition_holds(inputs)


def test_a_metadata_pool_beside_a_default_one_keeps_the_broker() -> None:
    inputs = deployed_inputs()
    first, *rest = inputs["pools"]
    mixed = {**inputs, "pools": [{**first, "handoff": "metadata"}, *rest]}
    assert "broker" in evaluate("local.functions", mixed)
    pools = json.loads(evaluate("local.function_environment", mixed)["JITR_POOLS"])
    assert [p["handoff"] for p in pools] == ["metadata"] + ["broker"] * len(rest)
    assert evaluate("local.broker_url", mixed) == f"https://jitr-broker-{PROJECT_NUMBER}.{inputs['region']}.run.app"


def test_a_handoff_outside_metadata_and_broker_is_refused() -> None:
    inputs = example_inputs()
    with pytest.raises(TerraformError, match="handoff"):
        evaluate("local.functions", {**inputs, "pools": [{**inputs["pools"][0], "handoff": "ssm"}]})
