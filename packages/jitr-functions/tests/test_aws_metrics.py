"""The Lambda handlers' metrics: CloudWatch EMF lines, one write per invocation, from real runs against moto."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest_aws import LABELS, WEBHOOK_SECRET, Deployment, FunctionUrl, LambdaContext, event, queued_payload, signed
from jitr_aws.clients import client
from jitr_aws.config import aws_config
from jitr_core.metrics import CATALOGUE
from jitr_functions import aws
from jitr_functions.app import get_app
from test_aws_handlers import jit_config

pytest_plugins = ["conftest_aws"]

UNITS = {"Seconds", "Count", "None"}  # the subset of CloudWatch's units the catalogue uses


def emf(text: str) -> list[dict[str, Any]]:
    """Every EMF line of ``text``, each checked against the EMF specification's structure."""
    found = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "_aws" in entry:
            check_emf(entry)
            found.append(entry)
    return found


def check_emf(entry: dict[str, Any]) -> None:
    meta = entry["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert directive["Namespace"] == "jitr"
        for dimension_set in directive["Dimensions"]:
            assert len(dimension_set) <= 30
            for key in dimension_set:
                value = entry[key]  # a declared dimension is a member of the root, a string
                assert isinstance(value, str) and 0 < len(value) <= 1024 and "\n" not in value
        assert 0 < len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert metric["Name"] in CATALOGUE and metric.get("Unit", "None") in UNITS
            value = entry[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 0 < len(values) <= 100
            assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
            dimensions = {key for dimension_set in directive["Dimensions"] for key in dimension_set}
            assert dimensions == set(CATALOGUE[metric["Name"]].labels)


def points(lines: list[dict[str, Any]], gauge: bool = True) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    """{(metric, dimensions): value} over the lines (without the rate-limit gauge unless ``gauge``)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
    for entry in lines:
        for directive in entry["_aws"]["CloudWatchMetrics"]:
            keys = [key for dimension_set in directive["Dimensions"] for key in dimension_set]
            for metric in directive["Metrics"]:
                if gauge or metric["Name"] != "github_rate_limit_remaining":
                    out[(metric["Name"], tuple((k, entry[k]) for k in keys))] = entry[metric["Name"]]
    return out


@pytest.fixture
def spot_refused(deployment: Deployment) -> Callable[[], None]:
    """EC2 answers InsufficientInstanceCapacity to every spot RunInstances (botocore's event system)."""
    ec2 = client("ec2", aws_config(get_app().settings), retries=False)

    def run_instances(params: dict[str, Any], **_: Any) -> None:
        if "InstanceMarketOptions" in params:
            error = {"Code": "InsufficientInstanceCapacity", "Message": "We do not have sufficient capacity"}
            raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}, "RunInstances")

    ec2.meta.events.register("before-parameter-build.ec2.RunInstances", run_instances)
    yield lambda: None
    ec2.meta.events.unregister("before-parameter-build.ec2.RunInstances", run_instances)


def test_scaleup_writes_its_metrics_as_emf_once_at_the_end_of_the_invocation(
    deployment: Deployment, spot_refused: Callable[[], None], capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.sim.set_webhook(None, None)
    job_id = deployment.sim.queue_job("octo-org/api", LABELS)
    capsys.readouterr()

    assert aws.scaleup(deployment.bodies_event(deployment.job_message(job_id)), LambdaContext()) == {
        "batchItemFailures": []
    }

    out = capsys.readouterr().out
    lines = emf(out)
    assert get_app().backend.metrics.pending() == ()  # all written
    by_point = points(lines)
    pool = deployment.pool["name"]
    a, b = deployment.network.subnets
    assert by_point[("jobs_received", (("pool", pool),))] == 1
    assert by_point[("jobs_launched", (("pool", pool), ("market", "on_demand")))] == 1
    for machine_type in ("m5.large", "m5a.large"):
        for subnet in (a, b):
            assert by_point[("capacity_errors", (("machine_type", machine_type), ("zone", subnet)))] == 1
    assert by_point[("launch_failures", (("pool", pool), ("reason", "capacity"), ("placement", a)))] == 2
    spot = ("launch_attempts", (("pool", pool), ("machine_type", "m5.large"), ("placement", a), ("market", "spot")))
    assert by_point[spot] == 1
    label_sets = [tuple((k, e[k]) for d in e["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for k in d) for e in lines]
    assert len(label_sets) == len(set(label_sets))  # one line per label set: the batch was grouped
    assert WEBHOOK_SECRET not in out and "JITCONFIG" not in out


def test_lifecycle_writes_queue_and_boot_time_and_the_completion(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    front = FunctionUrl(aws.webhook)
    pool = deployment.pool["name"]
    try:
        deployment.sim.set_webhook(front.url, WEBHOOK_SECRET)
        job_id = deployment.sim.queue_job("octo-org/api", LABELS)
        assert deployment.sim.drain_webhooks()
        deployment.deliver(deployment.jobs_url, aws.scaleup)
        [instance] = [i for i in deployment.instances() if i["tags"]["jitr-job"] == str(job_id)]
        runner = deployment.sim.agent_connect(jit_config(deployment.user_data(instance["InstanceId"])))
        assert deployment.sim.agent_poll(runner.id, timeout=5).id == job_id
        assert deployment.sim.drain_webhooks()
        capsys.readouterr()
        deployment.deliver(deployment.lifecycle_url, aws.lifecycle)
        in_progress = points(emf(capsys.readouterr().out))

        deployment.sim.agent_finish(runner.id)
        assert deployment.sim.drain_webhooks()
        deployment.deliver(deployment.lifecycle_url, aws.lifecycle)
        completed = emf(capsys.readouterr().out)
    finally:
        front.close()
    queue_time = in_progress[("queue_time_seconds", (("pool", pool),))]
    boot_time = in_progress[("boot_time_seconds", (("pool", pool),))]
    assert 0 <= boot_time <= queue_time
    assert points(completed)[("jobs_completed", (("pool", pool), ("conclusion", "success")))] == 1
    assert 0 < points(completed)[("github_rate_limit_remaining", ())] <= 5000  # from x-ratelimit-remaining


def test_scaledown_counts_orphans_and_a_misrouted_event_counts_a_function_error(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JITR_GHOST_GRACE_S", "0")
    deployment.ec2.run_instances(
        ImageId=deployment.network.image, InstanceType="m5.large", MinCount=1, MaxCount=1,
        SubnetId=deployment.network.subnets[0],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "managed-by", "Value": "jitr"}, {"Key": "jitr-runner", "Value": "jitr-linux-4343-1"},
            {"Key": "jitr-pool", "Value": deployment.pool["name"]}, {"Key": "test-run", "Value": deployment.run_id},
        ]}],
    )  # fmt: skip
    capsys.readouterr()
    report = aws.scaledown(event("eventBridgeEvent.json"), LambdaContext())
    removed = points(emf(capsys.readouterr().out))
    assert removed[("orphans_removed", (("pool", deployment.pool["name"]),))] == report["orphan-vms"] >= 1

    with pytest.raises(aws.EventError):
        aws.scaleup(event("eventBridgeEvent.json"), LambdaContext())
    assert points(emf(capsys.readouterr().out), gauge=False) == {("function_errors", (("function", "scaleup"),)): 1}


def test_poison_records_count_dead_letters(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    response = aws.scaleup(event("example-sqs-event.json"), LambdaContext())
    assert response == {"batchItemFailures": []}
    records = len(event("example-sqs-event.json")["Records"])
    assert points(emf(capsys.readouterr().out), gauge=False) == {("dead_letters", (("queue", "jobs"),)): records}


def test_the_webhook_writes_no_metric_line(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    body = queued_payload(job_id=987654)
    response = aws.webhook(signed(event("lambdaFunctionUrlEvent.json"), body, "d-metrics"), LambdaContext())
    assert response["statusCode"] == 202
    assert emf(capsys.readouterr().out) == []  # deliveries are counted from the delivery line itself
