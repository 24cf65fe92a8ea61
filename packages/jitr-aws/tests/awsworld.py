"""The AWS resources the tests create in moto, and settings that point at them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from jitr_core.settings import Settings

REGION = "eu-west-1"
MAX_RECEIVE_COUNT = 3


@dataclass(frozen=True)
class World:
    """The AWS resources the tests run against, all inside the moto server."""

    endpoint: str
    table: str
    jobs_queue_url: str
    jobs_dlq_url: str
    lifecycle_queue_url: str
    lifecycle_dlq_url: str
    security_group: str
    subnet: str
    image: str
    instance_profile: str

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    def section(self, **overrides: Any) -> dict[str, Any]:
        section: dict[str, Any] = {
            "region": REGION,
            "endpoint_url": self.endpoint,
            "table": self.table,
            "jobs_queue_url": self.jobs_queue_url,
            "jobs_dlq_url": self.jobs_dlq_url,
            "lifecycle_queue_url": self.lifecycle_queue_url,
            "lifecycle_dlq_url": self.lifecycle_dlq_url,
            "security_group_ids": [self.security_group],
            "instance_profile": self.instance_profile,
            "tags": {"team": "ci"},
        }
        section.update(overrides)
        return {k: v for k, v in section.items() if v is not None}

    def settings(self, **overrides: Any) -> Settings:
        return Settings.from_mapping({"provider": "aws", "aws": self.section(**overrides)}, source="test.toml")
