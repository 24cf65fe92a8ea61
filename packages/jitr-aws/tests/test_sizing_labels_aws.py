"""Sizing from labels on AWS: the labelled type reaches RunInstances, and size tables hold EC2 types."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from awsworld import World
from jitr_aws.config import parse
from jitr_core.backend import Backend
from jitr_core.errors import SettingsError
from jitr_core.model import LaunchRequest
from jitr_core.routing import Router
from jitr_core.services.candidates import fallback_chain
from jitr_core.settings import Settings

SIZED = {
    "name": "linux",
    "labels": ["self-hosted", "linux"],
    "machine_types": ["m5.large"],
    "machine_type_labels": ["c6i.*"],
}


def test_a_labelled_job_launches_the_labelled_instance_type(
    backend: Backend, world: World, launch_request: Callable[..., LaunchRequest]
) -> None:
    settings = Settings.from_mapping({"provider": "aws", "aws": world.section(), "pools": [SIZED]})
    pool, sizing = Router(settings).route(["self-hosted", "linux", "c6i.4xlarge"])
    assert pool is not None and sizing is not None
    machine_type, _, spot = next(fallback_chain(pool, sizing))
    name = f"jitr-linux-{uuid.uuid4().int % 10**9}-1"

    result = backend.launch_vm(launch_request(name, uuid.uuid4().hex, machine_type=machine_type, spot=spot))

    reservations = world.client("ec2").describe_instances(InstanceIds=[result.vm_id])["Reservations"]
    assert reservations[0]["Instances"][0]["InstanceType"] == "c6i.4xlarge"
    assert result.machine_type == "c6i.4xlarge"
    backend.terminate_vm(result.vm_id)


@pytest.mark.parametrize(
    ("pool", "where"),
    [
        ({"machine_sizes": [{"machine_type": "n2-standard-8", "cpu": 8, "ram": 32}]}, r"machine_sizes\[0\]"),
        ({"machine_type_labels": ["c6i.*", "bigbox"]}, r"machine_type_labels\[1\]"),
    ],
)
def test_sizing_types_that_are_not_ec2_instance_types_are_refused_at_start(pool: dict[str, Any], where: str) -> None:
    pools = json.dumps([{**SIZED, **pool}])
    settings = Settings.from_env({"JITR_VM_PROVIDER": "aws", "JITR_AWS_REGION": "eu-west-1", "JITR_POOLS": pools})
    with pytest.raises(SettingsError, match=rf"JITR_POOLS\[0\]\.{where} must be an EC2 instance type"):
        parse(settings)


def test_ec2_sizing_types_are_accepted() -> None:
    sizes = [{"machine_type": "c6i.xlarge", "cpu": 4, "ram": 8}, {"machine_type": "m7i-flex.large", "cpu": 2, "ram": 8}]
    pools = json.dumps([{**SIZED, "machine_type_labels": ["c6i.*", "m7i.2xlarge"], "machine_sizes": sizes}])
    settings = Settings.from_env({"JITR_VM_PROVIDER": "aws", "JITR_AWS_REGION": "eu-west-1", "JITR_POOLS": pools})
    assert parse(settings).region == "eu-west-1"
