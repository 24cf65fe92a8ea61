"""Fixtures of the AWS infrastructure tests: moto in server mode on 127.0.0.1, and a network in it.

The Terraform and CloudFormation tests deploy into this moto server, read what was deployed back
with boto3 and run the real handlers against it (see ``aws_flow``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aws_flow import aws_client
from jitr_aws.testing import moto_server

REGION = "eu-west-1"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server for this process (each xdist worker has its own), with fake credentials in the environment."""
    with moto_server() as endpoint:
        yield endpoint


@dataclass(frozen=True)
class Network:
    """A VPC with two subnets in moto, and an Amazon Linux image whose root device is /dev/xvda."""

    vpc_id: str
    subnet_ids: tuple[str, str]
    image: str


@pytest.fixture(scope="session")
def network(moto_endpoint: str) -> Network:
    ec2 = aws_client("ec2", moto_endpoint, REGION)
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnets = tuple(
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in ((1, "a"), (2, "b"))
    )
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn-ami-hvm-*"]}])
    image = next(i["ImageId"] for i in images["Images"] if i.get("RootDeviceName") == "/dev/xvda")
    return Network(vpc, (subnets[0], subnets[1]), image)
