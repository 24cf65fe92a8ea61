"""The CloudFormation stack ``infra/aws/cloudformation/jitr.yaml``.

cfn-lint checks the whole template. moto's CloudFormation creates the stack without the resource
types it does not implement (a named list, checked against the template); what it created is read
back, the real handlers run through jitr's flow with exactly the environment the stack gave each
function, and each function's role is compared with the AWS calls its handler made. The parts
moto skips (function URL, secrets, alarms, asynchronous retry settings) are read from the
template with its intrinsic functions resolved.
"""

from __future__ import annotations

import copy
import fnmatch
import io
import json
import os
import re
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import botocore.handlers
import jitr_aws.secrets
import pytest
from aws_cfn_stack import (
    ROOT,
    TEMPLATE,
    UNSUPPORTED_BY_MOTO,
    Resolver,
    allowed_actions,
    load_template,
    moto_variant,
    resource_types,
    stack_role_statements,
    template_statements,
)
from aws_flow import (
    KINDS,
    ActionRecorder,
    DeployedFunction,
    IdentitySigner,
    Invoker,
    assert_covered,
    aws_client,
    deployed_functions,
    run_broker_handoff,
    run_flow,
    run_warm_pool,
)
from jitr_aws.config import parse, vm_shape
from jitr_aws.dynamodb import table_definition, ttl_specification
from jitr_core.settings import Settings
from jitr_core.testing.environment import deadline_s, unavailable, wait_until
from jitr_github.simulator import GitHubSimulator

REGION = "eu-west-1"
WEBHOOK_SECRET = "whsec-cloudformation-test-0123456789"
# From docs/aws-deploy.md: handler, timeout (s), memory (MB).
FUNCTIONS = {
    "webhook": ("jitr_functions.aws.webhook", 10, 256),
    "scaleup": ("jitr_functions.aws.scaleup", 60, 512),
    "lifecycle": ("jitr_functions.aws.lifecycle", 60, 256),
    "scaledown": ("jitr_functions.aws.scaledown", 240, 512),
    "rebalancer": ("jitr_functions.aws.rebalancer", 55, 512),
}
LOGICAL = {kind: kind.capitalize() for kind in FUNCTIONS}
_LOGS = "Lambda's runtime writes the function's log stream with its role; the handler never calls CloudWatch Logs"
_ESM = "the SQS event source mapping receives, deletes and reads the queue with the function's role (the test plays it)"
_NUDGE = "a runner leaving flight sends the oldest job waiting for a cap (a Query on queued jobs) at once"
_WARM = (
    "scaledown fills the pools that keep warm VMs (the stack cannot read that from Pools, so it may always launch); "
    "this stack's pool keeps none: the broker stack's warm pool exercises it"
)
# Actions a function's role allows that one pass of the flow does not call, and why the role has them.
REASONS: dict[str, dict[str, str]] = {
    "webhook": {
        "logs:CreateLogStream": _LOGS,
        "logs:PutLogEvents": _LOGS,
    },
    "scaleup": {
        "logs:CreateLogStream": _LOGS,
        "logs:PutLogEvents": _LOGS,
        "sqs:ReceiveMessage": _ESM,
        "sqs:DeleteMessage": _ESM,
        "sqs:GetQueueAttributes": _ESM,
        "sqs:SendMessage": "a job that must wait (a full pool, a claim held elsewhere) is sent again with a delay; "
        "a malformed message goes to the dead-letter queue",
        "ec2:CreateTags": "authorised at launch by RunInstances' TagSpecifications, never called on its own",
        "iam:PassRole": "RunInstances passes the runner role through the runner instance profile",
        "dynamodb:DeleteItem": "a claim whose launch fails, or a leftover claim, is released",
        "dynamodb:Query": _NUDGE,
        "ec2:TerminateInstances": "the VM of a job cancelled while it launched is terminated (its runner retired)",
    },
    "lifecycle": {
        "logs:CreateLogStream": _LOGS,
        "logs:PutLogEvents": _LOGS,
        "sqs:ReceiveMessage": _ESM,
        "sqs:DeleteMessage": _ESM,
        "sqs:GetQueueAttributes": _ESM,
        "sqs:SendMessage": "an event that must wait is sent again, a nudged job to the jobs queue, "
        "a malformed message to the dead-letter queue",
        "secretsmanager:GetSecretValue": "the App's key, to remove the registration of a runner left over by a "
        "job cancelled while queued",
        "ec2:TerminateInstances": "the VM of a runner left over by a job cancelled while queued is terminated",
        "ec2:DescribeInstances": "after a refused TerminateInstances, to tell whether the VM is already gone",
        "dynamodb:DeleteItem": "a runner record retired before it had a VM is deleted",
    },
    "scaledown": {
        "logs:CreateLogStream": _LOGS,
        "logs:PutLogEvents": _LOGS,
        "sqs:SendMessage": "a stuck job, or the job of a runner whose VM is gone, is sent to the jobs queue again; "
        "a lost webhook's event goes to lifecycle; a job whose runners keep exiting without it is dead-lettered",
        "dynamodb:UpdateItem": "a cap counter that differs from the in-flight records is repaired",
        "ec2:TerminateInstances": "orphaned, over-age and never-booted VMs are terminated; the flow leaves none",
        "ec2:RunInstances": _WARM,
        "ec2:DescribeImages": _WARM,
        "ec2:CreateTags": _WARM,
        "iam:PassRole": _WARM,
    },
    "rebalancer": {
        "logs:CreateLogStream": _LOGS,
        "logs:PutLogEvents": _LOGS,
        "sqs:SendMessage": "a queued job without a runner is sent to the jobs queue again",
        "dynamodb:UpdateItem": "a runner leaving flight moves the cap counters (a transaction's Update)",
    },
}

# What CloudFormation would answer for the broker's HTTP API, which moto does not create.
BROKER_API = {
    "BrokerApi": {"Ref": "brk1234567", "ApiEndpoint": f"https://brk1234567.execute-api.{REGION}.amazonaws.com"}
}
BROKER_URL = f"https://brk1234567.execute-api.{REGION}.amazonaws.com/broker"

_MOTO_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


@pytest.fixture(scope="module")
def cfn_moto() -> Iterator[str]:
    """A moto server of its own (a separate process, so no other test's resources are in it)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _MOTO_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        port = process.stdout.readline().strip()
        if not port.isdigit():
            unavailable(f"the moto server did not start (exit status {process.poll()})")
        endpoint = f"http://127.0.0.1:{port}"
        sts = aws_client("sts", endpoint, REGION)
        wait_until(lambda: _answers(sts), 30, "the moto server")
        yield endpoint
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=deadline_s(10))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(sts: Any) -> bool:
    try:
        sts.get_caller_identity()
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def sim() -> Iterator[GitHubSimulator]:
    with GitHubSimulator() as simulator:
        yield simulator


@dataclass
class Stack:
    endpoint: str
    prefix: str
    parameters: dict[str, str]
    variant: dict[str, Any]
    outputs: dict[str, str]
    physical: dict[str, str]
    subnets: tuple[str, str]
    vpc: str

    def client(self, service: str) -> Any:
        return aws_client(service, self.endpoint, REGION)


@pytest.fixture(scope="module")
def stack(cfn_moto: str, sim: GitHubSimulator) -> Stack:
    """The template (without what moto lacks) created in moto, pointed at the simulated GitHub;
    ``Broker=false``, so its single pool is rendered with ``"handoff": "metadata"``."""
    return _create_stack(cfn_moto, sim, broker=False)


@pytest.fixture(scope="module")
def broker_sim() -> Iterator[GitHubSimulator]:
    with GitHubSimulator() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def broker_stack(cfn_moto: str, broker_sim: GitHubSimulator) -> Stack:
    """Another stack with ``Broker`` at its default (true) and its pool in ``Pools``, without a
    handoff (the broker's, jitr's default with a broker URL) and with one warm VM; moto gets a
    stand-in for the HTTP API."""
    return _create_stack(cfn_moto, broker_sim, broker=True)


@pytest.fixture(scope="module")
def broker_functions(broker_stack: Stack) -> dict[str, DeployedFunction]:
    return deployed_functions(broker_stack.endpoint, broker_stack.prefix, REGION, kinds=(*KINDS, "broker"))


def _create_stack(
    cfn_moto: str,
    sim: GitHubSimulator,
    *,
    broker: bool,
    pools: Callable[[str, tuple[str, str], str], dict[str, str]] | None = None,
) -> Stack:
    """A stack in moto: the single pool (``Broker=false``), or a warm pool in ``Pools`` (``broker``);
    ``pools(prefix, subnets, image)``, when given, makes what its pools need and answers the
    parameters that replace the single pool's (``Pools`` and what goes with it)."""
    ec2 = aws_client("ec2", cfn_moto, REGION)
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in ((1, "a"), (2, "b"))
    )
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn-ami-hvm-*"]}])
    image = next(i["ImageId"] for i in images["Images"] if i.get("RootDeviceName") == "/dev/xvda")

    prefix = f"cfn{uuid.uuid4().hex[:6]}"
    s3 = aws_client("s3", cfn_moto, REGION)
    if not any(b["Name"] == "jitr-bundles" for b in s3.list_buckets()["Buckets"]):
        s3.create_bucket(Bucket="jitr-bundles", CreateBucketConfiguration={"LocationConstraint": REGION})
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:  # moto stores the code; the handlers run from the packages
        archive.writestr("jitr_functions/__init__.py", "")
    s3.put_object(Bucket="jitr-bundles", Key="jitr/jitr-aws-lambda-test.zip", Body=bundle.getvalue())

    secrets = aws_client("secretsmanager", cfn_moto, REGION)
    webhook_arn = secrets.create_secret(Name=f"{prefix}/github/webhook", SecretString=WEBHOOK_SECRET)["ARN"]
    key_arn = secrets.create_secret(
        Name=f"{prefix}/github/app", SecretString=json.dumps({"private_key": sim.private_key_pem})
    )["ARN"]

    parameters = {
        "NamePrefix": prefix,
        "BundleBucket": "jitr-bundles",
        "BundleKey": "jitr/jitr-aws-lambda-test.zip",
        "Runtime": "python3.13",
        "Architecture": "arm64",
        "GitHubAppId": str(sim.app_id),
        "GitHubApiUrl": sim.base_url,
        "WebhookSecretArn": webhook_arn,
        "AppPrivateKeySecretArn": f"{key_arn}#private_key",
        "PoolName": "linux-cfn",
        "MachineTypes": "m5.large,m5a.large",
        "Subnets": ",".join(subnets),
        "ImageId": image,
        "VpcId": vpc,
        "RunnerTags": f"test-run={prefix}",
    }
    if broker:  # Broker left at its default, true; the pool (with a warm VM) given in Pools
        pool = {
            "name": "linux-brk", "labels": ["self-hosted", "linux", "x64"], "machine_types": ["m5.large"],
            "placements": list(subnets), "image": image, "max_runners": 5, "warm": 1,
        }  # fmt: skip
        parameters.update(Pools=json.dumps([pool]))
        del parameters["ImageId"], parameters["Subnets"], parameters["MachineTypes"], parameters["PoolName"]
    else:
        parameters.update(Broker="false")
    if pools is not None:
        parameters.update(pools(prefix, (subnets[0], subnets[1]), image))
        for single in ("ImageId", "Subnets", "MachineTypes", "PoolName"):
            parameters.pop(single, None)
    template = load_template()
    variant, _ = moto_variant(template, parameters, BROKER_API if broker else None)
    cfn = aws_client("cloudformation", cfn_moto, REGION)
    cfn.create_stack(
        StackName=prefix,
        TemplateBody=json.dumps(variant),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    described: dict[str, Any] = wait_until(
        lambda: _settled(cfn, prefix), 60, f"stack {prefix} to finish creating", step_s=0.2
    )
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    resources = cfn.list_stack_resources(StackName=prefix)["StackResourceSummaries"]
    return Stack(
        endpoint=cfn_moto,
        prefix=prefix,
        parameters=parameters,
        variant=variant,
        outputs={o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
        physical={r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources},
        subnets=(subnets[0], subnets[1]),
        vpc=vpc,
    )


def _settled(cfn: Any, name: str) -> dict[str, Any]:
    """The stack once it is no longer in progress (empty until then)."""
    described: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {} if described["StackStatus"].endswith("_IN_PROGRESS") else described


@pytest.fixture(scope="module")
def functions(stack: Stack) -> dict[str, DeployedFunction]:
    return deployed_functions(stack.endpoint, stack.prefix, REGION)


class _ListResolver(Resolver):
    """A ``Resolver`` that reads a ``CommaDelimitedList`` parameter as CloudFormation does: a list."""

    def ref(self, name: str) -> Any:
        value = super().ref(name)
        spec = self.template.get("Parameters", {}).get(name, {})
        return str(value).split(",") if spec.get("Type") == "CommaDelimitedList" else value


def _resolver(parameters: Mapping[str, str]) -> Resolver:
    physical = {name: {"Ref": f"<{name}>", "Arn": f"<{name}.Arn>"} for name in load_template()["Resources"]}
    pseudo = {"AWS::Region": REGION, "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    return _ListResolver(load_template(), parameters, physical, pseudo)


# -- the template as a whole ---------------------------------------------------------------------


def test_cfn_lint_finds_nothing() -> None:
    try:
        from cfnlint.api import ManualArgs, lint_file
    except ImportError:
        unavailable("cfn-lint is not installed (pip install cfn-lint)")
    matches = lint_file(Path(TEMPLATE), config=ManualArgs(regions=["us-east-1", "eu-west-1", "ap-southeast-2"]))
    assert not matches, "\n".join(str(m) for m in matches)


def test_types_moto_lacks_are_exactly_the_named_ones() -> None:
    from moto.cloudformation.parsing import get_model_map

    lacking = resource_types(load_template()) - set(get_model_map())
    assert lacking == UNSUPPORTED_BY_MOTO


def test_moto_created_every_other_resource(stack: Stack) -> None:
    expected = set(stack.variant["Resources"])
    assert set(stack.physical) == expected
    for output in ("JobsQueueUrl", "LifecycleQueueUrl", "TableName", "RunnerRoleArn", "ScaleupRoleArn"):
        assert stack.outputs[output], output


# -- functions, triggers, state ------------------------------------------------------------------


def test_functions_have_the_documented_handlers_sizes_and_runtime(
    stack: Stack, functions: dict[str, DeployedFunction]
) -> None:
    for kind, (handler, timeout, memory) in FUNCTIONS.items():
        function = functions[kind]
        assert function.name == f"{stack.prefix}-{kind}"
        assert (function.handler, function.timeout_s, function.memory_mb) == (handler, timeout, memory)
        assert function.runtime == "python3.13"
        # moto's CloudFormation drops Architectures: read it from the template.
        properties = load_template()["Resources"][f"{LOGICAL[kind]}Function"]["Properties"]
        assert _resolver(stack.parameters).resolve(properties["Architectures"]) == ["arm64"]
        assert function.role_arn == stack.outputs[f"{LOGICAL[kind]}RoleArn"]
    roles = {f.role_arn for f in functions.values()}
    assert len(roles) == len(FUNCTIONS), "each function has a role of its own"


def test_every_function_gets_settings_jitr_accepts(stack: Stack, functions: dict[str, DeployedFunction]) -> None:
    environments = [dict(f.environment) for f in functions.values()]
    assert all(env == environments[0] for env in environments), "the functions' settings differ"
    env = environments[0]
    assert "JITR_BROKER_URL" not in env and "BrokerUrl" not in stack.outputs  # Broker=false
    assert env["JITR_AWS_TABLE"] == stack.outputs["TableName"]
    assert env["JITR_AWS_JOBS_QUEUE_URL"] == stack.outputs["JobsQueueUrl"]
    assert env["JITR_AWS_LIFECYCLE_DLQ_URL"] == stack.outputs["LifecycleDeadLetterQueueUrl"]
    assert env["JITR_SECRETS_GITHUB_APP_PRIVATE_KEY"] == stack.parameters["AppPrivateKeySecretArn"]
    settings = Settings.from_env({**env, "JITR_AWS_REGION": REGION})
    config = parse(settings)
    assert config.vm.security_group_ids == (stack.outputs["RunnerSecurityGroupId"],)
    assert config.vm.instance_profile == stack.outputs["RunnerInstanceProfileArn"]
    assert dict(config.tags) == {"test-run": stack.prefix, "jitr:deployment": stack.prefix}
    assert config.metrics_namespace == stack.prefix  # stacks sharing an account keep their metrics apart
    (pool,) = settings.pools
    assert pool.name == "linux-cfn"
    assert set(pool.labels) == {"self-hosted", "linux", "x64"}
    assert tuple(pool.machine_types) == ("m5.large", "m5a.large")
    assert tuple(pool.placements) == stack.subnets
    assert pool.image == stack.parameters["ImageId"]
    assert pool.handoff == "metadata" and json.loads(env["JITR_POOLS"])[0]["handoff"] == "metadata"


def test_queues_feed_their_functions_and_redrive_to_their_dlqs(
    stack: Stack, functions: dict[str, DeployedFunction]
) -> None:
    sqs, lam = stack.client("sqs"), stack.client("lambda")
    for kind, queue in (("scaleup", "Jobs"), ("lifecycle", "Lifecycle")):
        attributes = sqs.get_queue_attributes(QueueUrl=stack.outputs[f"{queue}QueueUrl"], AttributeNames=["All"])[
            "Attributes"
        ]
        dlq = sqs.get_queue_attributes(
            QueueUrl=stack.outputs[f"{queue}DeadLetterQueueUrl"], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == dlq
        assert int(redrive["maxReceiveCount"]) == 5
        assert int(attributes["VisibilityTimeout"]) >= 6 * functions[kind].timeout_s
        (mapping,) = lam.list_event_source_mappings(FunctionName=functions[kind].name)["EventSourceMappings"]
        assert mapping["EventSourceArn"] == attributes["QueueArn"]
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BatchSize"] == 10


def test_schedules_invoke_the_periodic_functions_once(stack: Stack, functions: dict[str, DeployedFunction]) -> None:
    events, lam = stack.client("events"), stack.client("lambda")
    for kind, rate in (("scaledown", "rate(5 minutes)"), ("rebalancer", "rate(1 minute)")):
        rule = events.describe_rule(Name=f"{stack.prefix}-{kind}")
        assert rule["ScheduleExpression"] == rate
        (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        arn = lam.get_function_configuration(FunctionName=functions[kind].name)["FunctionArn"]
        assert target["Arn"] == arn
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60}
        (grant,) = json.loads(lam.get_policy(FunctionName=functions[kind].name)["Policy"])["Statement"]
        assert grant["Principal"] == {"Service": "events.amazonaws.com"}
        assert grant["Condition"]["ArnLike"]["AWS:SourceArn"] == rule["Arn"]


def test_spot_interruption_warnings_reach_the_lifecycle_queue(stack: Stack) -> None:
    events, sqs = stack.client("events"), stack.client("sqs")
    rule = events.describe_rule(Name=f"{stack.prefix}-spot-interruption")
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
    }
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=stack.outputs["LifecycleQueueUrl"], AttributeNames=["QueueArn"])
    assert target["Arn"] == queue_arn["Attributes"]["QueueArn"]
    # moto lacks AWS::SQS::QueuePolicy: the template's statement is checked as written
    policy = load_template()["Resources"]["LifecycleQueuePolicy"]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["SpotInterruptionRule", "Arn"]}}}


def test_table_is_jitrs_table_definition(stack: Stack) -> None:
    name = stack.outputs["TableName"]
    wanted = table_definition(name)
    table = stack.client("dynamodb").describe_table(TableName=name)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == wanted["BillingMode"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(wanted["AttributeDefinitions"], key=str)
    assert table["KeySchema"] == wanted["KeySchema"]
    indexes = [
        {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
        for index in table["GlobalSecondaryIndexes"]
    ]
    assert indexes == wanted["GlobalSecondaryIndexes"]
    # moto's CloudFormation sets neither TTL nor point-in-time recovery: read them from the template.
    properties = load_template()["Resources"]["StateTable"]["Properties"]
    assert properties["TimeToLiveSpecification"] == ttl_specification()
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert {k: v for k, v in properties.items() if k in wanted and k != "TableName"} == {
        k: v for k, v in wanted.items() if k != "TableName"
    }


def test_runner_security_group_has_no_ingress_and_only_web_and_dns_egress(stack: Stack) -> None:
    group_id = stack.outputs["RunnerSecurityGroupId"]
    (group,) = stack.client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    assert group["VpcId"] == stack.vpc
    assert group["IpPermissions"] == []
    # moto's CloudFormation ignores SecurityGroupEgress: the rules are read from the template.
    egress = load_template()["Resources"]["RunnerSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert {(r["IpProtocol"], r["FromPort"], r["ToPort"], r["CidrIp"]) for r in egress} == {
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("tcp", 80, 80, "0.0.0.0/0"),
        ("udp", 53, 53, "0.0.0.0/0"),
        ("tcp", 53, 53, "0.0.0.0/0"),
    }
    assert "SecurityGroupIngress" not in load_template()["Resources"]["RunnerSecurityGroup"]["Properties"]


# -- IAM -----------------------------------------------------------------------------------------


def _statements_for(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    def actions(statement: Mapping[str, Any]) -> list[str]:
        found = statement["Action"]
        return [found] if isinstance(found, str) else list(found)

    return [s for s in statements if action in actions(s)]


def _resources(statement: Mapping[str, Any]) -> list[str]:
    found = statement["Resource"]
    return [found] if isinstance(found, str) else list(found)


def test_roles_scope_ec2_to_jitrs_tags_and_pass_only_the_runner_role(
    stack: Stack, functions: dict[str, DeployedFunction]
) -> None:
    own_request = {"aws:RequestTag/managed-by": "jitr", "aws:RequestTag/jitr:deployment": stack.prefix}
    own_resource = {"ec2:ResourceTag/managed-by": "jitr", "ec2:ResourceTag/jitr:deployment": stack.prefix}
    iam = stack.client("iam")
    account = stack.client("sts").get_caller_identity()["Account"]
    for kind, function in functions.items():
        trust = iam.get_role(RoleName=function.role_name)["Role"]["AssumeRolePolicyDocument"]
        (assume,) = (json.loads(trust) if isinstance(trust, str) else trust)["Statement"]
        assert assume["Principal"] == {"Service": "lambda.amazonaws.com"}
        assert assume["Condition"] == {"StringEquals": {"aws:SourceAccount": account}}
        statements = stack_role_statements(iam, function.role_name)
        for statement in statements:
            assert statement["Effect"] == "Allow"
            if "*" in _resources(statement):
                actions = statement["Action"]
                assert set([actions] if isinstance(actions, str) else actions) <= {
                    "ec2:DescribeInstances",
                    "ec2:DescribeImages",
                }, f"{kind}: {statement} allows more than describing on every resource"
        for statement in _statements_for(statements, "ec2:RunInstances"):
            scoped = [r for r in _resources(statement) if ":instance/" in r or ":volume/" in r]
            if scoped:
                assert scoped == _resources(statement), f"{kind}: mixed RunInstances resources in {statement}"
                assert statement["Condition"] == {"StringEquals": own_request}
        for statement in _statements_for(statements, "ec2:CreateTags"):
            assert statement["Condition"] == {"StringEquals": {"ec2:CreateAction": "RunInstances", **own_request}}
        for statement in _statements_for(statements, "ec2:TerminateInstances"):
            assert statement["Condition"] == {"StringEquals": own_resource}
        for statement in _statements_for(statements, "iam:PassRole"):
            assert _resources(statement) == [stack.outputs["RunnerRoleArn"]]
            assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
        secrets = [r for s in _statements_for(statements, "secretsmanager:GetSecretValue") for r in _resources(s)]
        webhook, key = (stack.parameters[p].split("#")[0] for p in ("WebhookSecretArn", "AppPrivateKeySecretArn"))
        assert secrets == ([webhook] if kind == "webhook" else [key]), f"{kind} reads {secrets}"


def test_each_role_sends_only_to_the_queues_its_code_paths_use(
    stack: Stack, functions: dict[str, DeployedFunction]
) -> None:
    """SendMessage is one action for every queue: the flow's calls cannot tell the queues apart,
    so each role's queues are checked against where its function sends (the broker's in the
    broker stack's role test): requeueing and nudging to ``jobs``, poison and dead-lettered jobs
    to the dead-letter queues, and scaledown's replay of a lost webhook to ``lifecycle``."""
    sqs = stack.client("sqs")
    outputs = {
        "jobs": "JobsQueueUrl", "lifecycle": "LifecycleQueueUrl",
        "jobs-dlq": "JobsDeadLetterQueueUrl", "lifecycle-dlq": "LifecycleDeadLetterQueueUrl",
    }  # fmt: skip
    name_of = {
        sqs.get_queue_attributes(QueueUrl=stack.outputs[o], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]: q
        for q, o in outputs.items()
    }
    expected = {
        "webhook": {"jobs", "lifecycle"},
        "scaleup": {"jobs", "jobs-dlq"},
        "lifecycle": {"jobs", "lifecycle", "lifecycle-dlq"},
        "scaledown": {"jobs", "lifecycle", "jobs-dlq"},
        "rebalancer": {"jobs"},
    }
    iam = stack.client("iam")
    for kind, function in functions.items():
        statements = _statements_for(stack_role_statements(iam, function.role_name), "sqs:SendMessage")
        assert {name_of[r] for s in statements for r in _resources(s)} == expected[kind], kind


def test_roles_in_moto_hold_the_templates_statements(stack: Stack) -> None:
    """What moto created is the template's policy (resources aside, which name physical ids)."""
    resolver = _resolver(stack.parameters)
    iam = stack.client("iam")

    def shape(statements: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return sorted(
            (s["Sid"], json.dumps(s["Action"]), json.dumps(s.get("Condition"), sort_keys=True)) for s in statements
        )

    for logical in [*(f"{name}Role" for name in LOGICAL.values()), "RunnerRole"]:
        role = stack.physical[logical]
        assert shape(stack_role_statements(iam, role)) == shape(template_statements(resolver, logical)), logical


def test_rules_refuse_a_stack_without_an_image_or_an_app_key() -> None:
    rules = load_template()["Rules"]

    def holds(rule: str, parameters: dict[str, str]) -> bool:
        resolver = _resolver(parameters)
        return all(resolver.resolve(a["Assert"]) for a in rules[rule]["Assertions"])

    assert not holds("PoolsOrImage", {})
    assert holds("PoolsOrImage", {"ImageId": "ami-0123456789abcdef0"})
    assert holds("PoolsOrImage", {"Pools": "[]"})
    assert not holds("AppPrivateKey", {})
    assert holds("AppPrivateKey", {"AppPrivateKeyValue": "pem"})
    assert holds("AppPrivateKey", {"AppPrivateKeySecretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:k-AbCdEf"})


def test_runner_role_may_only_terminate_its_own_instance_and_ship_logs(stack: Stack) -> None:
    role = stack.outputs["RunnerRoleArn"].rsplit("/", 1)[-1]
    statements = stack_role_statements(stack.client("iam"), role)
    assert allowed_actions(statements) == {
        "ec2:TerminateInstances",
        "ec2:CreateTags",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogGroups",
        "logs:DescribeLogStreams",
    }
    (terminate,) = _statements_for(statements, "ec2:TerminateInstances")
    assert terminate["Condition"]["StringEquals"] == {
        "ec2:ResourceTag/managed-by": "jitr",
        "ec2:ResourceTag/jitr:deployment": stack.prefix,
        "aws:ARN": "${ec2:SourceInstanceARN}",
    }
    (tag,) = _statements_for(statements, "ec2:CreateTags")
    assert tag["Condition"]["StringEquals"]["aws:ARN"] == "${ec2:SourceInstanceARN}"
    assert tag["Condition"]["ForAllValues:StringEquals"] == {"aws:TagKeys": ["jitr-runner-exit"]}
    for statement in _statements_for(statements, "logs:PutLogEvents"):
        assert all(r.endswith(":log-group:/jitr/*") for r in _resources(statement))
    (group,) = stack.client("logs").describe_log_groups(logGroupNamePrefix="/jitr/")["logGroups"]
    assert (group["logGroupName"], group["retentionInDays"]) == ("/jitr/linux-cfn", 30)
    trust = stack.client("iam").get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    # Log shipping off: the role has nothing but self-termination and the exit report.
    off = _resolver({**stack.parameters, "RunnerLogShipping": "false"})
    assert {s["Sid"] for s in template_statements(off, "RunnerRole")} == {"TerminateSelf", "TagSelfWithExitReport"}


def test_each_role_allows_exactly_what_its_function_calls(
    stack: Stack, functions: dict[str, DeployedFunction], sim: GitHubSimulator
) -> None:
    lam = stack.client("lambda")
    # moto would invoke a mapped function itself (in Docker) when a message arrives: the test
    # plays the event source mapping, so the stack's mappings are paused first.
    for kind in ("scaleup", "lifecycle"):
        for mapping in lam.list_event_source_mappings(FunctionName=functions[kind].name)["EventSourceMappings"]:
            lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    # Each Lambda function is a process of its own, with its own secret cache; here every handler
    # shares this one, so the cache is emptied where a function would start cold.
    jitr_aws.secrets._cache.clear()
    result = run_flow(stack.endpoint, functions, sim, webhook_secret=WEBHOOK_SECRET, region=REGION)
    for kind, calls in _cold_passes(stack, functions).items():
        result.calls.setdefault(kind, set()).update(calls)
    assert result.instance_tags["test-run"] == result.instance_tags["jitr:deployment"] == stack.prefix
    instance = stack.client("ec2").describe_instances(InstanceIds=[result.instance_id])["Reservations"][0]["Instances"][
        0
    ]
    (interface,) = instance["NetworkInterfaces"]
    assert [g["GroupId"] for g in interface["Groups"]] == [stack.outputs["RunnerSecurityGroupId"]]
    assert instance["IamInstanceProfile"]["Arn"] == stack.outputs["RunnerInstanceProfileArn"]
    assert instance["SubnetId"] in stack.subnets

    iam = stack.client("iam")
    allowed = {kind: allowed_actions(stack_role_statements(iam, f.role_name)) for kind, f in functions.items()}
    for kind, why in REASONS.items():
        stale = set(why) - allowed[kind]
        assert not stale, f"{kind}: reasons for actions its role does not allow: {sorted(stale)}"
    assert_covered(result.calls, allowed, REASONS)


def _cold_passes(stack: Stack, functions: dict[str, DeployedFunction]) -> dict[str, set[str]]:
    """One more scheduled pass of each periodic function from an empty secret cache, as a new
    container runs it (in the flow they found the App's key cached by scaleup)."""
    recorder = ActionRecorder()
    invoke = Invoker(stack.endpoint, REGION, recorder)
    scheduled = json.loads((Path(__file__).parent / "fixtures" / "example-eventbridge-schedule.json").read_text())
    with recorder.installed():
        for kind in ("scaledown", "rebalancer"):
            jitr_aws.secrets._cache.clear()
            invoke(functions[kind], {**scheduled, "id": str(uuid.uuid4())})
    return recorder.calls


# -- what moto does not create: read from the template -------------------------------------------


def test_webhook_url_is_public_and_the_hmac_authenticates() -> None:
    resolver = _resolver({"ImageId": "ami-0"})  # SnapStart off (the default): the function itself
    resources = load_template()["Resources"]
    url = resolver.resolve(resources["WebhookUrl"]["Properties"])
    assert url == {"TargetFunctionArn": "<WebhookFunction.Arn>", "AuthType": "NONE"}
    grants = [resolver.resolve(r["Properties"]) for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    on_webhook = [g for g in grants if g["FunctionName"] == "<WebhookFunction>"]
    assert {(g["Action"], g.get("FunctionUrlAuthType"), g.get("InvokedViaFunctionUrl")) for g in on_webhook} == {
        ("lambda:InvokeFunctionUrl", "NONE", None),
        ("lambda:InvokeFunction", None, True),
    }
    outputs = load_template()["Outputs"]
    assert outputs["WebhookUrl"]["Value"] == {"Fn::GetAtt": ["WebhookUrl", "FunctionUrl"]}


def test_periodic_functions_are_never_retried_by_lambda() -> None:
    resolver = _resolver({"ImageId": "ami-0"})  # SnapStart off: $LATEST is what EventBridge invokes
    resources = load_template()["Resources"]
    configs = {
        r["Properties"]["FunctionName"]["Ref"]: resolver.resolve(r["Properties"])
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
    }
    assert set(configs) == {"ScaledownFunction", "RebalancerFunction"}
    assert all(c["MaximumRetryAttempts"] == 0 and c["Qualifier"] == "$LATEST" for c in configs.values())


# -- SnapStart: read from the template (moto has no aliases) -------------------------------------

SNAPSTART_FUNCTIONS = [*LOGICAL.values(), "Broker"]


def _snapstart_resolver(on: bool) -> Resolver:
    """The template's values with SnapStart on or off (and the broker), each alias's ARN as Lambda makes it."""
    physical: dict[str, dict[str, str]] = {
        name: {"Ref": f"<{name}>", "Arn": f"<{name}.Arn>"} for name in load_template()["Resources"]
    }
    for name in SNAPSTART_FUNCTIONS:
        alias_arn = f"arn:aws:lambda:{REGION}:123456789012:function:jitr-{name.lower()}:live"
        physical[f"{name}Alias"] = {"Ref": alias_arn, "AliasArn": alias_arn}
        physical[f"{name}Version"] = {"Ref": f"<{name}Version>", "Version": "7"}
    pseudo = {"AWS::Region": REGION, "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    parameters = {"ImageId": "ami-0", "Broker": "true", "SnapStart": "true" if on else "false"}
    return Resolver(load_template(), parameters, physical, pseudo)


def _invoked(resolver: Resolver, name: str, on: bool) -> str:
    """What a trigger of function ``name`` must name: its alias's ARN with SnapStart, the function without."""
    return resolver.ref(f"{name}Alias") if on else resolver.ref(f"{name}Function")


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_snapstart_publishes_a_version_and_an_alias_of_every_function(on: bool) -> None:
    resolver = _snapstart_resolver(on)
    resources = load_template()["Resources"]

    for name in SNAPSTART_FUNCTIONS:
        function = resolver.resolve(resources[f"{name}Function"]["Properties"])
        version, alias = resources[f"{name}Version"], resources[f"{name}Alias"]
        assert resolver.condition(version["Condition"]) is on and resolver.condition(alias["Condition"]) is on, name
        if not on:
            assert "SnapStart" not in function, name
            continue
        assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}, name
        assert resolver.resolve(version["Properties"])["FunctionName"] == f"<{name}Function>"
        assert version["UpdateReplacePolicy"] == "Retain", "the alias moves off a version before it is replaced"
        assert resolver.resolve(alias["Properties"]) == {
            "FunctionName": f"<{name}Function>",
            "FunctionVersion": "7",
            "Name": "live",
        }


def test_snapstart_publishes_again_when_the_bundle_or_the_revision_changes() -> None:
    resources = load_template()["Resources"]
    for name in SNAPSTART_FUNCTIONS:
        descriptions = {
            _resolver({"ImageId": "ami-0", "SnapStart": "true", **given}).resolve(
                resources[f"{name}Version"]["Properties"]["Description"]
            )
            for given in ({}, {"BundleKey": "jitr-2.zip"}, {"BundleObjectVersion": "v2"}, {"SnapStartRevision": "2"})
        }
        assert len(descriptions) == 4, name  # a changed description replaces the version: a new one is published
        assert all(len(d) <= 256 for d in descriptions)


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_with_snapstart_every_trigger_and_permission_names_the_alias(on: bool) -> None:
    resolver = _snapstart_resolver(on)
    resources = load_template()["Resources"]

    def properties(name: str) -> dict[str, Any]:
        resolved: dict[str, Any] = resolver.resolve(resources[name]["Properties"])
        return resolved

    url = properties("WebhookUrl")
    assert url.get("Qualifier") == ("live" if on else None)
    assert url["TargetFunctionArn"] == "<WebhookFunction.Arn>"
    for permission in ("WebhookUrlPermission", "WebhookUrlInvokePermission"):
        assert properties(permission)["FunctionName"] == _invoked(resolver, "Webhook", on)
    assert properties("JobsEventSource")["FunctionName"] == _invoked(resolver, "Scaleup", on)
    assert properties("LifecycleEventSource")["FunctionName"] == _invoked(resolver, "Lifecycle", on)
    for name in ("Scaledown", "Rebalancer"):
        [target] = properties(f"{name}Rule")["Targets"]
        assert target["Arn"] == (resolver.ref(f"{name}Alias") if on else f"<{name}Function.Arn>")
        assert properties(f"{name}RulePermission")["FunctionName"] == _invoked(resolver, name, on)
        invoke_config = properties(f"{name}InvokeConfig")
        assert (invoke_config["Qualifier"], invoke_config["MaximumRetryAttempts"]) == ("live" if on else "$LATEST", 0)
    broker = resolver.ref("BrokerAlias") if on else "<BrokerFunction.Arn>"
    assert properties("BrokerIntegration")["IntegrationUri"].endswith(f"/functions/{broker}/invocations")
    assert properties("BrokerApiPermission")["FunctionName"] == _invoked(resolver, "Broker", on)


def test_alarms_watch_every_dead_letter_queue_and_function() -> None:
    resources = load_template()["Resources"]
    watched = set()
    for resource in resources.values():
        if resource["Type"] != "AWS::CloudWatch::Alarm" or resource["Properties"]["Namespace"] == {"Ref": "NamePrefix"}:
            continue
        properties = resource["Properties"]
        (dimension,) = properties["Dimensions"]
        value = dimension["Value"]
        watched.add(value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0])
        assert properties["Threshold"] == 0 and properties["ComparisonOperator"] == "GreaterThanThreshold"
    assert watched == {f"{name}Function" for name in LOGICAL.values()} | {
        "BrokerFunction",  # with Broker=true
        "JobsDeadLetterQueue",
        "LifecycleDeadLetterQueue",
    }


def test_an_alarm_watches_runners_exiting_without_a_job_over_every_pool() -> None:
    resources = load_template()["Resources"]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    [alarm] = [a for a in alarms if a["Namespace"] == {"Ref": "NamePrefix"}]
    assert alarm["MetricName"] == "runner_no_job_exits" and "Dimensions" not in alarm  # the total jitr publishes
    assert alarm["Threshold"] == {"Ref": "NoJobExitThreshold"}


def test_the_dashboard_is_created(stack: Stack) -> None:
    cloudwatch = stack.client("cloudwatch")
    body = json.loads(cloudwatch.get_dashboard(DashboardName=stack.prefix)["DashboardBody"])
    assert {w["properties"]["region"] for w in body["widgets"]} == {REGION}


def test_secrets_given_as_values_are_created_and_read_by_the_right_roles() -> None:
    given = {"WebhookSecretValue": "not-a-real-secret", "AppPrivateKeyValue": "not-a-real-key", "ImageId": "ami-0"}
    resolver = _resolver(given)
    assert resolver.condition("CreateWebhookSecret") and resolver.condition("CreateAppPrivateKey")
    assert not resolver.condition("GenerateWebhookSecret")
    resources = load_template()["Resources"]
    webhook_secret = resolver.resolve(resources["WebhookSecret"]["Properties"])
    assert webhook_secret["SecretString"] == "not-a-real-secret" and "GenerateSecretString" not in webhook_secret
    for kind, logical in LOGICAL.items():
        statements = template_statements(resolver, f"{logical}Role")
        (read,) = _statements_for(statements, "secretsmanager:GetSecretValue")
        assert read["Resource"] == ("<WebhookSecret>" if kind == "webhook" else "<AppPrivateKey>")
        env = resolver.resolve(resources[f"{logical}Function"]["Properties"]["Environment"])["Variables"]
        assert env["JITR_SECRETS_WEBHOOK_SECRET"] == "<WebhookSecret>"
        assert env["JITR_SECRETS_GITHUB_APP_PRIVATE_KEY"] == "<AppPrivateKey>"
    generated = _resolver({"AppPrivateKeyValue": "not-a-real-key", "ImageId": "ami-0"})
    properties = generated.resolve(resources["WebhookSecret"]["Properties"])
    assert "SecretString" not in properties and properties["GenerateSecretString"]["PasswordLength"] >= 32


@pytest.mark.parametrize(
    ("parameters", "placements", "handoff"),
    [
        ({"ImageId": "ami-0123456789abcdef0"}, (), "broker"),
        (
            {"ImageId": "ami-0123456789abcdef0", "Subnets": "subnet-0aaaaaaaaaaaaaaaa"},
            ("subnet-0aaaaaaaaaaaaaaaa",),
            "broker",
        ),
        ({"ImageId": "ami-0123456789abcdef0", "Broker": "false"}, (), "metadata"),
    ],
)
def test_the_single_pool_renders_as_jitr_pools(
    parameters: dict[str, str], placements: tuple[str, ...], handoff: str
) -> None:
    """The single pool's handoff is written out: the broker's by default, metadata with ``Broker=false``."""
    resolver = _resolver(parameters)
    resources = load_template()["Resources"]
    for logical in [*LOGICAL.values(), *(["Broker"] if handoff == "broker" else [])]:
        env = resolver.resolve(resources[f"{logical}Function"]["Properties"]["Environment"])["Variables"]
        assert json.loads(env["JITR_POOLS"])[0]["handoff"] == handoff, logical
        assert ("JITR_BROKER_URL" in env) == (handoff == "broker"), logical
    broker_url = {"JITR_BROKER_URL": "https://brk1234567.execute-api.eu-west-1.amazonaws.com/broker"}
    (pool,) = Settings.from_env({"JITR_POOLS": env["JITR_POOLS"], **(broker_url if handoff == "broker" else {})}).pools
    assert (pool.name, tuple(pool.placements), pool.image) == ("linux-x64", placements, parameters["ImageId"])
    assert tuple(pool.machine_types) == ("m7i.large", "m6i.large", "m5.large")
    assert pool.handoff == handoff


def test_pools_json_is_passed_through_as_given() -> None:
    pools = json.dumps(
        [
            {"name": "a", "labels": ["self-hosted", "a"], "machine_types": ["t3.large"], "image": "ami-1"},
            {"name": "b", "labels": ["self-hosted", "b"], "machine_types": ["c7g.large"], "image": "ami-2",
             "options": {"log_shipping": False}},
        ]
    )  # fmt: skip
    resolver = _resolver({"Pools": pools})
    env = resolver.resolve(load_template()["Resources"]["WebhookFunction"]["Properties"]["Environment"])["Variables"]
    assert env["JITR_POOLS"] == pools
    assert [p.name for p in Settings.from_env({"JITR_POOLS": env["JITR_POOLS"]}).pools] == ["a", "b"]


# -- the broker (Broker=true) --------------------------------------------------------------------


def _terraform_broker() -> tuple[tuple[int, int], set[str]]:
    """The broker's (timeout, memory) and store actions as infra/aws/terraform gives them (main.tf,
    iam.tf) to a deployment with warm pools: the stack cannot tell whether Pools has any."""
    terraform = ROOT / "infra" / "aws" / "terraform"
    sizes = re.search(r"broker = \{ timeout_s = (\d+), memory_mb = (\d+) \}", (terraform / "main.tf").read_text())
    assert sizes is not None, "main.tf no longer sizes the broker as this test reads it"
    (store,) = re.findall(r"^\s*broker\s*=\s*(.*\"dynamodb:.*)$", (terraform / "iam.tf").read_text(), re.M)
    return (int(sizes.group(1)), int(sizes.group(2))), set(re.findall(r'"(dynamodb:[^"]+)"', store))


def test_the_broker_stack_creates_the_broker_and_names_its_url_in_every_function(
    broker_stack: Stack, broker_functions: dict[str, DeployedFunction]
) -> None:
    assert set(broker_stack.physical) == set(broker_stack.variant["Resources"])
    assert {"BrokerFunction", "BrokerRole", "BrokerLogGroup", "BrokerApiLogGroup", "BrokerApiPermission"} <= set(
        broker_stack.physical
    )
    (timeout, memory), _ = _terraform_broker()
    broker = broker_functions["broker"]
    assert broker.name == broker_stack.outputs["BrokerFunctionName"] == f"{broker_stack.prefix}-broker"
    assert (broker.handler, broker.timeout_s, broker.memory_mb) == ("jitr_functions.aws.broker", timeout, memory)
    assert broker.runtime == "python3.13"
    assert broker.role_arn == broker_stack.outputs["BrokerRoleArn"]
    assert len({f.role_arn for f in broker_functions.values()}) == 6, "each function has a role of its own"

    environments = [dict(f.environment) for f in broker_functions.values()]
    assert all(env == environments[0] for env in environments), "the functions' settings differ"
    env = environments[0]
    assert env["JITR_BROKER_URL"] == broker_stack.outputs["BrokerUrl"] == BROKER_URL
    settings = Settings.from_env({**env, "JITR_AWS_REGION": REGION})
    parse(settings)
    (pool,) = settings.pools
    assert (pool.name, pool.handoff, settings.broker_url) == ("linux-brk", "broker", BROKER_URL)
    assert pool.warm == 1 and env["JITR_POOLS"] == broker_stack.parameters["Pools"]  # passed through as given

    groups = broker_stack.client("logs").describe_log_groups(logGroupNamePrefix="/aws/")["logGroups"]
    retention = {g["logGroupName"]: g.get("retentionInDays") for g in groups}
    for name in (f"/aws/lambda/{broker_stack.prefix}-broker", f"/aws/apigateway/{broker_stack.prefix}-broker"):
        assert retention[name] == 30, name

    # The HTTP API (a stand-in in moto) may invoke the broker on POST /broker only.
    account = broker_stack.client("sts").get_caller_identity()["Account"]
    policy = broker_stack.client("lambda").get_policy(FunctionName=broker.name)["Policy"]
    (grant,) = json.loads(policy)["Statement"]
    assert grant["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert grant["Action"] == "lambda:InvokeFunction"
    source = f"arn:aws:execute-api:{REGION}:{account}:{BROKER_API['BrokerApi']['Ref']}/*/*/broker"
    assert grant["Condition"]["ArnLike"]["AWS:SourceArn"] == source


def test_the_broker_role_is_the_one_terraform_gives_it(
    broker_stack: Stack, broker_functions: dict[str, DeployedFunction]
) -> None:
    iam = broker_stack.client("iam")
    role = broker_functions["broker"].role_name
    statements = stack_role_statements(iam, role)
    _, store_actions = _terraform_broker()
    assert allowed_actions(statements) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
        *store_actions,
        "sqs:SendMessage",
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
    }
    table = broker_stack.client("dynamodb").describe_table(TableName=broker_stack.outputs["TableName"])["Table"]
    for action in store_actions:
        (statement,) = _statements_for(statements, action)
        assert _resources(statement) == [table["TableArn"], f"{table['TableArn']}/index/by_state"], action
    (send,) = _statements_for(statements, "sqs:SendMessage")
    sqs = broker_stack.client("sqs")
    queues = [broker_stack.outputs["JobsQueueUrl"], broker_stack.outputs["JobsDeadLetterQueueUrl"]]
    arns = [sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"] for q in queues]
    assert _resources(send) == arns, "the broker sends on a job waiting for a cap, and dead-letters"
    (terminate,) = _statements_for(statements, "ec2:TerminateInstances")
    assert terminate["Condition"] == {
        "StringEquals": {"ec2:ResourceTag/managed-by": "jitr", "ec2:ResourceTag/jitr:deployment": broker_stack.prefix}
    }
    (read,) = _statements_for(statements, "secretsmanager:GetSecretValue")
    assert _resources(read) == [broker_stack.parameters["AppPrivateKeySecretArn"].split("#")[0]]
    (logs,) = _statements_for(statements, "logs:PutLogEvents")
    assert all(f"log-group:/aws/lambda/{broker_stack.prefix}-broker" in r for r in _resources(logs))
    account = broker_stack.client("sts").get_caller_identity()["Account"]
    trust = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    (assume,) = (json.loads(trust) if isinstance(trust, str) else trust)["Statement"]
    assert assume["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert assume["Condition"] == {"StringEquals": {"aws:SourceAccount": account}}

    def shape(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((s["Sid"], json.dumps(s["Action"])) for s in found)

    assert shape(statements) == shape(template_statements(_resolver(broker_stack.parameters), "BrokerRole"))


def test_the_broker_role_allows_exactly_what_the_broker_calls(
    broker_stack: Stack, broker_functions: dict[str, DeployedFunction], broker_sim: GitHubSimulator, tmp_path: Path
) -> None:
    """A job of the broker-mode pool through the stack's functions, its VM pulling the config from
    the broker; then the pool's warm VM: scaledown fills the pool, a job takes the VM through the
    broker, and the broker retires a runner GitHub will not serve (``aws_flow.run_warm_pool``)."""
    lam = broker_stack.client("lambda")
    for kind in ("scaleup", "lifecycle"):
        for mapping in lam.list_event_source_mappings(FunctionName=broker_functions[kind].name)["EventSourceMappings"]:
            lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    # AWS signs instance identity documents with its key for the region; a test key plays it here,
    # its certificate added to the broker's trusted ones (the one setting the stack does not give).
    signer = IdentitySigner(broker_stack.client("sts").get_caller_identity()["Account"], REGION)
    broker = broker_functions["broker"]
    functions = {**broker_functions, "broker": signer.trust(broker, tmp_path)}
    jitr_aws.secrets._cache.clear()
    result = run_broker_handoff(
        broker_stack.endpoint,
        functions,
        broker_sim,
        webhook_secret=WEBHOOK_SECRET,
        region=REGION,
        prove=signer.prove,
    )
    # The stack has no setting for the broker's hold of a warm VM's call, which the flow waits out.
    trusted = functions["broker"]
    functions["broker"] = replace(trusted, environment={**trusted.environment, "JITR_WARM_HOLD_S": "1"})
    warm = run_warm_pool(
        broker_stack.endpoint, functions, broker_sim, webhook_secret=WEBHOOK_SECRET, region=REGION, prove=signer.prove
    )
    assert warm.reports["scaledown"].get("warm-launched") == 1, "scaledown's pass fills the warm pool"
    calls = {kind: set(result.calls.get(kind, set())) | warm.calls.get(kind, set()) for kind in functions}
    called = calls["broker"]
    # The accepted account is the deployment's own, from STS: GetCallerIdentity needs no permission.
    assert "sts:GetCallerIdentity" in called
    called.discard("sts:GetCallerIdentity")
    iam = broker_stack.client("iam")
    allowed = {kind: allowed_actions(stack_role_statements(iam, f.role_name)) for kind, f in functions.items()}
    reasons = {
        "logs:CreateLogStream": _LOGS,
        "logs:PutLogEvents": _LOGS,
        "ec2:DescribeInstances": "after a refused TerminateInstances, to tell whether the VM is already gone",
    }
    # Every call is allowed; the broker's role allows nothing else (the other functions' whole
    # coverage is the first stack's, whose flow takes their other paths).
    denied = [f"{kind}: {a}" for kind, c in calls.items() for a in c if a not in allowed[kind]]
    assert not denied, f"calls the roles do not allow: {sorted(denied)}"
    assert_covered({"broker": called}, {"broker": allowed["broker"]}, {"broker": reasons})


def test_the_broker_api_is_post_broker_to_the_broker_function() -> None:
    """moto lacks AWS::ApiGatewayV2::*: the HTTP API is read from the template, intrinsics resolved."""
    resources = load_template()["Resources"]
    on = _resolver({"Broker": "true", "Pools": "[]"})
    assert on.condition("Broker") and _resolver({"ImageId": "ami-0"}).condition("Broker")  # the default
    assert not _resolver({"ImageId": "ami-0", "Broker": "false"}).condition("Broker")
    assert {r["Type"] for r in resources.values() if r.get("Condition") == "Broker"} == {
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
        "AWS::Lambda::Function",
        "AWS::Lambda::Permission",
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Integration",
        "AWS::ApiGatewayV2::Route",
        "AWS::ApiGatewayV2::Stage",
        "AWS::CloudWatch::Alarm",
    }
    api = on.resolve(resources["BrokerApi"]["Properties"])
    assert (api["ProtocolType"], api["Name"]) == ("HTTP", "jitr-broker")
    integration = on.resolve(resources["BrokerIntegration"]["Properties"])
    assert (integration["ApiId"], integration["IntegrationType"]) == ("<BrokerApi>", "AWS_PROXY")
    assert (integration["PayloadFormatVersion"], integration["TimeoutInMillis"]) == ("2.0", 29000)
    assert integration["IntegrationUri"] == (
        f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/<BrokerFunction.Arn>/invocations"
    )
    route = on.resolve(resources["BrokerRoute"]["Properties"])
    assert (route["RouteKey"], route["AuthorizationType"]) == ("POST /broker", "NONE")
    assert route["Target"] == "integrations/<BrokerIntegration>"
    stage = on.resolve(resources["BrokerStage"]["Properties"])
    assert (stage["ApiId"], stage["StageName"], stage["AutoDeploy"]) == ("<BrokerApi>", "$default", True)
    assert stage["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 200, "ThrottlingRateLimit": 100}
    assert stage["AccessLogSettings"]["DestinationArn"] == "<BrokerApiLogGroup.Arn>"
    access = json.loads(stage["AccessLogSettings"]["Format"])  # one JSON line per request, never a body
    assert access["routeKey"] == "$context.routeKey" and not any("body" in v.lower() for v in access.values())
    permission = on.resolve(resources["BrokerApiPermission"]["Properties"])
    assert permission["SourceArn"] == f"arn:aws:execute-api:{REGION}:123456789012:<BrokerApi>/*/*/broker"
    assert on.resolve(load_template()["Outputs"]["BrokerUrl"]["Value"]) == "<BrokerApi.ApiEndpoint>/broker"
    for kind, logical in {**LOGICAL, "broker": "Broker"}.items():
        env = on.resolve(resources[f"{logical}Function"]["Properties"]["Environment"])["Variables"]
        assert env["JITR_BROKER_URL"] == "<BrokerApi.ApiEndpoint>/broker", kind


# -- pools' own instance profiles and images from SSM (AdditionalPassableRoleArns, ImageParameterArns) --

# The functions that launch VMs: scaleup, and scaledown, which fills the pools that keep warm VMs.
LAUNCHERS = ("Scaleup", "Scaledown")
ROLES = (*LOGICAL.values(), "Broker")
PASSED_TO_EC2 = {"iam:PassedToService": "ec2.amazonaws.com"}
POOL_ROLES = "arn:aws:iam::123456789012:role/jitr-gpu-runner,arn:aws:iam::123456789012:role/ci/jitr-arm-runner"
OWN_PARAMETER = "arn:aws:ssm:eu-west-1:123456789012:parameter/jitr/images/linux-x64"
PUBLIC_PARAMETER = (
    "arn:aws:ssm:eu-west-1::parameter/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
)


def _granted_statements(resolver: Resolver, role: str) -> list[dict[str, Any]]:
    """What the template grants a role: its own policies, and each ``AWS::IAM::Policy`` naming it
    that the parameters create (a statement only some parameters call for, such as reading image
    parameters, is a policy of its own with a condition: CloudFormation creates none otherwise)."""
    statements = template_statements(resolver, role)
    for resource in resolver.template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        properties = resolver.resolve(resource["Properties"])
        if resolver.ref(role) in properties.get("Roles", []):
            found = properties["PolicyDocument"]["Statement"]
            statements += found if isinstance(found, list) else [found]
    return statements


def _actions(statement: Mapping[str, Any]) -> list[str]:
    found = statement["Action"]
    return [found] if isinstance(found, str) else list(found)


def _allows(statements: list[dict[str, Any]], action: str, resource: str, context: Mapping[str, str]) -> bool:
    """Whether an Allow statement grants ``action`` on ``resource`` in a request with ``context``
    (IAM's wildcards; ``StringEquals`` and ``StringLike`` conditions, any other fails to match).
    The roles have no Deny statement (``test_roles_scope_ec2_to_jitrs_tags_and_pass_only_the_runner_role``)."""

    def condition_holds(condition: Mapping[str, Mapping[str, Any]]) -> bool:
        for operator, tests in condition.items():
            if operator not in ("StringEquals", "StringLike"):
                return False
            for key, wanted in tests.items():
                values = [wanted] if isinstance(wanted, str) else list(wanted)
                if key not in context:
                    return False
                if operator == "StringEquals" and context[key] not in values:
                    return False
                if operator == "StringLike" and not any(fnmatch.fnmatchcase(context[key], v) for v in values):
                    return False
        return True

    return any(
        statement.get("Effect") == "Allow"
        and any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _actions(statement))
        and any(fnmatch.fnmatchcase(resource, r) for r in _resources(statement))
        and condition_holds(statement.get("Condition", {}))
        for statement in statements
    )


def _parameter_reads(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in statements if any(a.lower().startswith("ssm:") for a in _actions(s))]


def test_the_new_parameters_take_role_and_parameter_arns_only() -> None:
    parameters = load_template()["Parameters"]
    roles, images = parameters["AdditionalPassableRoleArns"], parameters["ImageParameterArns"]
    for spec in (roles, images):
        assert (spec["Type"], spec["Default"]) == ("CommaDelimitedList", "")
        assert re.fullmatch(spec["AllowedPattern"], ""), "the default (empty) must be accepted"
    for arn in [*POOL_ROLES.split(","), "arn:aws-us-gov:iam::123456789012:role/jitr+runner@ci.example"]:
        assert re.fullmatch(roles["AllowedPattern"], arn), arn
    for wrong in ("*", "arn:aws:iam::123456789012:role/*", "arn:aws:iam::123456789012:instance-profile/jitr-gpu"):
        assert not re.fullmatch(roles["AllowedPattern"], wrong), wrong
    for arn in (OWN_PARAMETER, PUBLIC_PARAMETER, "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/jitr-image"):
        assert re.fullmatch(images["AllowedPattern"], arn), arn
    for wrong in ("/jitr/images/linux-x64", "arn:aws:ssm:eu-west-1:123456789012:parameter/*", OWN_PARAMETER + "*"):
        assert not re.fullmatch(images["AllowedPattern"], wrong), wrong


@pytest.mark.parametrize("given", ["", POOL_ROLES], ids=["empty", "given"])
def test_launching_roles_may_pass_the_additional_passable_roles(given: str) -> None:
    """Like the Terraform module's ``additional_passable_role_arns``: the roles of pools' own
    ``instance_profile`` may be passed to EC2 by the functions that launch, besides the runner
    role; with the parameter empty, the runner role only."""
    resolver = _resolver(
        {"ImageId": "ami-0123456789abcdef0", **({"AdditionalPassableRoleArns": given} if given else {})}
    )
    for logical in ROLES:
        passes = _statements_for(_granted_statements(resolver, f"{logical}Role"), "iam:PassRole")
        if logical not in LAUNCHERS:
            assert not passes, logical
            continue
        (statement,) = passes
        assert _resources(statement) == ["<RunnerRole.Arn>", *(given.split(",") if given else [])], logical
        assert statement["Condition"] == {"StringEquals": PASSED_TO_EC2}, logical


@pytest.mark.parametrize(
    ("given", "granted"),
    [
        ({"ImageId": "ami-0123456789abcdef0"}, []),
        ({"Pools": "[]"}, []),
        # The single pool's parameters are not used with Pools: nor is its image read.
        ({"Pools": "[]", "ImageId": "resolve:ssm:/jitr/images/linux-x64"}, []),
        (
            {"Pools": "[]", "ImageParameterArns": f"{OWN_PARAMETER},{PUBLIC_PARAMETER}"},
            [OWN_PARAMETER, PUBLIC_PARAMETER],
        ),
        ({"ImageId": "resolve:ssm:/jitr/images/linux-x64", "RootDeviceName": "/dev/xvda"}, [OWN_PARAMETER]),
        (
            {"ImageId": "resolve:ssm:jitr-linux-x64", "RootDeviceName": "/dev/xvda"},
            ["arn:aws:ssm:eu-west-1:123456789012:parameter/jitr-linux-x64"],
        ),
        # AWS's public parameters are AWS's: their ARNs name no account.
        (
            {"ImageId": "resolve:ssm:" + PUBLIC_PARAMETER.split(":parameter", 1)[1], "RootDeviceName": "/dev/xvda"},
            [PUBLIC_PARAMETER],
        ),
        (
            {
                "ImageId": "resolve:ssm:/jitr/images/linux-x64",
                "RootDeviceName": "/dev/xvda",
                "ImageParameterArns": PUBLIC_PARAMETER,
            },
            [PUBLIC_PARAMETER, OWN_PARAMETER],
        ),
    ],
    ids=["ami", "pools", "pools-ignore-image-id", "arns", "single-pool", "unrooted-name", "public", "both"],
)
def test_launching_roles_may_read_the_image_parameters(given: dict[str, str], granted: list[str]) -> None:
    """EC2 reads a ``resolve:ssm:`` image's parameter with the launching caller's permissions: the
    Terraform module grants ``ssm:GetParameters`` on the pools' parameters; the stack on
    ``ImageParameterArns`` and on the single pool's ``ImageId`` when it is ``resolve:ssm:``;
    nothing when neither is given."""
    resolver = _resolver(given)
    for logical in ROLES:
        reads = _parameter_reads(_granted_statements(resolver, f"{logical}Role"))
        if logical not in LAUNCHERS or not granted:
            assert not reads, logical
            continue
        (statement,) = reads
        assert _actions(statement) == ["ssm:GetParameters"], logical
        assert _resources(statement) == granted, logical
        assert "Condition" not in statement


def test_the_single_pool_may_take_its_image_from_ssm() -> None:
    """``ImageId`` may be ``resolve:ssm:<parameter>``; jitr then needs the root device's name to
    size the disk (it cannot read it from the image), which ``RootDeviceName`` gives the pool."""
    parameters = load_template()["Parameters"]
    for image in ("ami-0123456789abcdef0", "resolve:ssm:/jitr/images/linux-x64", "resolve:ssm:jitr-linux-x64"):
        assert re.fullmatch(parameters["ImageId"]["AllowedPattern"], image), image
    for wrong in ("resolve:ssm:", "resolve:ssm:/jitr/image:3", "resolve:ssm-secure:/jitr/image"):
        assert not re.fullmatch(parameters["ImageId"]["AllowedPattern"], wrong), wrong
    assert re.fullmatch(parameters["RootDeviceName"]["AllowedPattern"], "/dev/sda1")
    assert parameters["RootDeviceName"]["Default"] == ""
    resources = load_template()["Resources"]
    broker_url = {"JITR_BROKER_URL": BROKER_URL, "JITR_AWS_REGION": REGION}
    for given, device in (
        ({"ImageId": "resolve:ssm:/jitr/images/linux-x64", "RootDeviceName": "/dev/sda1"}, "/dev/sda1"),
        ({"ImageId": "ami-0123456789abcdef0"}, None),
    ):
        resolver = _resolver(given)
        for logical in ROLES:
            env = resolver.resolve(resources[f"{logical}Function"]["Properties"]["Environment"])["Variables"]
            (rendered,) = json.loads(env["JITR_POOLS"])
            assert ("options" in rendered) == (device is not None), logical
        settings = Settings.from_env({"JITR_POOLS": env["JITR_POOLS"], **broker_url})
        config = parse(settings)
        (pool,) = settings.pools
        assert pool.image == given["ImageId"]
        shape = vm_shape(pool.options, lambda key: key, config.vm)
        assert shape.root_device_name == device


@pytest.fixture(scope="module")
def launch_sim() -> Iterator[GitHubSimulator]:
    with GitHubSimulator() as simulator:
        yield simulator


@dataclass(frozen=True)
class PoolLaunch:
    """What the pools of ``launch_stack`` launch with: an instance profile of their own (and its
    role), and an image from an SSM parameter (and its ARN)."""

    profile_arn: str
    role_arn: str
    image: str
    parameter_arn: str


@pytest.fixture(scope="module")
def launch_stack(cfn_moto: str, launch_sim: GitHubSimulator) -> tuple[Stack, PoolLaunch]:
    """A third stack whose two pools (in ``Pools``) launch with an instance profile of their own
    and a ``resolve:ssm:`` image: a pool with ``"handoff": "metadata"`` that a job's scaleup
    launches for, and a pool keeping one warm VM that scaledown fills (through the broker, which
    moto gets a stand-in for). ``AdditionalPassableRoleArns`` names the profile's role and
    ``ImageParameterArns`` the parameter."""
    made: list[PoolLaunch] = []

    def pools(prefix: str, subnets: tuple[str, str], image: str) -> dict[str, str]:
        iam, ssm = aws_client("iam", cfn_moto, REGION), aws_client("ssm", cfn_moto, REGION)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role = iam.create_role(RoleName=f"{prefix}-pool", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        profile = iam.create_instance_profile(InstanceProfileName=f"{prefix}-pool")["InstanceProfile"]["Arn"]
        iam.add_role_to_instance_profile(InstanceProfileName=f"{prefix}-pool", RoleName=f"{prefix}-pool")
        name = f"/{prefix}/images/linux-x64"
        ssm.put_parameter(Name=name, Value=image, Type="String", DataType="aws:ec2:image")
        parameter_arn = ssm.get_parameter(Name=name)["Parameter"]["ARN"]
        made.append(PoolLaunch(profile, role, f"resolve:ssm:{name}", parameter_arn))
        options = {"instance_profile": profile, "root_device_name": "/dev/xvda"}
        cold = {
            "name": "linux-ssm", "labels": ["self-hosted", "linux", "x64"], "machine_types": ["m5.large"],
            "placements": list(subnets), "image": f"resolve:ssm:{name}", "handoff": "metadata", "options": options,
        }  # fmt: skip
        warm = {**cold, "name": "warm-ssm", "labels": ["self-hosted", "warm-ssm"], "warm": 1}
        del warm["handoff"]  # the broker's
        return {
            "Pools": json.dumps([cold, warm]),
            "AdditionalPassableRoleArns": role,
            "ImageParameterArns": parameter_arn,
        }

    stack = _create_stack(cfn_moto, launch_sim, broker=True, pools=pools)
    return stack, made[0]


class _Launches:
    """The ``RunInstances`` requests made meanwhile, with the Lambda function (name) that made each."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, params: Mapping[str, Any], **_: Any) -> None:
        self.requests.append((os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""), copy.deepcopy(dict(params))))

    @contextmanager
    def installed(self) -> Iterator[_Launches]:
        entry = ("before-parameter-build.ec2.RunInstances", self)
        botocore.handlers.BUILTIN_HANDLERS.append(entry)
        try:
            yield self
        finally:
            botocore.handlers.BUILTIN_HANDLERS.remove(entry)


def test_pools_launch_with_their_own_role_and_an_image_from_ssm(
    launch_stack: tuple[Stack, PoolLaunch],
    launch_sim: GitHubSimulator,
    stack: Stack,
    functions: dict[str, DeployedFunction],
) -> None:
    """A job of the ``launch_stack``'s metadata pool through its functions (scaleup launches its
    VM), then scaledown's pass filling the warm pool: each ``RunInstances`` names the pools'
    instance profile and ``resolve:ssm:`` image, which EC2 authorises against the caller's role:
    ``iam:PassRole`` on the profile's role (to ``ec2.amazonaws.com``) and ``ssm:GetParameters`` on
    the parameter. Each launching role allows both; the first stack's roles (the parameters
    empty) neither; no other role may pass a role or read a parameter."""
    deployed, pool = launch_stack
    launch_functions = deployed_functions(deployed.endpoint, deployed.prefix, REGION, kinds=(*KINDS, "broker"))
    lam = deployed.client("lambda")
    for kind in ("scaleup", "lifecycle"):
        for mapping in lam.list_event_source_mappings(FunctionName=launch_functions[kind].name)["EventSourceMappings"]:
            lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    jitr_aws.secrets._cache.clear()
    without_broker = {kind: f for kind, f in launch_functions.items() if kind != "broker"}  # metadata handoff
    with _Launches().installed() as launches:
        result = run_flow(deployed.endpoint, without_broker, launch_sim, webhook_secret=WEBHOOK_SECRET, region=REGION)
    assert result.reports["scaledown"].get("warm-launched") == 1, "scaledown's pass fills the warm pool"
    iam = deployed.client("iam")
    allowed = {kind: allowed_actions(stack_role_statements(iam, f.role_name)) for kind, f in launch_functions.items()}
    denied = [f"{kind}: {a}" for kind, c in result.calls.items() for a in c if a not in allowed[kind]]
    assert not denied, f"calls the roles do not allow: {sorted(denied)}"

    kind_of = {f.name: kind for kind, f in launch_functions.items()}
    assert {kind_of[name] for name, _ in launches.requests} == {"scaleup", "scaledown"}
    ssm = deployed.client("ssm")
    for name, request in launches.requests:
        kind = kind_of[name]
        assert request["IamInstanceProfile"] == {"Arn": pool.profile_arn}, kind
        (role,) = iam.get_instance_profile(InstanceProfileName=pool.profile_arn.rsplit("/", 1)[-1])["InstanceProfile"][
            "Roles"
        ]
        assert role["Arn"] == pool.role_arn
        assert request["ImageId"] == pool.image, kind
        parameter = ssm.get_parameter(Name=pool.image.removeprefix("resolve:ssm:"))["Parameter"]["ARN"]
        assert parameter == pool.parameter_arn
        granted = stack_role_statements(iam, launch_functions[kind].role_name)
        assert _allows(granted, "iam:PassRole", role["Arn"], PASSED_TO_EC2), f"{kind} may not pass {role['Arn']}"
        assert not _allows(granted, "iam:PassRole", role["Arn"], {"iam:PassedToService": "lambda.amazonaws.com"})
        assert _allows(granted, "ssm:GetParameters", parameter, {}), f"{kind} may not read {parameter}"
        runner_role = deployed.outputs["RunnerRoleArn"]
        assert _allows(granted, "iam:PassRole", runner_role, PASSED_TO_EC2), (
            f"{kind} may no longer pass the runner role"
        )
        # The first stack, without the parameters: its own runner role only, and no parameter.
        default = stack_role_statements(iam, functions[kind].role_name)
        assert _allows(default, "iam:PassRole", stack.outputs["RunnerRoleArn"], PASSED_TO_EC2), kind
        assert not _allows(default, "iam:PassRole", role["Arn"], PASSED_TO_EC2), kind
        assert not _parameter_reads(default), kind

    for kind, function in launch_functions.items():
        if kind.capitalize() in LAUNCHERS:
            continue
        statements = stack_role_statements(iam, function.role_name)
        assert not _statements_for(statements, "iam:PassRole") and not _parameter_reads(statements), kind

    # What moto created is the template's, the policy the parameters add included.
    resolver = _resolver(deployed.parameters)

    def shape(statements: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return sorted(
            (s["Sid"], json.dumps(s["Action"]), json.dumps(s.get("Condition"), sort_keys=True)) for s in statements
        )

    for logical in ROLES:
        role_name = deployed.physical[f"{logical}Role"]
        assert shape(stack_role_statements(iam, role_name)) == shape(_granted_statements(resolver, f"{logical}Role"))
