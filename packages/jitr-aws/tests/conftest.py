"""One moto server per test session, reached over real HTTP, with jitr's AWS resources created in it.

The queues get a dead-letter queue with ``maxReceiveCount`` 3 (what the queue contract expects);
the table is created by :func:`jitr_aws.dynamodb.create_table`, the function the docs point to.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import jitr_aws.plugin
import pytest
from awsworld import MAX_RECEIVE_COUNT, REGION, World
from jitr_aws.dynamodb import create_table
from jitr_aws.testing import moto_server
from jitr_core.backend import Backend
from jitr_core.model import LaunchRequest
from jitr_core.plugins import JitrPluginManager, create_plugin_manager


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def _queue_with_dead_letters(sqs: Any, name: str) -> tuple[str, str]:
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})
    queue = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    return queue, dlq


@pytest.fixture(scope="session")
def world(moto_endpoint: str) -> World:
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_endpoint)
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_endpoint)
    jobs, jobs_dlq = _queue_with_dead_letters(sqs, "jitr-jobs")
    lifecycle, lifecycle_dlq = _queue_with_dead_letters(sqs, "jitr-lifecycle")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24", AvailabilityZone=f"{REGION}a")["Subnet"]
    ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": True})
    group = ec2.create_security_group(GroupName="jitr-runners", Description="runners", VpcId=vpc)["GroupId"]
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn-ami-hvm-*"]}])
    image = next(i["ImageId"] for i in images["Images"] if i.get("RootDeviceName") == "/dev/xvda")
    iam.create_instance_profile(InstanceProfileName="jitr-runner")
    world = World(
        endpoint=moto_endpoint,
        table="jitr-state",
        jobs_queue_url=jobs,
        jobs_dlq_url=jobs_dlq,
        lifecycle_queue_url=lifecycle,
        lifecycle_dlq_url=lifecycle_dlq,
        security_group=group,
        subnet=subnet["SubnetId"],
        image=image,
        instance_profile="jitr-runner",
    )
    create_table(world.settings())
    return world


@pytest.fixture(scope="session")
def plugin_manager() -> JitrPluginManager:
    # The aws plugin registered as entry-point discovery would, before core's own defaults.
    return create_plugin_manager(environ={}, load_entry_points=False, extra=[("aws", jitr_aws.plugin)])


@pytest.fixture
def backend(world: World, plugin_manager: JitrPluginManager) -> Backend:
    return Backend(plugin_manager, world.settings())


@pytest.fixture
def launch_request(world: World) -> Callable[..., LaunchRequest]:
    def make(runner_name: str, token: str, **changes: Any) -> LaunchRequest:
        fields: dict[str, Any] = {
            "runner_name": runner_name,
            "pool": "linux-x64",
            "machine_type": "m5.large",
            "placement": world.subnet,
            "spot": True,
            "image": world.image,
            "disk_gb": 40,
            "startup_script": "#!/bin/bash\necho runner\n",
            "idempotency_token": token,
            "max_lifetime_s": 3600,
            "labels": {"jitr-runner": runner_name, "jitr-pool": "linux-x64", "jitr-job": "42", "jitr-attempt": "1"},
        }
        fields.update(changes)
        return LaunchRequest(**fields)

    return make


@pytest.fixture
def unique() -> Callable[[str], str]:
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:10]}"
