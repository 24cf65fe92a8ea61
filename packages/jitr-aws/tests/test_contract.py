"""jitr's backend contract suite, run against the AWS backend on a moto server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from awsworld import MAX_RECEIVE_COUNT, World
from jitr_core.testing import QueueContract, SecretsContract, StoreContract, VMContract


class TestDynamoDBStore(StoreContract):
    pass


class TestSQSQueue(QueueContract):
    max_receive_count = MAX_RECEIVE_COUNT


class TestEC2VMs(VMContract):
    pass


class TestSecretsManager(SecretsContract):
    @pytest.fixture
    def secret_reference(self, world: World, unique: Callable[[str], str]) -> Callable[[str, str], str]:
        def create(name: str, value: str) -> str:
            secret = unique(f"jitr/{name}")
            world.client("secretsmanager").create_secret(Name=secret, SecretString=value)
            return secret

        return create

    @pytest.fixture
    def missing_reference(self, unique: Callable[[str], str]) -> str:
        return unique("jitr/missing")
