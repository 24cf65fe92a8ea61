"""Fixtures for the Lambda tests: moto in server mode holding jitr's AWS resources, the GitHub
simulator as GitHub, and the parts of Lambda the tests play themselves (a function URL in front
of the webhook handler, an SQS event source mapping with partial batch responses); for a
broker-mode pool, AWS's signer of instance identity documents and the broker behind a function
URL. Test modules load it with ``pytest_plugins``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import jitr_functions.app
import pytest
from e2e_support import post
from jitr_aws import testing as aws_testing
from jitr_aws.dynamodb import create_table
from jitr_aws.testing import FAKE_CREDENTIALS, IdentitySigner, moto_server
from jitr_core.messages import JobMessage, encode
from jitr_core.settings import Settings
from jitr_functions import aws
from jitr_github.simulator import GitHubSimulator

FIXTURES = Path(__file__).parent / "fixtures" / "aws"
REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's
LABELS = ["self-hosted", "linux", "x64"]
WEBHOOK_SECRET = "whsec-aws-functions-test-0123456789"
MAX_RECEIVE_COUNT = 3
Handler = Callable[[Any, Any], Any]


def event(name: str) -> dict[str, Any]:
    """A real Lambda event from ``fixtures/aws`` (see SOURCES.md)."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def signed(request: dict[str, Any], body: bytes, delivery_id: str, base64_body: bool = False) -> dict[str, Any]:
    """``request`` carrying a GitHub delivery of ``body`` signed with the deployment's webhook secret."""
    request = copy.deepcopy(request)
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    request.setdefault("headers", {}).update(
        {
            "content-type": "application/json",
            "x-github-event": "workflow_job",
            "x-github-delivery": delivery_id,
            "x-hub-signature-256": signature,
        }
    )
    request["requestContext"]["http"]["method"] = "POST"
    request["body"] = base64.b64encode(body).decode() if base64_body else body.decode()
    request["isBase64Encoded"] = base64_body
    return request


def queued_payload(
    job_id: int | None = None, repository: str | None = None, installation_id: int | None = None
) -> bytes:
    """GitHub's example ``workflow_job.queued`` delivery, as a job of the deployment's pool in a
    private repository (the example's own labels, ``ubuntu-latest``, are no pool's: the webhook
    would answer it 200 and queue nothing)."""
    data = json.loads((FIXTURES / "workflow_job.queued.payload.json").read_bytes())
    data["workflow_job"]["labels"] = LABELS
    data["repository"]["private"] = True
    if job_id is not None:
        data["workflow_job"]["id"] = job_id
    if repository is not None:
        data["repository"]["full_name"] = repository
        data["repository"]["owner"]["login"] = repository.split("/")[0]
    if installation_id is not None:
        data["installation"] = {"id": installation_id}
    return json.dumps(data).encode()


@dataclass
class LambdaContext:
    """What the handlers read of Lambda's context object."""

    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "jitr-test"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@dataclass(frozen=True)
class Network:
    subnets: tuple[str, str]
    security_group: str
    image: str


@pytest.fixture(scope="session")
def network(moto_endpoint: str) -> Network:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.30.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in ((1, "a"), (2, "b"))
    )
    group = ec2.create_security_group(GroupName="jitr-lambda-runners", Description="runners", VpcId=vpc)["GroupId"]
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn-ami-hvm-*"]}])
    image = next(i["ImageId"] for i in images["Images"] if i.get("RootDeviceName") == "/dev/xvda")
    return Network((subnets[0], subnets[1]), group, image)


class Deployment:
    """One jitr deployment in moto (own queues, table, secrets and a run tag) with a simulated GitHub."""

    def __init__(self, endpoint: str, network: Network, sim: GitHubSimulator) -> None:
        self.endpoint = endpoint
        self.network = network
        self.sim = sim
        self.run_id = uuid.uuid4().hex[:12]
        self.sqs = self.client("sqs")
        self.ec2 = self.client("ec2")
        self.jobs_url, self.jobs_dlq_url = self._queue("jobs")
        self.lifecycle_url, self.lifecycle_dlq_url = self._queue("lifecycle")
        secrets = self.client("secretsmanager")
        secrets.create_secret(Name=f"jitr/{self.run_id}/webhook", SecretString=WEBHOOK_SECRET)
        secrets.create_secret(Name=f"jitr/{self.run_id}/app-key", SecretString=sim.private_key_pem)
        self.installation_id = sim.add_installation("octo-org", repos=["api", "web"])
        self.pool = {
            "name": f"linux-{self.run_id[:8]}", "labels": LABELS, "machine_types": ["m5.large", "m5a.large"],
            "placements": list(network.subnets), "image": network.image, "max_runners": 20,
        }  # fmt: skip
        self.env = {
            **FAKE_CREDENTIALS,
            "JITR_PROVIDER": "aws",
            "JITR_GITHUB_APP_ID": str(sim.app_id),
            "JITR_GITHUB_API_URL": sim.base_url,
            "JITR_SECRETS_WEBHOOK_SECRET": f"jitr/{self.run_id}/webhook",
            "JITR_SECRETS_GITHUB_APP_PRIVATE_KEY": f"jitr/{self.run_id}/app-key",
            "JITR_POOLS": json.dumps([self.pool]),
            "JITR_AWS_REGION": REGION,
            "JITR_AWS_ENDPOINT_URL": endpoint,
            "JITR_AWS_TABLE": f"jitr-{self.run_id}",
            "JITR_AWS_JOBS_QUEUE_URL": self.jobs_url,
            "JITR_AWS_JOBS_DLQ_URL": self.jobs_dlq_url,
            "JITR_AWS_LIFECYCLE_QUEUE_URL": self.lifecycle_url,
            "JITR_AWS_LIFECYCLE_DLQ_URL": self.lifecycle_dlq_url,
            "JITR_AWS_SECURITY_GROUP_IDS": network.security_group,
            "JITR_AWS_TAGS": f"test-run={self.run_id}",
            "JITR_REBALANCE_GRACE_S": "0",  # a lost job is looked for at once, not after a minute
        }
        create_table(Settings.from_env(self.env))

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    def runner_name(self, job_id: int, attempt: int = 1) -> str:
        """The runner name jitr gives a job's launch (the pool is named per deployment: job ids repeat)."""
        return f"jitr-{self.pool['name']}-{job_id}-{attempt}"

    def _queue(self, name: str) -> tuple[str, str]:
        dlq = self.sqs.create_queue(QueueName=f"jitr-{self.run_id}-{name}-dlq")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})
        url = self.sqs.create_queue(QueueName=f"jitr-{self.run_id}-{name}", Attributes={"RedrivePolicy": policy})
        return url["QueueUrl"], dlq

    # -- what the tests look at -------------------------------------------------------------

    def instances(self) -> list[dict[str, Any]]:
        """This deployment's pending or running instances, oldest first, with their tags as a dict."""
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "tag:test-run", "Values": [self.run_id]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
        found = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        for instance in found:
            instance["tags"] = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        return sorted(found, key=lambda i: (i["LaunchTime"], i["InstanceId"]))

    def user_data(self, instance_id: str) -> str:
        answer = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        return base64.b64decode(answer["UserData"]["Value"]).decode()

    def take(self, queue_url: str, visibility_s: int = 30) -> list[dict[str, Any]]:
        """Receive what is visible on a queue (up to 10 messages), as SQS answers it."""
        answer = self.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility_s, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"],
        )  # fmt: skip
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def job_message(self, job_id: int, repository: str = "octo-org/api", attempt: int = 1) -> str:
        """The jobs-queue body the webhook function writes for a queued job."""
        owner = repository.split("/")[0]
        message = JobMessage(job_id=job_id, run_id=job_id + 1000, repository=repository, owner=owner,
                             installation_id=self.installation_id, labels=tuple(LABELS), private=True,
                             attempt=attempt, delivery_id=str(uuid.uuid4()))  # fmt: skip
        return encode(message).body

    # -- Lambda's side ----------------------------------------------------------------------

    def sqs_event(self, queue_url: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The event Lambda's SQS event source mapping builds from received messages (real record shape)."""
        arn = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        template = event("sqsEvent.json")["Records"][0]
        records = []
        for message in messages:
            record = copy.deepcopy(template)
            record.update(
                messageId=message["MessageId"], receiptHandle=message["ReceiptHandle"], body=message["Body"],
                md5OfBody=message["MD5OfBody"], eventSourceARN=arn, awsRegion=REGION,
                attributes=dict(message.get("Attributes", {})),
                messageAttributes={
                    name: {"stringValue": value["StringValue"], "stringListValues": [], "binaryListValues": [],
                           "dataType": value["DataType"]}
                    for name, value in message.get("MessageAttributes", {}).items()
                },
            )  # fmt: skip
            records.append(record)
        return {"Records": records}

    def bodies_event(self, *bodies: str, queue: str = "jobs") -> dict[str, Any]:
        """An SQS event carrying ``bodies``, sent through the queue first so the records are real."""
        url = self.jobs_url if queue == "jobs" else self.lifecycle_url
        for body in bodies:
            self.sqs.send_message(QueueUrl=url, MessageBody=body)
        messages: list[dict[str, Any]] = []
        while len(messages) < len(bodies):
            taken = self.take(url)
            assert taken, f"expected {len(bodies)} messages on the {queue} queue, found {len(messages)}"
            messages += taken
        return self.sqs_event(url, messages)

    def deliver(self, queue_url: str, handler: Handler, visibility_s: int = 30) -> dict[str, Any]:
        """One poll of the event source mapping: receive, invoke, delete what did not fail."""
        messages = self.take(queue_url, visibility_s)
        if not messages:
            return {"batchItemFailures": [], "records": 0}
        response: dict[str, Any] = handler(self.sqs_event(queue_url, messages), LambdaContext())
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return {**response, "records": len(messages)}


@pytest.fixture
def deployment(moto_endpoint: str, network: Network, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    """A fresh deployment whose settings are in the environment, and no app built yet (a cold start)."""
    with GitHubSimulator() as sim:
        built = Deployment(moto_endpoint, network, sim)
        for name, value in built.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(jitr_functions.app, "_APP", None)
        yield built


class FunctionUrl(aws_testing.FunctionUrl):
    """A Lambda function URL in front of a handler: each HTTP request becomes a real function URL event."""

    def __init__(self, handler: Handler) -> None:
        super().__init__(lambda request: handler(request, LambdaContext()), event("lambdaFunctionUrlEvent.json"))


@pytest.fixture(scope="session")
def identity_signer() -> IdentitySigner:
    """AWS's signer of the instance identity documents of the deployment's instances."""
    return IdentitySigner(ACCOUNT, REGION)


@pytest.fixture
def brokered(
    deployment: Deployment, identity_signer: IdentitySigner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Deployment, FunctionUrl]]:
    """The deployment with its pool in broker mode, trusting ``identity_signer``, its broker behind a function URL."""
    certificates = identity_signer.trust(tmp_path / "certificates")
    front = FunctionUrl(aws.broker)
    monkeypatch.setenv("JITR_POOLS", json.dumps([{**deployment.pool, "handoff": "broker"}]))
    monkeypatch.setenv("JITR_BROKER_URL", front.url)
    monkeypatch.setenv("JITR_AWS_IDENTITY_CERTIFICATES", str(certificates))
    monkeypatch.setenv("JITR_AWS_IDENTITY_ACCOUNTS", ACCOUNT)
    try:
        yield deployment, front
    finally:
        front.close()


def ask_broker(front: FunctionUrl, runner: str, proof: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """What the broker answers an instance that sends ``proof`` for ``runner``: (status, JSON)."""
    body = json.dumps({"runner_name": runner, "provider": "aws", "proof": proof}).encode()
    return post(front.url, body, {"Content-Type": "application/json"})
