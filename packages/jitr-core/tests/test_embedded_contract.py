"""The embedded backend passes the backend contract suite every provider must pass."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from jitr_core.backend import Backend
from jitr_core.model import LaunchRequest
from jitr_core.testing import QueueContract, SecretsContract, StoreContract, VMContract


class TestEmbeddedStore(StoreContract):
    @pytest.fixture
    def backend(self, embedded_backend: Backend) -> Backend:
        return embedded_backend


class TestEmbeddedQueue(QueueContract):
    max_receive_count = 3

    @pytest.fixture
    def backend(self, embedded_backend: Backend) -> Backend:
        return embedded_backend


class TestEmbeddedVMs(VMContract):
    @pytest.fixture
    def backend(self, embedded_backend: Backend) -> Backend:
        return embedded_backend

    @pytest.fixture
    def launch_request(self) -> Callable[[str, str], LaunchRequest]:
        def make(runner_name: str, token: str) -> LaunchRequest:
            return LaunchRequest(
                runner_name=runner_name,
                pool="linux",
                machine_type="local",
                placement=None,
                spot=False,
                image="",
                disk_gb=8,
                startup_script="sleep 30\n",
                idempotency_token=token,
                max_lifetime_s=3600,
            )

        return make


class TestEmbeddedSecrets(SecretsContract):
    @pytest.fixture
    def backend(self, embedded_backend: Backend) -> Backend:
        return embedded_backend

    @pytest.fixture(params=["env", "file"])
    def secret_reference(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str, str], str]]:
        names: list[str] = []

        def make(name: str, value: str) -> str:
            if request.param == "file":
                path = tmp_path / f"{name}.secret"
                path.write_text(value + "\n")
                return f"file:{path}"
            variable = f"JITR_TEST_{name.upper()}_{uuid.uuid4().hex[:8]}"
            os.environ[variable] = value
            names.append(variable)
            return f"env:{variable}"

        yield make
        for variable in names:
            del os.environ[variable]

    @pytest.fixture(params=["env:JITR_TEST_NEVER_SET_{}", "file:/nonexistent/{}/secret"])
    def missing_reference(self, request: pytest.FixtureRequest) -> str:
        return str(request.param).format(uuid.uuid4().hex)
