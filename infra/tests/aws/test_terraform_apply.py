"""``terraform apply`` of examples/aws against moto, then jitr's flow through what it deployed.

The example leaves its pool's ``handoff`` unset, so it deploys the broker (the default): six
functions, the broker's HTTP API, and a runner VM that pulls its JIT config from the broker
(``test_terraform_apply_metadata`` deploys it with the pool on ``metadata``). An override of the
example's module call gives its pool one warm VM (docs/warm-pools.md), so the same deployment
also runs a warm pool's paths: scaledown filling the pool, a job taking the waiting VM through
the broker, scaleup refilling, and a runner the broker cannot serve (``aws_flow.run_warm_pool``).

The example is applied once for this module (``aws_example``), against moto in server mode, with
a GitHub simulator as GitHub. The handlers run in this process from the installed packages,
invoked by the handler name Terraform gave each function and with exactly the environment
Terraform gave it (``aws_flow``), so everything the deployment decides (names, handlers,
settings, queues, table, secrets, IAM) is what the run uses. The IAM test compares each role's
policy with the AWS calls its function made. Finally ``terraform destroy`` must leave nothing
behind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aws_example import Deployment, deploy
from aws_flow import (
    KINDS,
    LABELS,
    FlowResult,
    IdentitySigner,
    assert_covered,
    load_reasons,
    role_actions,
    role_statements,
    run_flow,
    run_warm_pool,
)
from conftest import REGION, Network
from jitr_aws.dynamodb import table_definition, ttl_specification
from jitr_core.metrics import CATALOGUE
from jitr_core.settings import Settings

PREFIX = "jitr-tf"
POOL = "linux-x64"
WITH_BROKER = (*KINDS, "broker")
DOCUMENTED = {  # docs/aws-deploy.md: timeout (s), memory (MB)
    "webhook": (10, 256),
    "scaleup": (60, 512),
    "lifecycle": (60, 256),
    "scaledown": (240, 512),
    "rebalancer": (55, 512),
    "broker": (30, 512),
}


# The example's module call with one warm VM in its pool (an override file: the example itself is
# what users copy), and a short hold of the warm VM's calls at the broker, which the flow waits out.
WARM_OVERRIDE = """module "jitr" {
  pools = [
    {
      name          = var.pool_name
      labels        = var.pool_labels
      machine_types = var.machine_types
      subnet_ids    = var.subnet_ids
      image         = var.image
      disk_gb       = var.disk_gb
      max_runners   = var.max_runners
      warm          = 1
    },
  ]
  jitr_settings = merge(var.jitr_settings, { JITR_WARM_HOLD_S = "1" })
}
"""


@pytest.fixture(scope="module")
def deployment(moto_endpoint: str, network: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """examples/aws with its pool's handoff left at the default, the broker, and one warm VM."""
    root = tmp_path_factory.mktemp("tf-apply")
    yield from deploy(moto_endpoint, network, root, PREFIX, POOL, WITH_BROKER, override=WARM_OVERRIDE)


# -- what was deployed ------------------------------------------------------------------------


def test_six_functions_with_the_documented_handlers_and_limits(deployment: Deployment) -> None:
    functions = deployment.functions()

    assert sorted(functions) == sorted(WITH_BROKER)  # the broker too: the default handoff
    for kind, function in functions.items():
        assert function.name == f"{PREFIX}-{kind}"
        assert function.handler == f"jitr_functions.aws.{kind}"
        assert (function.runtime, function.architectures) == ("python3.12", ("x86_64",))
        assert (function.timeout_s, function.memory_mb) == DOCUMENTED[kind], kind
    assert len({f.role_arn for f in functions.values()}) == len(WITH_BROKER), "one role per function"
    assert deployment.outputs["function_role_arns"] == {k: f.role_arn for k, f in functions.items()}


def test_every_function_gets_the_same_settings_and_jitr_accepts_them(deployment: Deployment) -> None:
    functions = deployment.functions()
    environment = functions["webhook"].environment

    assert all(f.environment == environment for f in functions.values())
    assert environment == deployment.outputs["environment"]
    settings = Settings.from_env(environment)  # jitr's own loader: what a cold start does
    [pool] = settings.pools
    assert (pool.name, sorted(pool.labels), pool.machine_types) == (POOL, sorted(LABELS), ("m5.large", "m5a.large"))
    assert pool.placements == deployment.network.subnet_ids
    assert (pool.image, pool.max_runners, pool.warm) == (deployment.network.image, 5, 1)
    assert pool.handoff == "broker" and settings.broker_url == environment["JITR_BROKER_URL"]
    # written out: the functions never depend on jitr's default handoff
    assert [p["handoff"] for p in json.loads(environment["JITR_POOLS"])] == ["broker"]
    assert settings.github_api_url == deployment.sim.base_url
    assert settings.provider("vm") == settings.provider("store") == "aws"
    aws = settings.section("aws")
    assert aws["table"] == deployment.outputs["table_name"]
    assert aws["jobs_queue_url"] == deployment.outputs["jobs_queue_url"]
    assert aws["metrics_namespace"] == PREFIX  # deployments sharing an account keep their metrics apart
    assert aws["security_group_ids"] == deployment.outputs["runner_security_group_id"]
    assert aws["instance_profile"] == deployment.outputs["runner_instance_profile"]
    assert aws["tags"] == f"jitr:deployment={PREFIX}"


def test_secrets_hold_the_values_given(deployment: Deployment) -> None:
    environment = deployment.functions()["webhook"].environment
    sm = deployment.client("secretsmanager")

    def digest(reference: str) -> str:
        value = sm.get_secret_value(SecretId=reference)["SecretString"]
        return hashlib.sha256(value.encode()).hexdigest()  # never the value itself in a failure message

    assert (
        digest(environment["JITR_SECRETS_WEBHOOK_SECRET"])
        == hashlib.sha256(deployment.webhook_secret.encode()).hexdigest()
    )
    assert (
        digest(environment["JITR_SECRETS_GITHUB_APP_PRIVATE_KEY"])
        == hashlib.sha256(deployment.sim.private_key_pem.encode()).hexdigest()
    )


def test_webhook_function_url_has_no_aws_auth(deployment: Deployment) -> None:
    url = deployment.client("lambda").get_function_url_config(FunctionName=f"{PREFIX}-webhook")

    assert url["AuthType"] == "NONE"
    assert deployment.outputs["webhook_url"].rstrip("/") == url["FunctionUrl"].rstrip("/")
    # without this grant an auth-NONE URL answers 403; it admits calls through the URL only
    policy = json.loads(deployment.client("lambda").get_policy(FunctionName=f"{PREFIX}-webhook")["Policy"])
    [public] = [s for s in policy["Statement"] if s["Sid"] == "AllowPublicFunctionUrl"]
    assert public["Action"] == "lambda:InvokeFunctionUrl" and public["Principal"] in ("*", {"AWS": "*"})
    # moto keeps no condition: the applied state says the grant is for auth-NONE URLs only
    shown = deployment.workspace.run(deployment.workspace.example, "show", "-json", "-no-color")
    state = json.loads(shown.stdout)["values"]["root_module"]
    grants = [
        r["values"]
        for module in state.get("child_modules", [])
        for r in module.get("resources", [])
        if r["type"] == "aws_lambda_permission" and r["values"]["statement_id"] == "AllowPublicFunctionUrl"
    ]
    assert [g["function_url_auth_type"] for g in grants] == ["NONE"]


def test_the_broker_is_post_broker_on_its_http_api(deployment: Deployment) -> None:
    apigateway, lam = deployment.client("apigatewayv2"), deployment.client("lambda")
    [api] = [a for a in apigateway.get_apis()["Items"] if a["Name"] == f"{PREFIX}-broker"]

    assert api["ProtocolType"] == "HTTP"
    # every function's settings name it (examples/aws has no broker_url output: the module's is its URL too)
    assert {f.environment["JITR_BROKER_URL"] for f in deployment.functions().values()} == {
        f"{api['ApiEndpoint']}/broker"
    }
    [route] = apigateway.get_routes(ApiId=api["ApiId"])["Items"]
    assert (route["RouteKey"], route["AuthorizationType"]) == ("POST /broker", "NONE")
    [integration] = apigateway.get_integrations(ApiId=api["ApiId"])["Items"]
    assert route["Target"] == f"integrations/{integration['IntegrationId']}"
    assert (integration["IntegrationType"], integration["PayloadFormatVersion"]) == ("AWS_PROXY", "2.0")
    assert f":function:{PREFIX}-broker/" in integration["IntegrationUri"]
    [stage] = apigateway.get_stages(ApiId=api["ApiId"])["Items"]
    assert stage["StageName"] == "$default" and stage["AutoDeploy"]
    assert stage["AccessLogSettings"]["DestinationArn"].endswith(f":log-group:/aws/apigateway/{PREFIX}-broker")
    policy = json.loads(lam.get_policy(FunctionName=f"{PREFIX}-broker")["Policy"])
    [grant] = policy["Statement"]
    assert grant["Principal"] == {"Service": "apigateway.amazonaws.com"} and grant["Action"] == "lambda:InvokeFunction"
    assert grant["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(f":{api['ApiId']}/*/*/broker")


def test_queues_feed_their_functions_with_partial_batch_responses(deployment: Deployment) -> None:
    sqs, lam = deployment.client("sqs"), deployment.client("lambda")
    functions = deployment.functions()

    for queue, consumer in (("jobs", "scaleup"), ("lifecycle", "lifecycle")):
        url = deployment.outputs[f"{queue}_queue_url"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        dlq_url = functions[consumer].environment[f"JITR_AWS_{queue.upper()}_DLQ_URL"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
        assert int(attributes["VisibilityTimeout"]) >= 6 * functions[consumer].timeout_s
        [mapping] = lam.list_event_source_mappings(EventSourceArn=attributes["QueueArn"])["EventSourceMappings"]
        assert mapping["FunctionArn"].endswith(f":function:{PREFIX}-{consumer}")
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BatchSize"] == 10


def test_periodic_functions_are_scheduled_without_retries(deployment: Deployment) -> None:
    events, lam = deployment.client("events"), deployment.client("lambda")

    for kind, rate in (("scaledown", "rate(5 minutes)"), ("rebalancer", "rate(1 minute)")):
        rule = events.describe_rule(Name=f"{PREFIX}-{kind}")
        assert rule["ScheduleExpression"] == rate
        assert rule["State"] == "ENABLED"
        [target] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert target["Arn"].endswith(f":function:{PREFIX}-{kind}")
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
        invoke_config = lam.get_function_event_invoke_config(FunctionName=f"{PREFIX}-{kind}")
        assert invoke_config["MaximumRetryAttempts"] == 0
        policy = json.loads(lam.get_policy(FunctionName=f"{PREFIX}-{kind}")["Policy"])
        assert [s["Principal"] for s in policy["Statement"]] == [{"Service": "events.amazonaws.com"}]


def test_spot_interruption_warnings_reach_the_lifecycle_queue(deployment: Deployment) -> None:
    events, sqs = deployment.client("events"), deployment.client("sqs")
    rule = events.describe_rule(Name=f"{PREFIX}-spot-interruption")
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
    }
    queue_url = sqs.get_queue_url(QueueName=f"{PREFIX}-lifecycle")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn", "Policy"])["Attributes"]
    [target] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"] == attributes["QueueArn"]
    [statement] = json.loads(attributes["Policy"])["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage" and statement["Resource"] == attributes["QueueArn"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule["Arn"]}}


def test_table_is_jitrs_table_definition(deployment: Deployment) -> None:
    ddb = deployment.client("dynamodb")
    name = deployment.outputs["table_name"]
    expected = table_definition(name)

    table = ddb.describe_table(TableName=name)["Table"]

    assert table["BillingModeSummary"]["BillingMode"] == expected["BillingMode"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(expected["AttributeDefinitions"], key=str)
    assert table["KeySchema"] == expected["KeySchema"]
    indexes = [
        {k: index[k] for k in ("IndexName", "KeySchema", "Projection")} for index in table["GlobalSecondaryIndexes"]
    ]
    assert indexes == expected["GlobalSecondaryIndexes"]
    ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", ttl_specification()["AttributeName"])
    backups = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_runners_get_a_closed_security_group_and_a_role_that_ships_logs_and_tags_itself(
    deployment: Deployment,
) -> None:
    ec2, iam = deployment.client("ec2"), deployment.client("iam")
    group_id = deployment.outputs["runner_security_group_id"]

    [group] = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]

    assert group["VpcId"] == deployment.network.vpc_id
    assert group["IpPermissions"] == []
    egress = sorted((r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in group["IpPermissionsEgress"])
    assert egress == [("tcp", 53, 53), ("tcp", 80, 80), ("tcp", 443, 443), ("udp", 53, 53)]
    profile = iam.get_instance_profile(InstanceProfileName=deployment.outputs["runner_instance_profile"])
    [role] = profile["InstanceProfile"]["Roles"]
    assert role["RoleName"] == f"{PREFIX}-runner"
    statements = {s["Sid"]: s for s in role_statements(deployment.endpoint, role["RoleName"], REGION)}
    assert set(statements) == {"ShipRunnerLogs", "TagSelfWithExitReport"}
    logs = statements["ShipRunnerLogs"]
    assert logs["Resource"] == ["arn:aws:logs:eu-west-1:123456789012:log-group:/jitr/*"]
    assert not any(a.startswith("ec2:") for a in logs["Action"])
    tag = statements["TagSelfWithExitReport"]
    assert tag["Action"] in (["ec2:CreateTags"], "ec2:CreateTags")
    assert tag["Condition"]["StringEquals"] == {"aws:ARN": "${ec2:SourceInstanceARN}"}
    assert tag["Condition"]["ForAllValues:StringEquals"] == {"aws:TagKeys": ["jitr-runner-exit"]}


def test_alarms_watch_the_dead_letter_queues_and_every_function(deployment: Deployment) -> None:
    alarms = deployment.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{PREFIX}-")["MetricAlarms"]

    watched = sorted(
        ((a["Namespace"], a["MetricName"], a["Dimensions"][0]["Value"] if a["Dimensions"] else None) for a in alarms),
        key=str,
    )

    assert watched == sorted(
        [("AWS/SQS", "ApproximateNumberOfMessagesVisible", f"{PREFIX}-{q}-dlq") for q in ("jobs", "lifecycle")]
        + [("AWS/Lambda", "Errors", f"{PREFIX}-{kind}") for kind in WITH_BROKER]
        + [(PREFIX, "runner_no_job_exits", None)],  # the total over the pools, in the deployment's namespace
        key=str,
    )


def test_metric_filters_count_the_webhooks_delivery_line_and_the_dashboard_shows_every_metric(
    deployment: Deployment,
) -> None:
    group = f"/aws/lambda/{PREFIX}-webhook"
    filters = deployment.client("logs").describe_metric_filters(logGroupName=group)["metricFilters"]
    counted = {m.name: m for m in CATALOGUE.values() if m.log_message}
    assert sorted(f["metricTransformations"][0]["metricName"] for f in filters) == sorted(counted)
    for found in filters:
        metric = counted[found["metricTransformations"][0]["metricName"]]
        assert f'($.message = "{metric.log_message}")' in found["filterPattern"]
        assert found["metricTransformations"][0]["metricNamespace"] == PREFIX

    body = json.loads(deployment.client("cloudwatch").get_dashboard(DashboardName=PREFIX)["DashboardBody"])
    titles = [widget["properties"]["title"] for widget in body["widgets"]]
    assert sorted(titles) == sorted(CATALOGUE)
    for widget in body["widgets"]:
        metric = CATALOGUE[widget["properties"]["title"]]
        dimensions = ",".join([f'"{PREFIX}"', *metric.labels])
        for [query] in widget["properties"]["metrics"]:
            assert query["expression"].startswith(f"SEARCH('{{{dimensions}}} MetricName=\"{metric.name}\"'")


def test_log_groups_have_retention(deployment: Deployment) -> None:
    groups = deployment.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{PREFIX}-")["logGroups"]

    assert sorted(g["logGroupName"] for g in groups) == sorted(f"/aws/lambda/{PREFIX}-{kind}" for kind in WITH_BROKER)
    assert {g.get("retentionInDays") for g in groups} == {30}
    [access] = deployment.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/apigateway/{PREFIX}-broker")[
        "logGroups"
    ]
    assert access.get("retentionInDays") == 30


# -- the flow through the deployed functions, and what their roles allow -------------------------


@pytest.fixture(scope="module")
def flow(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> FlowResult:
    """The job's VM pulls its JIT config from the broker, proving itself with its identity document.

    AWS signs instance identity documents with its key for the region; a test key plays it here,
    its certificate added to the broker's trusted ones (the one setting the deployment does not give).
    """
    functions = deployment.functions()
    signer = IdentitySigner(deployment.client("sts").get_caller_identity()["Account"], REGION)
    functions["broker"] = signer.trust(functions["broker"], tmp_path_factory.mktemp("identity-certificates"))
    result = run_flow(
        deployment.endpoint, functions, deployment.sim, webhook_secret=deployment.webhook_secret, region=REGION,
        prove=signer.prove,
    )  # fmt: skip
    # The pool keeps a warm VM: the flow's scaledown pass launched it; jobs take it and the next.
    warm = run_warm_pool(
        deployment.endpoint, functions, deployment.sim, webhook_secret=deployment.webhook_secret, region=REGION,
        prove=signer.prove,
    )  # fmt: skip
    result.reports["warm"] = warm
    for kind, calls in warm.calls.items():
        result.calls.setdefault(kind, set()).update(calls)
    # The accepted account is the deployment's own, from STS: GetCallerIdentity needs no permission.
    result.calls.get("broker", set()).discard("sts:GetCallerIdentity")
    return result


def test_a_job_runs_through_the_deployed_functions(deployment: Deployment, flow: FlowResult) -> None:
    [reservation] = deployment.client("ec2").describe_instances(InstanceIds=[flow.instance_id])["Reservations"]
    [instance] = reservation["Instances"]

    assert flow.instance_tags["managed-by"] == "jitr"
    assert flow.instance_tags["jitr:deployment"] == PREFIX
    assert flow.instance_tags["jitr-pool"] == POOL
    assert instance["SubnetId"] in deployment.network.subnet_ids
    [interface] = instance["NetworkInterfaces"]
    assert [g["GroupId"] for g in interface["Groups"]] == [deployment.outputs["runner_security_group_id"]]
    assert instance["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{PREFIX}-runner")
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert deployment.sim.job(flow.job_id).status == "completed"
    assert flow.reports["scaledown"] is not None and flow.reports["rebalancer"] is not None
    assert flow.reports["scaledown"].get("warm-launched") == 1, "scaledown's pass fills the warm pool"


def test_jobs_take_the_warm_vms_through_the_broker(deployment: Deployment, flow: FlowResult) -> None:
    warm: FlowResult = flow.reports["warm"]

    assert warm.instance_tags["jitr-job"] == "warm" and warm.instance_tags["jitr:deployment"] == PREFIX
    assert "warm-launched" not in warm.reports["scaledown"], "the pool was full already"
    assert deployment.sim.job(warm.job_id).status == "in_progress"  # on the warm VM, launched before the job
    assert deployment.sim.job(warm.reports["unserved_job_id"]).status == "queued"  # dead-lettered by jitr


def test_each_role_allows_exactly_what_its_function_calls(deployment: Deployment, flow: FlowResult) -> None:
    functions = deployment.functions()
    allowed = {kind: role_actions(deployment.endpoint, f.role_name, REGION) for kind, f in functions.items()}

    assert_covered(flow.calls, allowed, load_reasons())


def test_ec2_permissions_are_scoped_to_this_deployments_tagged_runners(deployment: Deployment) -> None:
    functions = deployment.functions()

    def statements(kind: str, action: str) -> list[dict[str, Any]]:
        found = role_statements(deployment.endpoint, functions[kind].role_name, REGION)
        return [s for s in found if action in s["Action"]]

    for kind in ("scaleup", "lifecycle", "scaledown", "broker"):
        [terminate] = statements(kind, "ec2:TerminateInstances")
        assert terminate["Condition"] == {
            "StringEquals": {"ec2:ResourceTag/managed-by": "jitr", "ec2:ResourceTag/jitr:deployment": PREFIX}
        }
    tagged = {"aws:RequestTag/managed-by": "jitr", "aws:RequestTag/jitr:deployment": PREFIX}
    launchers = ("scaleup", "scaledown")  # scaledown fills the warm pool
    for kind in launchers:
        launches = statements(kind, "ec2:RunInstances")
        created = [s for s in launches if any(":instance/" in r for r in s["Resource"])]
        assert [s["Condition"]["StringEquals"] for s in created] == [tagged], kind
        [tags] = statements(kind, "ec2:CreateTags")
        assert tags["Condition"]["StringEquals"] == {**tagged, "ec2:CreateAction": "RunInstances"}, kind
        [passrole] = statements(kind, "iam:PassRole")
        assert passrole["Resource"] == [deployment.outputs["function_role_arns"][kind].replace(kind, "runner")]
    for kind in WITH_BROKER:
        if kind not in launchers:
            assert not statements(kind, "ec2:RunInstances") and not statements(kind, "iam:PassRole"), kind


def test_each_function_reads_only_its_secret_and_writes_only_its_queues(deployment: Deployment) -> None:
    functions = deployment.functions()
    environment = functions["webhook"].environment
    queues = {
        "jobs": environment["JITR_AWS_JOBS_QUEUE_URL"], "lifecycle": environment["JITR_AWS_LIFECYCLE_QUEUE_URL"],
        "jobs-dlq": environment["JITR_AWS_JOBS_DLQ_URL"], "lifecycle-dlq": environment["JITR_AWS_LIFECYCLE_DLQ_URL"],
    }  # fmt: skip
    arn_of = {f"arn:aws:sqs:{REGION}:123456789012:{url.rsplit('/', 1)[-1]}": name for name, url in queues.items()}
    expected_sends = {
        "webhook": {"jobs", "lifecycle"},
        "scaleup": {"jobs", "jobs-dlq"},
        "lifecycle": {"jobs", "lifecycle", "lifecycle-dlq"},
        "scaledown": {"jobs", "lifecycle", "jobs-dlq"},
        "rebalancer": {"jobs"},
        "broker": {"jobs", "jobs-dlq"},
    }

    for kind, function in functions.items():
        statements = role_statements(deployment.endpoint, function.role_name, REGION)
        secrets_read = {r for s in statements if "secretsmanager:GetSecretValue" in s["Action"] for r in s["Resource"]}
        sends = {arn_of[r] for s in statements if "sqs:SendMessage" in s["Action"] for r in s["Resource"]}
        wanted = "JITR_SECRETS_WEBHOOK_SECRET" if kind == "webhook" else "JITR_SECRETS_GITHUB_APP_PRIVATE_KEY"
        assert secrets_read == {function.environment[wanted]}, kind
        assert sends == expected_sends[kind], kind


# -- tearing down --------------------------------------------------------------------------------


def test_destroy_leaves_nothing(deployment: Deployment, flow: FlowResult) -> None:
    deployment.destroy()

    lam, sqs, ddb, iam = (deployment.client(s) for s in ("lambda", "sqs", "dynamodb", "iam"))
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith(PREFIX)] == []
    assert sqs.list_queues(QueueNamePrefix=PREFIX).get("QueueUrls", []) == []
    assert [t for t in ddb.list_tables()["TableNames"] if t.startswith(PREFIX)] == []
    assert [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(PREFIX)] == []
    assert iam.list_instance_profiles()["InstanceProfiles"] == []
    assert (
        deployment.client("secretsmanager").list_secrets(Filters=[{"Key": "name", "Values": [PREFIX]}])["SecretList"]
        == []
    )
    assert deployment.client("events").list_rules(NamePrefix=PREFIX)["Rules"] == []
    assert deployment.client("cloudwatch").describe_alarms(AlarmNamePrefix=PREFIX)["MetricAlarms"] == []
    groups = deployment.client("logs").describe_log_groups()["logGroups"]
    assert [
        g["logGroupName"] for g in groups if PREFIX in g["logGroupName"] or g["logGroupName"].startswith("/jitr/")
    ] == []
    security_groups = deployment.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{PREFIX}-runners"]}]
    )["SecurityGroups"]
    assert security_groups == []
    assert [a for a in deployment.client("apigatewayv2").get_apis()["Items"] if a["Name"].startswith(PREFIX)] == []
