"""Run jitr's flow against the Lambda functions a deployment created, and check their IAM roles.

The infrastructure tests deploy jitr into moto (with Terraform or CloudFormation), then use this
module to read back what was deployed and to run the real handlers in this process, each with
exactly the environment the deployment gave its function. The handler code comes from the
installed packages (moto does not run Lambda code), so the bundle zip a deployment uploads may be
any small zip. What a deployment decides is checked for real: the handler names, the
environment each function gets (table, queues, secrets, pools, security groups, instance profile)
and the IAM policy of each function's role, against the AWS calls the handler made.

The API, in the order a test uses it:

- :func:`deployed_functions` — the functions of a deployment, keyed ``webhook``, ``scaleup``,
  ``lifecycle``, ``scaledown``, ``rebalancer`` and ``broker`` where the deployment has one (from
  their handlers), each a :class:`DeployedFunction` (name, handler, runtime, architecture,
  environment, role).
- :func:`run_flow` — a GitHub job from its ``queued`` webhook (through a function URL) to a
  tagged EC2 instance, its JIT config (from the user data, or from the broker when the
  deployment has one), its ``in_progress`` and ``completed`` webhooks through the lifecycle
  queue, then one scale-down and one rebalancer pass from scheduled events. Returns a
  :class:`FlowResult` whose ``calls`` maps each function to the IAM actions it called.
- :func:`run_broker_handoff` — a job of a broker-mode pool: scaleup launches a VM whose user data
  holds no JIT config, the VM asks the broker function (through the same kind of HTTP front, the
  payload format 2.0 event an HTTP API and a function URL both send) and gets its config once.
- :func:`run_warm_pool` — a pool with warm VMs: scaledown fills it, a job takes the waiting VM
  (whose held call to the broker gets the job's config) and scaleup refills it; the next job takes
  the new VM, but GitHub will not register its runner, so the broker retires it and dead-letters
  the job.
- :class:`IdentitySigner` — plays AWS's signer of instance identity documents: the proof a
  launched instance sends the broker, and the certificate the broker must trust for it.
- :func:`role_actions` / :func:`role_statements` — what a role's inline and attached policies allow.
- :func:`load_reasons` and :func:`assert_covered` — every called action is allowed, and every
  allowed action was called or has a written reason (``uncalled_actions.json``).

AWS calls are recorded with botocore's event system: a ``before-parameter-build`` handler added
to botocore's built-in handlers, which every botocore session registers when it is created. The
process's boto3 clients and cached secrets of jitr are dropped before each invocation (each
function runs in a container of its own), so the session jitr creates next carries the recorder
and each function reads the secrets it needs itself. No jitr code is replaced.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import http.client
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import botocore.handlers
from jitr_aws import testing as aws_testing
from jitr_aws.testing import FAKE_CREDENTIALS
from jitr_core.testing.environment import wait_until
from jitr_github.simulator import GitHubSimulator

FIXTURES = Path(__file__).parent / "fixtures"
REASONS = Path(__file__).parent / "uncalled_actions.json"
KINDS = ("webhook", "scaleup", "lifecycle", "scaledown", "rebalancer")
LABELS = ("self-hosted", "linux", "x64")
_JIT_IN_SCRIPT = re.compile(r"ACTIONS_RUNNER_INPUT_JITCONFIG=\"\$\(printf %s '([A-Za-z0-9+/=]+)' \| base64 -d\)\"")
# DynamoDB transactions are authorised by the actions of the items they hold, not by an action of their own.
_TRANSACT_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


@dataclass(frozen=True)
class DeployedFunction:
    """One Lambda function as the deployment created it."""

    name: str
    handler: str
    runtime: str
    architectures: tuple[str, ...]
    timeout_s: int
    memory_mb: int
    environment: Mapping[str, str]
    role_arn: str

    @property
    def kind(self) -> str:
        """``webhook``, ``scaleup``, ... : the handler's function name."""
        return self.handler.rsplit(".", 1)[-1]

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]


@dataclass
class FlowResult:
    """What :func:`run_flow` did: the IAM actions each function called, and what it saw on the way."""

    calls: dict[str, set[str]]
    job_id: int
    instance_id: str
    instance_tags: dict[str, str]
    reports: dict[str, Any] = field(default_factory=dict)


def aws_client(service: str, endpoint: str, region: str) -> Any:
    """A boto3 client for the test's own reads (never recorded: no function is being invoked)."""
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    )


def deployed_functions(
    endpoint: str, name_prefix: str, region: str, kinds: Sequence[str] = KINDS
) -> dict[str, DeployedFunction]:
    """The functions whose names start with ``name_prefix``, keyed by kind; fails unless exactly ``kinds``
    are there (the five, and ``broker`` where a deployment has one)."""
    lam = aws_client("lambda", endpoint, region)
    found: dict[str, DeployedFunction] = {}
    for page in lam.get_paginator("list_functions").paginate():
        for summary in page["Functions"]:
            if not summary["FunctionName"].startswith(name_prefix):
                continue
            config = lam.get_function_configuration(FunctionName=summary["FunctionName"])
            function = DeployedFunction(
                name=config["FunctionName"],
                handler=config["Handler"],
                runtime=config["Runtime"],
                architectures=tuple(config.get("Architectures", ["x86_64"])),
                timeout_s=int(config["Timeout"]),
                memory_mb=int(config["MemorySize"]),
                environment=dict(config.get("Environment", {}).get("Variables", {})),
                role_arn=config["Role"],
            )
            assert function.kind not in found, f"two functions with handler {function.handler}"
            found[function.kind] = function
    assert set(found) == set(kinds), f"expected the functions {kinds} under {name_prefix!r}, found {sorted(found)}"
    return found


# -- recording the AWS calls ---------------------------------------------------------------------


class ActionRecorder:
    """IAM actions (``service:Operation``) called by each function while it is the current one."""

    def __init__(self) -> None:
        self.calls: dict[str, set[str]] = {}
        self.current: str | None = None
        self._lock = threading.Lock()

    def __call__(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        if self.current is None:
            return
        prefix = model.service_model.signing_name
        if prefix == "dynamodb" and model.name in ("TransactWriteItems", "TransactGetItems"):
            actions = {f"dynamodb:{_TRANSACT_ITEMS[k]}" for item in params.get("TransactItems", []) for k in item}
        else:
            actions = {f"{prefix}:{model.name}"}
        with self._lock:
            self.calls.setdefault(self.current, set()).update(actions)

    @contextmanager
    def installed(self) -> Iterator[ActionRecorder]:
        """Every botocore session created meanwhile registers the recorder."""
        entry = ("before-parameter-build", self)
        botocore.handlers.BUILTIN_HANDLERS.append(entry)
        try:
            yield self
        finally:
            botocore.handlers.BUILTIN_HANDLERS.remove(entry)


class Invoker:
    """Invokes a deployed function's handler in this process, as a cold Lambda container would."""

    def __init__(self, endpoint: str, region: str, recorder: ActionRecorder) -> None:
        self.endpoint = endpoint
        self.region = region
        self.recorder = recorder
        self._lock = threading.RLock()

    def environment(self, function: DeployedFunction) -> dict[str, str]:
        """The deployment's variables, what Lambda adds, and AWS pointed at moto; no other JITR_* or AWS_*."""
        kept = {k: v for k, v in os.environ.items() if not k.startswith(("JITR_", "AWS_"))}
        lambda_runtime = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_ENDPOINT_URL": self.endpoint,
        }
        return {**kept, **FAKE_CREDENTIALS, **lambda_runtime, **function.environment}

    def __call__(self, function: DeployedFunction, event: Any) -> Any:
        import jitr_aws.clients
        import jitr_aws.secrets
        import jitr_functions.app

        module, _, attribute = function.handler.rpartition(".")
        handler: Callable[[Any, Any], Any] = getattr(import_module(module), attribute)
        with self._lock:
            saved = dict(os.environ)
            os.environ.clear()
            os.environ.update(self.environment(function))
            # A cold start: no app, no boto3 session, client or cached secret left from another function.
            jitr_functions.app._APP = None
            with jitr_aws.clients._lock:
                jitr_aws.clients._clients.clear()
                jitr_aws.clients._session = None
            with jitr_aws.secrets._lock:
                jitr_aws.secrets._cache.clear()
            self.recorder.current = function.kind
            try:
                return handler(event, _Context(function.name))
            finally:
                self.recorder.current = None
                jitr_functions.app._APP = None
                os.environ.clear()
                os.environ.update(saved)


@dataclass
class _Context:
    function_name: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class FunctionUrl(aws_testing.FunctionUrl):
    """A Lambda function URL (auth NONE) in front of a deployed function: requests become function URL events."""

    def __init__(self, invoke: Callable[[Any], dict[str, Any]]) -> None:
        super().__init__(invoke, _fixture("lambdaFunctionUrlEvent.json"))


# -- the flow ------------------------------------------------------------------------------------


def run_flow(
    endpoint: str,
    functions: Mapping[str, DeployedFunction],
    sim: GitHubSimulator,
    *,
    webhook_secret: str,
    region: str,
    repository: str = "octo-org/api",
    labels: Sequence[str] = LABELS,
    prove: Callable[[Mapping[str, Any]], dict[str, str]] | None = None,
) -> FlowResult:
    """One job through the deployed functions; the IAM actions each function called.

    ``sim`` must be the GitHub the deployment points at (its ``JITR_GITHUB_API_URL``), with the
    App id and private key the deployment's secrets hold; ``webhook_secret`` is the value of the
    deployment's webhook secret. The App is installed on the repository's owner here. Each step
    is checked as it happens, with a message naming it.

    With a ``broker`` among ``functions`` the VM's user data must hold no JIT config: the VM asks
    the broker with ``prove(instance)`` (see :func:`run_broker_handoff`) and gets it once.
    Without one the JIT config must be in the user data.
    """
    brokered = "broker" in functions
    assert not brokered or prove is not None, "a deployment with a broker needs the instance's identity proof"
    owner, _, name = repository.partition("/")
    sim.add_installation(owner, repos=[name])
    sqs = aws_client("sqs", endpoint, region)
    ec2 = aws_client("ec2", endpoint, region)
    jobs_url = functions["scaleup"].environment["JITR_AWS_JOBS_QUEUE_URL"]
    lifecycle_url = functions["lifecycle"].environment["JITR_AWS_LIFECYCLE_QUEUE_URL"]
    recorder = ActionRecorder()
    invoke = Invoker(endpoint, region, recorder)
    front = FunctionUrl(lambda request: invoke(functions["webhook"], request))
    broker = FunctionUrl(lambda request: invoke(functions["broker"], request)) if brokered else None
    result = FlowResult(calls=recorder.calls, job_id=0, instance_id="", instance_tags={})
    try:
        with recorder.installed():
            sim.set_webhook(front.url, webhook_secret)
            result.job_id = sim.queue_job(repository, list(labels))
            _delivered(sim, 1, "the queued webhook")

            _poll_queue(sqs, jobs_url, functions["scaleup"], invoke, region, "the jobs queue")
            instance = _instance_of(ec2, result.job_id, _deployment_tag(functions))
            result.instance_id = instance["InstanceId"]
            result.instance_tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            user_data = ec2.describe_instance_attribute(InstanceId=result.instance_id, Attribute="userData")
            script = base64.b64decode(user_data["UserData"]["Value"]).decode()
            match = _JIT_IN_SCRIPT.search(script)
            request = b""
            if broker is not None and prove is not None:
                broker_url = functions["scaleup"].environment["JITR_BROKER_URL"]
                assert match is None, "a broker-mode instance's user data carries a JIT config"
                assert broker_url in script, "the script does not ask the broker"
                request = _broker_request(result.instance_tags, prove(instance))
                status, answer = _post(broker.url + "broker", request)
                assert status == 200 and "jit_config" in answer, f"the broker answered {status}"
                jit_config = str(answer["jit_config"])
            else:
                assert match is not None, "the instance's user data carries no JIT config"
                jit_config = base64.b64decode(match.group(1)).decode()

            runner = sim.agent_connect(jit_config)
            assigned = sim.agent_poll(runner.id, timeout=10)
            assert assigned is not None and assigned.id == result.job_id, f"the runner got {assigned}"
            if broker is not None:
                status, answer = _post(broker.url + "broker", request)
                assert status == 410 and "jit_config" not in answer, f"asked again, the broker answered {status}"
            _delivered(sim, 2, "the in_progress webhook")
            _poll_queue(sqs, lifecycle_url, functions["lifecycle"], invoke, region, "the lifecycle queue (in_progress)")

            sim.agent_finish(runner.id)
            _delivered(sim, 3, "the completed webhook")
            _poll_queue(sqs, lifecycle_url, functions["lifecycle"], invoke, region, "the lifecycle queue (completed)")

            for kind in ("scaledown", "rebalancer"):
                scheduled = {**_fixture("example-eventbridge-schedule.json"), "id": str(uuid.uuid4())}
                result.reports[kind] = invoke(functions[kind], scheduled)
    finally:
        sim.set_webhook(None, None)
        front.close()
        if broker is not None:
            broker.close()
    return result


def run_broker_handoff(
    endpoint: str,
    functions: Mapping[str, DeployedFunction],
    sim: GitHubSimulator,
    *,
    webhook_secret: str,
    region: str,
    prove: Callable[[Mapping[str, Any]], dict[str, str]],
    repository: str = "octo-org/web",
    labels: Sequence[str] = LABELS,
) -> FlowResult:
    """A job of a broker-mode pool to the runner that took it; the IAM actions each function called.

    ``prove(instance)`` is the identity proof the launched instance sends (its instance identity
    document and signature, as ``describe_instances`` shows the instance). The broker is asked
    twice: the first answer carries the JIT config the agent connects with, the second nothing.
    """
    owner, _, name = repository.partition("/")
    sim.add_installation(owner, repos=[name])
    sqs = aws_client("sqs", endpoint, region)
    ec2 = aws_client("ec2", endpoint, region)
    jobs_url = functions["scaleup"].environment["JITR_AWS_JOBS_QUEUE_URL"]
    recorder = ActionRecorder()
    invoke = Invoker(endpoint, region, recorder)
    front = FunctionUrl(lambda request: invoke(functions["webhook"], request))
    broker = FunctionUrl(lambda request: invoke(functions["broker"], request))
    result = FlowResult(calls=recorder.calls, job_id=0, instance_id="", instance_tags={})
    try:
        with recorder.installed():
            sim.set_webhook(front.url, webhook_secret)
            result.job_id = sim.queue_job(repository, list(labels))
            _delivered(sim, 1, "the queued webhook")
            _poll_queue(sqs, jobs_url, functions["scaleup"], invoke, region, "the jobs queue")
            instance = _instance_of(ec2, result.job_id, _deployment_tag(functions))
            result.instance_id = instance["InstanceId"]
            result.instance_tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            user_data = ec2.describe_instance_attribute(InstanceId=result.instance_id, Attribute="userData")
            script = base64.b64decode(user_data["UserData"]["Value"]).decode()
            assert _JIT_IN_SCRIPT.search(script) is None, "a broker-mode instance's user data carries a JIT config"
            assert functions["scaleup"].environment["JITR_BROKER_URL"] in script, "the script does not ask the broker"

            request = _broker_request(result.instance_tags, prove(instance))
            status, answer = _post(broker.url + "broker", request)
            assert status == 200 and "jit_config" in answer, f"the broker answered {status}"
            runner = sim.agent_connect(answer["jit_config"])
            assigned = sim.agent_poll(runner.id, timeout=10)
            assert assigned is not None and assigned.id == result.job_id, f"the runner got {assigned}"
            status, answer = _post(broker.url + "broker", request)
            assert status == 410 and "jit_config" not in answer, f"asked again, the broker answered {status}"
    finally:
        sim.set_webhook(None, None)
        front.close()
        broker.close()
    return result


def run_warm_pool(
    endpoint: str,
    functions: Mapping[str, DeployedFunction],
    sim: GitHubSimulator,
    *,
    webhook_secret: str,
    region: str,
    prove: Callable[[Mapping[str, Any]], dict[str, str]],
    repository: str = "octo-warm/ci",
    labels: Sequence[str] = LABELS,
) -> FlowResult:
    """Jobs of a pool that keeps one warm VM (docs/warm-pools.md); the IAM actions each function called.

    1. A scheduled scaledown pass fills the pool, or finds it filled: one warm VM waits.
    2. The VM asks the broker under its warm name; no job has taken it: 204 (the deployment's
       ``warm_hold_s`` should be short, the call waits it out).
    3. A job arrives: scaleup gives it the warm VM, launching nothing for it, and refills the pool.
    4. The VM asks again and gets the job's JIT config; its warm record is gone, the agent takes
       the job, and lifecycle follows its ``in_progress`` webhook.
    5. The next job takes the VM the refill launched, but GitHub will not register its runner (404
       on generate-jitconfig, as for a repository the App lost): the broker retires the runner,
       terminating its VM, and puts the job in the jobs dead-letter queue.

    ``result.job_id`` and ``result.instance_id`` are step 3's job and VM; ``result.reports`` holds
    the scaledown pass's report and the job of step 5 (``unserved_job_id``).
    """
    owner, _, name = repository.partition("/")
    sim.add_installation(owner, repos=[name])
    sqs = aws_client("sqs", endpoint, region)
    ec2 = aws_client("ec2", endpoint, region)
    ddb = aws_client("dynamodb", endpoint, region)
    environment = functions["scaleup"].environment
    tags = _deployment_tag(functions)
    recorder = ActionRecorder()
    invoke = Invoker(endpoint, region, recorder)
    front = FunctionUrl(lambda request: invoke(functions["webhook"], request))
    broker = FunctionUrl(lambda request: invoke(functions["broker"], request))
    result = FlowResult(calls=recorder.calls, job_id=0, instance_id="", instance_tags={})
    assert sim.drain_webhooks(timeout=60), "webhooks of earlier jobs are still being delivered"
    seen = len(sim.deliveries())

    def job_through_scaleup(what: str) -> int:
        nonlocal seen
        job_id = sim.queue_job(repository, list(labels))
        _delivered(sim, 1, f"{what}'s queued webhook", since=seen)
        seen += 1
        _poll_queue(sqs, environment["JITR_AWS_JOBS_QUEUE_URL"], functions["scaleup"], invoke, region, "the jobs queue")
        return job_id

    try:
        with recorder.installed():
            scheduled = {**_fixture("example-eventbridge-schedule.json"), "id": str(uuid.uuid4())}
            result.reports["scaledown"] = invoke(functions["scaledown"], scheduled)
            [warm] = _warm_instances(ec2, tags)
            result.instance_id = warm["InstanceId"]
            result.instance_tags = {t["Key"]: t["Value"] for t in warm.get("Tags", [])}
            warm_name = result.instance_tags["jitr-runner"]
            request = _broker_request(result.instance_tags, prove(warm))
            status, answer = _post(broker.url + "broker", request)
            assert status == 204, f"the waiting warm VM's first call answered {status}: {answer}"

            sim.set_webhook(front.url, webhook_secret)
            result.job_id = job_through_scaleup("the job taking the warm VM")
            status, answer = _post(broker.url + "broker", request)
            assert status == 200 and "jit_config" in answer, f"the warm VM's call answered {status}: {answer}"
            warm_record = {"pk": {"S": f"warm#{warm_name}"}}
            assert "Item" not in ddb.get_item(TableName=environment["JITR_AWS_TABLE"], Key=warm_record)
            runner = sim.agent_connect(answer["jit_config"])
            assigned = sim.agent_poll(runner.id, timeout=10)
            assert assigned is not None and assigned.id == result.job_id, f"the warm VM's runner got {assigned}"
            _delivered(sim, 1, "the in_progress webhook", since=seen)
            seen += 1
            lifecycle_url = environment["JITR_AWS_LIFECYCLE_QUEUE_URL"]
            _poll_queue(sqs, lifecycle_url, functions["lifecycle"], invoke, region, "the lifecycle queue (in_progress)")
            status, _ = _post(broker.url + "broker", request)
            assert status == 410, f"asked again, the broker answered {status}"

            [refilled] = [i for i in _warm_instances(ec2, tags) if i["InstanceId"] != result.instance_id]
            refilled_tags = {t["Key"]: t["Value"] for t in refilled.get("Tags", [])}
            sim.fail_next(1, 404, path_contains="generate-jitconfig")
            unserved = result.reports["unserved_job_id"] = job_through_scaleup("the job GitHub will not serve")
            status, answer = _post(broker.url + "broker", _broker_request(refilled_tags, prove(refilled)))
            assert status == 410 and "cannot serve" in answer.get("error", ""), f"the broker: {status} {answer}"
            [gone] = ec2.describe_instances(InstanceIds=[refilled["InstanceId"]])["Reservations"][0]["Instances"]
            assert gone["State"]["Name"] in ("shutting-down", "terminated"), f"the runner's VM is {gone['State']}"
            dead = sqs.receive_message(
                QueueUrl=environment["JITR_AWS_JOBS_DLQ_URL"], MaxNumberOfMessages=10, VisibilityTimeout=0
            ).get("Messages", [])
            assert any(json.loads(m["Body"]).get("job_id") == unserved for m in dead), "the job was not dead-lettered"
    finally:
        sim.set_webhook(None, None)
        front.close()
        broker.close()
    return result


def _warm_instances(ec2: Any, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The deployment's warm VMs not yet terminating (those a job took keep their warm tags)."""
    wanted = {"managed-by": "jitr", "jitr-job": "warm", **tags}
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in wanted.items()]
    filters.append({"Name": "instance-state-name", "Values": ["pending", "running"]})
    answer = ec2.describe_instances(Filters=filters)
    return [i for r in answer["Reservations"] for i in r["Instances"]]


class IdentitySigner:
    """AWS's signer of instance identity documents for a deployed broker, played by a test key
    (:class:`jitr_aws.testing.IdentitySigner`).

    :meth:`trust` writes the key's certificate into a directory and returns the broker function
    with that directory added to its environment (``JITR_AWS_IDENTITY_CERTIFICATES``, the one
    setting a deployment does not give); :meth:`prove` is what a launched instance sends the broker.
    """

    def __init__(self, account: str, region: str) -> None:
        self._signer = aws_testing.IdentitySigner(account, region)

    def trust(self, broker: DeployedFunction, directory: Path) -> DeployedFunction:
        """The broker function with this signer's certificate among the ones it trusts."""
        certificates = str(self._signer.trust(directory))
        return replace(broker, environment={**broker.environment, "JITR_AWS_IDENTITY_CERTIFICATES": certificates})

    def prove(self, instance: Mapping[str, Any]) -> dict[str, str]:
        """The instance's identity document and its signature, as the instance metadata service serves them."""
        return self._signer.prove_instance(instance)


def _deployment_tag(functions: Mapping[str, DeployedFunction]) -> dict[str, str]:
    """The ``jitr:deployment`` tag the deployment's runners carry (from scaleup's ``JITR_AWS_TAGS``)."""
    tags = dict(pair.split("=", 1) for pair in functions["scaleup"].environment["JITR_AWS_TAGS"].split(","))
    return {"jitr:deployment": tags["jitr:deployment"]}


def _broker_request(instance_tags: Mapping[str, str], proof: Mapping[str, str]) -> bytes:
    return json.dumps({"runner_name": instance_tags["jitr-runner"], "provider": "aws", "proof": dict(proof)}).encode()


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request("POST", parts.path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})
    finally:
        connection.close()


def _delivered(sim: GitHubSimulator, count: int, what: str, since: int = 0) -> None:
    """The simulator's deliveries after its first ``since`` are ``count``, each answered 202."""
    assert sim.drain_webhooks(timeout=60), f"{what} was not delivered"
    statuses = [d.status_code for d in reversed(sim.deliveries())][since:]
    assert statuses == [202] * count, f"{what}: the webhook function answered {statuses}"


def _poll_queue(sqs: Any, url: str, function: DeployedFunction, invoke: Invoker, region: str, what: str) -> None:
    """One poll of an SQS event source mapping: receive, invoke, delete what was not reported failed."""
    messages: list[dict[str, Any]] = wait_until(
        lambda: sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages"),
        30, f"a message on {what}",
    )  # fmt: skip
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    template = _fixture("sqsEvent.json")["Records"][0]
    records = []
    for message in messages:
        record = copy.deepcopy(template)
        record.update(
            messageId=message["MessageId"], receiptHandle=message["ReceiptHandle"], body=message["Body"],
            md5OfBody=message["MD5OfBody"], eventSourceARN=arn, awsRegion=region,
            attributes=dict(message.get("Attributes", {})),
            messageAttributes={
                key: {"stringValue": value["StringValue"], "stringListValues": [], "binaryListValues": [],
                      "dataType": value["DataType"]}
                for key, value in message.get("MessageAttributes", {}).items()
            },
        )  # fmt: skip
        records.append(record)
    response = invoke(function, {"Records": records})
    assert response == {"batchItemFailures": []}, f"{function.kind} on {what} answered {response}"
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _instance_of(ec2: Any, job_id: int, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The instance launched for a job (of the deployment whose runner ``tags`` are given, if any)."""
    wanted = {"managed-by": "jitr", "jitr-job": str(job_id), **(tags or {})}
    answer = ec2.describe_instances(Filters=[{"Name": f"tag:{k}", "Values": [v]} for k, v in wanted.items()])
    instances = [i for r in answer["Reservations"] for i in r["Instances"]]
    assert len(instances) == 1, f"expected one instance tagged for job {job_id}, found {len(instances)}"
    instance: dict[str, Any] = instances[0]
    return instance


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


# -- what the roles allow ------------------------------------------------------------------------


def role_statements(endpoint: str, role_name: str, region: str) -> list[dict[str, Any]]:
    """Every statement of the role's inline and attached (managed) policies, as read back from IAM."""
    iam = aws_client("iam", endpoint, region)
    documents: list[Any] = []
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
        for policy in page["PolicyNames"]:
            documents.append(iam.get_role_policy(RoleName=role_name, PolicyName=policy)["PolicyDocument"])
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
        for attached in page["AttachedPolicies"]:
            version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
            answer = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)
            documents.append(answer["PolicyVersion"]["Document"])
    statements: list[dict[str, Any]] = []
    for document in documents:
        if isinstance(document, str):
            document = json.loads(unquote(document))
        found = document["Statement"]
        statements += found if isinstance(found, list) else [found]
    return statements


def role_actions(endpoint: str, role_name: str, region: str) -> set[str]:
    """The actions the role's policies allow (as written: a wildcard stays a wildcard)."""
    actions: set[str] = set()
    for statement in role_statements(endpoint, role_name, region):
        if statement.get("Effect") != "Allow":
            continue
        found = statement.get("Action", [])
        actions.update([found] if isinstance(found, str) else found)
    return actions


def load_reasons(path: Path = REASONS) -> dict[str, dict[str, str]]:
    """function → action → why a role allows an action the flow does not call (``uncalled_actions.json``)."""
    data: dict[str, dict[str, str]] = json.loads(path.read_text())
    return {kind: dict(actions) for kind, actions in data.items() if not kind.startswith("_")}


def allows(allowed: set[str], action: str) -> bool:
    """Whether an action is in ``allowed``, wildcards included (IAM action names match case-insensitively)."""
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in allowed)


def assert_covered(
    called: Mapping[str, set[str]], allowed: Mapping[str, set[str]], reasons: Mapping[str, Mapping[str, str]]
) -> None:
    """Per function: each called action is allowed, and each allowed action was called or has a reason."""
    problems: list[str] = []
    for kind in sorted(set(called) | set(allowed)):
        calls, grants, why = called.get(kind, set()), allowed.get(kind, set()), reasons.get(kind, {})
        for action in sorted(calls):
            if not allows(grants, action):
                problems.append(f"{kind}: calls {action}, which its role does not allow")
        for action in sorted(grants):
            if not any(fnmatch.fnmatchcase(c.lower(), action.lower()) for c in calls) and action not in why:
                problems.append(f"{kind}: its role allows {action}, never called, with no reason in {REASONS.name}")
    if problems:
        seen = [f"{kind} called: {', '.join(sorted(called[kind]))}" for kind in sorted(called)]
        raise AssertionError("IAM coverage:\n" + "\n".join(problems + seen))
