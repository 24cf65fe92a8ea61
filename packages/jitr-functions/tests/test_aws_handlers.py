"""The Lambda handlers driven with real Lambda events, against moto in server mode and the GitHub simulator."""

from __future__ import annotations

import base64
import copy
import io
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest_aws import (
    LABELS,
    WEBHOOK_SECRET,
    Deployment,
    FunctionUrl,
    LambdaContext,
    event,
    queued_payload,
    signed,
)
from jitr_aws.clients import client
from jitr_aws.config import aws_config
from jitr_core.errors import PassIncomplete
from jitr_core.logs import JsonFormatter
from jitr_core.messages import JobMessage, decode
from jitr_core.testing.environment import deadline_s
from jitr_functions import aws
from jitr_functions.app import get_app

pytest_plugins = ["conftest_aws"]

HTTP_EVENTS = [
    "lambdaFunctionUrlEvent.json",
    "apiGatewayProxyV2Event.json",
    "example-apigw-v2-request-no-authorizer.json",
]
SCHEDULES = ["example-eventbridge-schedule.json", "eventBridgeEvent.json"]
_JIT_IN_SCRIPT = re.compile(r"ACTIONS_RUNNER_INPUT_JITCONFIG=\"\$\(printf %s '([A-Za-z0-9+/=]+)' \| base64 -d\)\"")


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """jitr's JSON log lines written during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("jitr")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def queue_job(deployment: Deployment, repository: str = "octo-org/api") -> int:
    """A job queued on the simulated GitHub whose webhook is lost (none is configured)."""
    deployment.sim.set_webhook(None, None)
    return deployment.sim.queue_job(repository, LABELS)


def jit_config(user_data: str) -> str:
    match = _JIT_IN_SCRIPT.search(user_data)
    assert match is not None, "the user data carries no JIT config"
    return base64.b64decode(match.group(1)).decode()


@pytest.fixture
def capacity(deployment: Deployment) -> Iterator[Callable[[Callable[[dict[str, Any]], bool]], list[tuple[Any, ...]]]]:
    """Make EC2 answer InsufficientInstanceCapacity to the RunInstances calls ``fails`` picks.

    Injected through botocore's event system on the client the aws plugin launches with; returns the list
    of attempts (instance type, subnet, market, job) it saw.
    """
    ec2 = client("ec2", aws_config(get_app().settings), retries=False)  # the client that launches
    registered: list[Callable[..., None]] = []

    def install(fails: Callable[[dict[str, Any]], bool]) -> list[tuple[Any, ...]]:
        attempts: list[tuple[Any, ...]] = []

        def run_instances(params: dict[str, Any], **_: Any) -> None:
            tags = {t["Key"]: t["Value"] for t in params["TagSpecifications"][0]["Tags"]}
            market = "spot" if "InstanceMarketOptions" in params else "on-demand"
            subnet = params["NetworkInterfaces"][0]["SubnetId"]
            attempts.append((params["InstanceType"], subnet, market, tags["jitr-job"]))
            if fails(params):
                error = {"Code": "InsufficientInstanceCapacity", "Message": "We do not have sufficient capacity"}
                raise ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}, "RunInstances")

        ec2.meta.events.register("before-parameter-build.ec2.RunInstances", run_instances)
        registered.append(run_instances)
        return attempts

    yield install
    for handler in registered:
        ec2.meta.events.unregister("before-parameter-build.ec2.RunInstances", handler)


# -- webhook ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HTTP_EVENTS)
@pytest.mark.parametrize("base64_body", [False, True], ids=["text", "base64"])
def test_webhook_routes_a_signed_delivery_to_the_jobs_queue(
    deployment: Deployment, name: str, base64_body: bool
) -> None:
    request = signed(event(name), queued_payload(), str(uuid.uuid4()), base64_body)

    response = aws.webhook(request, LambdaContext())

    assert response["statusCode"] == 202
    assert response["headers"]["content-type"] == "application/json"
    assert json.loads(response["body"]) == {"queued": "jobs"}
    [message] = deployment.take(deployment.jobs_url)
    job = decode(message["Body"])
    assert isinstance(job, JobMessage)
    assert job.job_id == json.loads(queued_payload())["workflow_job"]["id"]
    assert job.delivery_id == request["headers"]["x-github-delivery"]


def test_a_duplicated_delivery_launches_one_instance(deployment: Deployment) -> None:
    """The webhook keeps no delivery records: both copies are queued, and scaleup's claim on
    (job, attempt) launches once."""
    job_id = queue_job(deployment)
    body = queued_payload(job_id, "octo-org/api", deployment.installation_id)
    request = signed(event("lambdaFunctionUrlEvent.json"), body, str(uuid.uuid4()))

    answers = [aws.webhook(request, LambdaContext()) for _ in range(2)]

    assert [(a["statusCode"], json.loads(a["body"])) for a in answers] == [(202, {"queued": "jobs"})] * 2
    handled = 0
    while handled < 2:
        delivered = deployment.deliver(deployment.jobs_url, aws.scaleup)
        assert delivered["records"] and delivered["batchItemFailures"] == [], delivered
        handled += delivered["records"]
    assert deployment.take(deployment.jobs_url) == []
    [instance] = deployment.instances()
    assert instance["tags"]["Name"] == deployment.runner_name(job_id)


def test_webhook_answers_a_job_no_pool_serves_without_a_message(deployment: Deployment) -> None:
    data = json.loads(queued_payload())
    data["workflow_job"]["labels"] = ["ubuntu-latest"]
    body = json.dumps(data).encode()

    answer = aws.webhook(signed(event("lambdaFunctionUrlEvent.json"), body, str(uuid.uuid4())), LambdaContext())

    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"ignored": "no pool serves labels ['ubuntu-latest']"}
    assert deployment.take(deployment.jobs_url) == []


def test_webhook_accepts_the_rest_api_v1_shape(deployment: Deployment) -> None:
    v2 = signed(event("apiGatewayProxyV2Event.json"), queued_payload(), str(uuid.uuid4()))
    v1 = {
        "resource": "/webhook", "path": "/webhook", "httpMethod": "POST", "headers": v2["headers"],
        "multiValueHeaders": {name: [value] for name, value in v2["headers"].items()},
        "requestContext": {"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "stage": "prod"},
        "body": v2["body"], "isBase64Encoded": False,
    }  # fmt: skip

    response = aws.webhook(v1, LambdaContext())

    assert response["statusCode"] == 202
    assert len(deployment.take(deployment.jobs_url)) == 1


def test_webhook_refuses_bad_requests_with_the_reason(deployment: Deployment) -> None:
    good = signed(event("lambdaFunctionUrlEvent.json"), queued_payload(), str(uuid.uuid4()))
    tampered = copy.deepcopy(good)
    tampered["body"] = good["body"].replace("queued", "in_progress", 1)
    not_base64 = {**copy.deepcopy(good), "body": "%%% not base64 %%%", "isBase64Encoded": True}

    answers = {
        "get": aws.webhook(event("lambdaFunctionUrlEvent.json"), LambdaContext()),
        "tampered": aws.webhook(tampered, LambdaContext()),
        "not base64": aws.webhook(not_base64, LambdaContext()),
    }

    assert {k: v["statusCode"] for k, v in answers.items()} == {"get": 405, "tampered": 401, "not base64": 400}
    assert answers["get"]["headers"]["allow"] == "POST"
    assert "X-Hub-Signature-256" in json.loads(answers["tampered"]["body"])["error"]
    assert deployment.take(deployment.jobs_url) == []


# -- scaleup and lifecycle --------------------------------------------------------------------


def test_github_to_function_url_to_scaleup_and_lifecycle(deployment: Deployment) -> None:
    front = FunctionUrl(aws.webhook)
    try:
        deployment.sim.set_webhook(front.url, WEBHOOK_SECRET)
        job_id = deployment.sim.queue_job("octo-org/api", LABELS)
        assert deployment.sim.drain_webhooks()
        assert [d.status_code for d in deployment.sim.deliveries()] == [202]

        assert deployment.deliver(deployment.jobs_url, aws.scaleup)["batchItemFailures"] == []
        [instance] = deployment.instances()
        runner = deployment.sim.agent_connect(jit_config(deployment.user_data(instance["InstanceId"])))
        assert deployment.sim.agent_poll(runner.id, timeout=5).id == job_id
        assert deployment.sim.drain_webhooks()
        assert deployment.deliver(deployment.lifecycle_url, aws.lifecycle) == {"batchItemFailures": [], "records": 1}
        assert get_app().backend.load("runner", deployment.runner_name(job_id)).state == "busy"

        deployment.sim.agent_finish(runner.id)
        assert deployment.sim.drain_webhooks()
        assert deployment.deliver(deployment.lifecycle_url, aws.lifecycle) == {"batchItemFailures": [], "records": 1}
    finally:
        front.close()
    assert get_app().backend.load("job", str(job_id)).state == "completed"
    assert get_app().backend.load("runner", deployment.runner_name(job_id)).state == "finished"


def test_scaleup_batch_launches_tagged_instances_and_reports_the_failed_record(
    deployment: Deployment, capacity: Callable[..., list[tuple[Any, ...]]]
) -> None:
    jobs = [queue_job(deployment) for _ in range(3)]
    failing = str(jobs[2])
    attempts = capacity(lambda params: any(t["Value"] == failing for t in params["TagSpecifications"][0]["Tags"]))
    batch = deployment.bodies_event(*(deployment.job_message(job) for job in jobs))
    failed_id = next(r["messageId"] for r in batch["Records"] if decode(r["body"]).job_id == jobs[2])

    response = aws.scaleup(batch, LambdaContext())

    assert response == {"batchItemFailures": [{"itemIdentifier": failed_id}]}
    assert response.keys() == event("example-sqs-batch-response.json").keys()
    assert len([a for a in attempts if a[3] == failing]) == 8  # 2 types x 2 subnets x (spot, on-demand)
    instances = deployment.instances()
    assert sorted(i["tags"]["jitr-job"] for i in instances) == sorted(str(j) for j in jobs[:2])
    for instance in instances:
        name = deployment.runner_name(int(instance["tags"]["jitr-job"]))
        tags = instance["tags"]
        assert tags == {
            "Name": name, "jitr-runner": name, "jitr-pool": deployment.pool["name"], "jitr-job": tags["jitr-job"],
            "jitr-attempt": "1", "managed-by": "jitr", "jitr-client-token": tags["jitr-client-token"],
            "test-run": deployment.run_id,
        }  # fmt: skip
        assert (instance["InstanceType"], instance["SubnetId"]) == ("m5.large", deployment.network.subnets[0])
        assert instance["InstanceLifecycle"] == "spot"
        user_data = deployment.user_data(instance["InstanceId"])
        assert user_data.startswith("#!") and len(user_data.encode()) <= 16 * 1024
        runner = deployment.sim.agent_connect(jit_config(user_data))
        assert runner.name == name
    assert get_app().backend.load("runner", deployment.runner_name(jobs[2])) is None  # the claim was released
    assert deployment.runner_name(jobs[2]) not in {r.name for r in deployment.sim.runners()}


@pytest.mark.parametrize("name", ["sqsEvent.json", "example-sqs-event.json"])
def test_malformed_records_are_dead_lettered_not_retried(deployment: Deployment, name: str) -> None:
    batch = event(name)

    response = aws.scaleup(batch, LambdaContext())

    assert response == {"batchItemFailures": []}
    letters = deployment.take(deployment.jobs_dlq_url)
    assert sorted(m["Body"] for m in letters) == sorted(r["body"] for r in batch["Records"])
    assert all("dead_letter_reason" in m["MessageAttributes"] for m in letters)
    assert deployment.instances() == []


def test_duplicate_records_launch_one_instance(deployment: Deployment) -> None:
    body = deployment.job_message(queue_job(deployment))

    first = aws.scaleup(deployment.bodies_event(body, body), LambdaContext())
    later = aws.scaleup(deployment.bodies_event(body), LambdaContext())

    assert first == later == {"batchItemFailures": []}
    assert len(deployment.instances()) == 1


@pytest.mark.parametrize("step", ["claimed", "minted"])
def test_a_crash_between_claim_and_launch_then_redelivery_launches_one_instance(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    monkeypatch.setenv("JITR_CLAIM_TIMEOUT_S", "1")
    crashes: list[str] = []

    def crash_once(at: str) -> None:
        if at == step and not crashes:
            crashes.append(at)
            raise RuntimeError(f"the worker died after {at}")

    get_app().scaleup.checkpoint = crash_once
    job_id = queue_job(deployment)
    deployment.sqs.send_message(QueueUrl=deployment.jobs_url, MessageBody=deployment.job_message(job_id))

    first = deployment.deliver(deployment.jobs_url, aws.scaleup, visibility_s=1)
    assert len(first["batchItemFailures"]) == 1 and crashes == [step]
    assert deployment.instances() == []
    deadline = time.monotonic() + deadline_s(60)
    while not deployment.instances() and time.monotonic() < deadline:
        assert deployment.deliver(deployment.jobs_url, aws.scaleup, visibility_s=1)["batchItemFailures"] == []
        time.sleep(0.2)
    time.sleep(2.5)  # any deferred copy becomes visible
    while deployment.deliver(deployment.jobs_url, aws.scaleup, visibility_s=1)["records"]:
        pass

    [instance] = deployment.instances()
    assert instance["tags"]["jitr-runner"] == deployment.runner_name(job_id)
    assert get_app().backend.load("runner", deployment.runner_name(job_id)).state == "launched"


def test_capacity_errors_walk_the_fallback_chain_to_on_demand(
    deployment: Deployment, capacity: Callable[..., list[tuple[Any, ...]]]
) -> None:
    attempts = capacity(lambda params: "InstanceMarketOptions" in params)
    job_id = queue_job(deployment)

    response = aws.scaleup(deployment.bodies_event(deployment.job_message(job_id)), LambdaContext())

    a, b = deployment.network.subnets
    assert response == {"batchItemFailures": []}
    assert [attempt[:3] for attempt in attempts] == [
        ("m5.large", a, "spot"), ("m5.large", b, "spot"), ("m5a.large", a, "spot"), ("m5a.large", b, "spot"),
        ("m5.large", a, "on-demand"),
    ]  # fmt: skip
    [instance] = deployment.instances()
    assert (instance["InstanceType"], instance["SubnetId"]) == ("m5.large", a)
    assert "InstanceLifecycle" not in instance  # on-demand


# -- scaledown and rebalancer -----------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEDULES)
def test_scaledown_terminates_an_orphan_instance(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("JITR_GHOST_GRACE_S", "0")
    orphan = deployment.ec2.run_instances(
        ImageId=deployment.network.image, InstanceType="m5.large", MinCount=1, MaxCount=1,
        SubnetId=deployment.network.subnets[0],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "managed-by", "Value": "jitr"}, {"Key": "jitr-runner", "Value": "jitr-linux-4242-1"},
            {"Key": "jitr-pool", "Value": deployment.pool["name"]}, {"Key": "test-run", "Value": deployment.run_id},
        ]}],
    )["Instances"][0]["InstanceId"]  # fmt: skip

    report = aws.scaledown(event(name), LambdaContext())

    assert json.loads(json.dumps(report)) == report
    assert orphan not in [i["InstanceId"] for i in deployment.instances()]
    assert report["orphan-vms"] >= 1, report  # moto is shared: earlier tests' instances are orphans too


def test_an_orphan_with_termination_protection_fails_the_invocation_after_the_rest_is_done(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    monkeypatch.setenv("JITR_GHOST_GRACE_S", "0")
    protected, other = (
        deployment.ec2.run_instances(
            ImageId=deployment.network.image, InstanceType="m5.large", MinCount=1, MaxCount=1,
            SubnetId=deployment.network.subnets[0],
            TagSpecifications=[{"ResourceType": "instance", "Tags": [
                {"Key": "managed-by", "Value": "jitr"}, {"Key": "jitr-runner", "Value": f"jitr-linux-{4343 + i}-1"},
                {"Key": "jitr-pool", "Value": deployment.pool["name"]}, {"Key": "test-run", "Value": deployment.run_id},
            ]}],
        )["Instances"][0]["InstanceId"]
        for i in range(2)
    )  # fmt: skip
    deployment.ec2.modify_instance_attribute(InstanceId=protected, DisableApiTermination={"Value": True})

    with pytest.raises(PassIncomplete, match="failed steps") as incomplete:
        aws.scaledown(event(SCHEDULES[0]), LambdaContext())

    assert incomplete.value.report["errors"] == 1 and incomplete.value.report["orphan-vms"] >= 1
    [line] = [line for line in log_lines(logs) if line["message"] == "periodic run incomplete"]
    assert (line["level"], line["report"], line["function"]) == ("ERROR", incomplete.value.report, "scaledown")
    running = [i["InstanceId"] for i in deployment.instances()]
    assert protected in running and other not in running
    deployment.ec2.modify_instance_attribute(InstanceId=protected, DisableApiTermination={"Value": False})
    assert "errors" not in aws.scaledown(event(SCHEDULES[0]), LambdaContext())
    assert protected not in [i["InstanceId"] for i in deployment.instances()]


def test_rebalancer_enqueues_a_job_whose_webhook_was_lost(deployment: Deployment) -> None:
    seen = queue_job(deployment)
    assert aws.scaleup(deployment.bodies_event(deployment.job_message(seen)), LambdaContext()) == {
        "batchItemFailures": []
    }
    lost = queue_job(deployment)

    report = aws.rebalancer(event("example-eventbridge-schedule.json"), LambdaContext())

    assert report["enqueued"] == 1, report
    [message] = deployment.take(deployment.jobs_url)
    job = decode(message["Body"])
    assert isinstance(job, JobMessage) and (job.job_id, job.reason) == (lost, "rebalancer")


# -- events for another function, and the logs -------------------------------------------------


@pytest.mark.parametrize(
    ("handler", "name"),
    [
        (aws.scaleup, "lambdaFunctionUrlEvent.json"),
        (aws.lifecycle, "example-eventbridge-schedule.json"),
        (aws.scaledown, "sqsEvent.json"),
        (aws.rebalancer, "apiGatewayProxyV2Event.json"),
        (aws.webhook, "sqsEvent.json"),
    ],
)
def test_an_event_meant_for_another_function_is_refused_loudly(
    deployment: Deployment, logs: io.StringIO, handler: Callable[..., Any], name: str
) -> None:
    context = LambdaContext()

    with pytest.raises(aws.EventError, match="check its trigger"):
        handler(event(name), context)

    [line] = [entry for entry in log_lines(logs) if entry["message"] == "unexpected event"]
    assert line["level"] == "ERROR" and line["aws_request_id"] == context.aws_request_id
    assert line["function"] == handler.__name__


def test_log_lines_carry_the_request_id(deployment: Deployment, logs: io.StringIO) -> None:
    context = LambdaContext()
    body = deployment.job_message(queue_job(deployment))

    aws.scaleup(deployment.bodies_event(body), context)

    lines = log_lines(logs)
    assert lines and all(entry["aws_request_id"] == context.aws_request_id for entry in lines)
    assert {"batch done", "vm launched"} <= {entry["message"] for entry in lines}
    assert any(entry.get("message_id") and entry.get("runner_name") for entry in lines)
