"""The ``[aws]`` settings: every error names the variable (or TOML key) the user has to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jitr_aws.config import AwsConfig, VMShape, parse
from jitr_core.errors import SettingsError
from jitr_core.settings import Settings

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/jitr-jobs"
LIFECYCLE = "https://sqs.eu-west-1.amazonaws.com/123456789012/jitr-lifecycle"
COMPLETE = {
    "JITR_PROVIDER": "aws",
    "JITR_AWS_REGION": "eu-west-1",
    "JITR_AWS_TABLE": "jitr-state",
    "JITR_AWS_JOBS_QUEUE_URL": QUEUE,
    "JITR_AWS_LIFECYCLE_QUEUE_URL": LIFECYCLE,
}


def _from_env(**changes: str | None) -> AwsConfig:
    env = {**COMPLETE, **changes}
    return parse(Settings.from_env({k: v for k, v in env.items() if v is not None}))


@pytest.fixture(autouse=True)
def _no_ambient_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


def test_the_variables_are_read_and_typed() -> None:
    config = _from_env(
        JITR_AWS_SECURITY_GROUP_IDS="sg-0123456789abcdef0, sg-0fedcba9876543210",
        JITR_AWS_TAGS="team=ci, cost-centre=42",
        JITR_AWS_ASSOCIATE_PUBLIC_IP="true",
        JITR_AWS_SECRET_CACHE_TTL_S="60",
        JITR_AWS_INSTANCE_PROFILE="arn:aws:iam::123456789012:instance-profile/jitr-runner",
        JITR_AWS_LAUNCH_TEMPLATE="lt-0123456789abcdef0:$Latest",
        JITR_AWS_JOBS_DLQ_URL=QUEUE + "-dlq",
        JITR_AWS_METRICS_NAMESPACE="jitr-staging/ci",
    )
    assert config.region == "eu-west-1" and config.table == "jitr-state"
    assert config.queue_url("jobs") == QUEUE and config.queue_url("lifecycle") == LIFECYCLE
    assert config.dlq_url("jobs") == QUEUE + "-dlq" and config.dlq_url("lifecycle") is None
    assert config.tags == (("cost-centre", "42"), ("team", "ci"))
    assert config.secret_cache_ttl_s == 60
    assert config.metrics_namespace == "jitr-staging/ci"
    assert config.vm == VMShape(
        launch_template="lt-0123456789abcdef0:$Latest",
        security_group_ids=("sg-0123456789abcdef0", "sg-0fedcba9876543210"),
        instance_profile="arn:aws:iam::123456789012:instance-profile/jitr-runner",
        associate_public_ip=True,
    )


def test_defaults() -> None:
    config = _from_env()
    assert config.endpoint_url is None and config.tags == () and config.secret_cache_ttl_s == 300
    assert config.metrics_namespace == "jitr"
    assert config.vm == VMShape()


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"JITR_AWS_REGION": None}, "JITR_AWS_REGION is required"),
        ({"JITR_AWS_REGION": "Ireland"}, "JITR_AWS_REGION must be an AWS region"),
        ({"JITR_AWS_TABLE": None}, "JITR_AWS_TABLE is required when the store provider is aws"),
        ({"JITR_AWS_JOBS_QUEUE_URL": None}, "JITR_AWS_JOBS_QUEUE_URL is required when the queue provider is aws"),
        ({"JITR_AWS_LIFECYCLE_QUEUE_URL": "jitr-lifecycle"}, "JITR_AWS_LIFECYCLE_QUEUE_URL must be an SQS queue URL"),
        ({"JITR_AWS_ENDPOINT_URL": "localhost:5000"}, "JITR_AWS_ENDPOINT_URL must be an http"),
        ({"JITR_AWS_SECURITY_GROUP_IDS": "default"}, "JITR_AWS_SECURITY_GROUP_IDS has an invalid security group"),
        ({"JITR_AWS_INSTANCE_PROFILE": "a b"}, "JITR_AWS_INSTANCE_PROFILE must be an instance profile"),
        ({"JITR_AWS_LAUNCH_TEMPLATE": "x"}, "JITR_AWS_LAUNCH_TEMPLATE must be a launch template"),
        ({"JITR_AWS_ASSOCIATE_PUBLIC_IP": "maybe"}, "JITR_AWS_ASSOCIATE_PUBLIC_IP must be true or false"),
        ({"JITR_AWS_SECRET_CACHE_TTL_S": "-1"}, "JITR_AWS_SECRET_CACHE_TTL_S must be a whole number"),
        ({"JITR_AWS_ROOT_DEVICE_NAME": "xvda"}, "JITR_AWS_ROOT_DEVICE_NAME must be a device name"),
        ({"JITR_AWS_TAGS": "team"}, "JITR_AWS_TAGS must be key=value pairs"),
        ({"JITR_AWS_TAGS": "managed-by=me"}, "JITR_AWS_TAGS has an invalid tag key 'managed-by'"),
        ({"JITR_AWS_TAGS": "aws:x=1"}, "JITR_AWS_TAGS has an invalid tag key 'aws:x'"),
        (
            {"JITR_AWS_TAGS": ",".join(f"t{i}=v" for i in range(44))},
            "JITR_AWS_TAGS has 44 tags; at most 43 fit beside jitr's 7 in EC2's 50",
        ),
        ({"JITR_AWS_REGOIN": "eu-west-1"}, "JITR_AWS_REGOIN is not an aws setting"),
        ({"JITR_AWS_METRICS_NAMESPACE": "AWS/EC2"}, "JITR_AWS_METRICS_NAMESPACE must be a CloudWatch namespace"),
        ({"JITR_AWS_METRICS_NAMESPACE": "jitr\n"}, "JITR_AWS_METRICS_NAMESPACE must be a CloudWatch namespace"),
        ({"JITR_AWS_METRICS_NAMESPACE": "jitr|prod"}, "JITR_AWS_METRICS_NAMESPACE must be a CloudWatch namespace"),
        ({"JITR_AWS_METRICS_NAMESPACE": "j" * 256}, "JITR_AWS_METRICS_NAMESPACE must be a CloudWatch namespace"),
    ],
)
def test_errors_name_the_variable(changes: dict[str, str | None], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable.replace("(", r"\(")):
        _from_env(**changes)


def test_roles_on_other_providers_need_no_aws_settings() -> None:
    config = _from_env(
        JITR_STORE_PROVIDER="embedded",
        JITR_QUEUE_PROVIDER="embedded",
        JITR_AWS_TABLE=None,
        JITR_AWS_JOBS_QUEUE_URL=None,
        JITR_AWS_LIFECYCLE_QUEUE_URL=None,
    )
    assert config.table is None
    with pytest.raises(SettingsError, match="JITR_AWS_JOBS_QUEUE_URL"):
        config.queue_url("jobs")


def test_the_region_falls_back_to_the_runtime_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-2")  # Lambda sets it
    assert _from_env(JITR_AWS_REGION=None).region == "us-east-2"


def test_a_pools_aws_options_are_checked_at_start() -> None:
    pools = [
        {
            "name": "linux",
            "labels": ["self-hosted"],
            "machine_types": ["m7i.large"],
            "options": {"instance_profile": "not valid!"},
        }
    ]
    with pytest.raises(SettingsError, match=r"JITR_POOLS\[0\]\.options\.instance_profile must be"):
        _from_env(JITR_POOLS=json.dumps(pools))


def test_toml_errors_name_the_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "jitr.toml"
    path.write_text(
        'provider = "aws"\n[aws]\nregion = "eu-west-1"\ntable = "jitr-state"\n'
        f'jobs_queue_url = "{QUEUE}"\nlifecycle_queue_url = "{LIFECYCLE}"\n'
        'security_group_ids = ["sg-0123456789abcdef0", "sg-nope"]\n'
    )
    with pytest.raises(SettingsError, match=f"aws.security_group_ids in {path} has an invalid security group"):
        parse(Settings.from_toml(path))


def test_toml_tables_and_lists(tmp_path: Path) -> None:
    path = tmp_path / "jitr.toml"
    path.write_text(
        'provider = "aws"\n[aws]\nregion = "eu-west-1"\ntable = "jitr-state"\n'
        f'jobs_queue_url = "{QUEUE}"\nlifecycle_queue_url = "{LIFECYCLE}"\n'
        "associate_public_ip = true\nsecret_cache_ttl_s = 0\n"
        'security_group_ids = ["sg-0123456789abcdef0"]\n[aws.tags]\nteam = "ci"\n'
    )
    config = parse(Settings.from_toml(path))
    assert config.vm.associate_public_ip is True and config.secret_cache_ttl_s == 0
    assert config.vm.security_group_ids == ("sg-0123456789abcdef0",) and config.tags == (("team", "ci"),)
