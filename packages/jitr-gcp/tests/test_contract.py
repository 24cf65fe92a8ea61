"""The backend contract suite from jitr-core, run against the GCP plugin.

Store on the Firestore emulator, queues on the Pub/Sub emulator, VMs and secrets on the local
fakes of the GCE and Secret Manager REST APIs, always through Google's client libraries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager
from jitr_core.backend import Backend
from jitr_core.model import LaunchRequest
from jitr_core.testing import QueueContract, SecretsContract, StoreContract, VMContract
from jitr_gcp.testing.backend import PROJECT
from jitr_gcp.testing.secretmanager_fake import FakeSecretManager


class TestFirestoreStore(StoreContract):
    @pytest.fixture
    def backend(self, store_backend: Backend) -> Backend:
        return store_backend


class TestPubSubQueue(QueueContract):
    """Pub/Sub's own dead-letter policy moves the poison message (5 attempts, its minimum)."""

    max_receive_count = 5

    @pytest.fixture
    def backend(self, make_queue_backend: Callable[..., Backend]) -> Backend:
        return make_queue_backend(max_deliveries=5)


class TestPubSubQueueLimitBelowPolicy(QueueContract):
    """``max_deliveries`` below Pub/Sub's minimum: the pull path moves the message itself."""

    max_receive_count = 3

    @pytest.fixture
    def backend(self, make_queue_backend: Callable[..., Backend]) -> Backend:
        return make_queue_backend(max_deliveries=3)


class TestComputeVMs(VMContract):
    @pytest.fixture
    def backend(self, vm_backend: Backend) -> Backend:
        return vm_backend

    @pytest.fixture
    def launch_request(self) -> Callable[[str, str], LaunchRequest]:
        def make(name: str, token: str) -> LaunchRequest:
            return LaunchRequest(
                runner_name=name,
                pool="linux-x64",
                machine_type="e2-standard-2",
                placement="us-central1-b",
                spot=True,
                image="projects/debian-cloud/global/images/family/debian-12",
                disk_gb=30,
                startup_script="#!/bin/bash\necho runner\n",
                idempotency_token=token,
                max_lifetime_s=3600,
                labels={"jitr-job": "42", "jitr-attempt": "1"},
            )

        return make


class TestSecretManager(SecretsContract):
    @pytest.fixture
    def backend(self, secrets_backend: Backend) -> Backend:
        return secrets_backend

    @pytest.fixture
    def secret_reference(self, fake_secret_manager: FakeSecretManager) -> Callable[[str, str], str]:
        client = secretmanager.SecretManagerServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call, unused-ignore]
            client_options={"api_endpoint": fake_secret_manager.url},
        )

        def make(name: str, value: str) -> str:
            secret_id = f"{name}-{uuid.uuid4().hex[:8]}"
            secret = client.create_secret(
                parent=f"projects/{PROJECT}",
                secret_id=secret_id,
                secret=secretmanager.Secret(replication={"automatic": {}}),
            )
            client.add_secret_version(parent=secret.name, payload=secretmanager.SecretPayload(data=value.encode()))
            return secret_id

        return make

    @pytest.fixture
    def missing_reference(self) -> str:
        return f"projects/{PROJECT}/secrets/absent-{uuid.uuid4().hex[:8]}/versions/latest"
