"""Shared fixtures: the emulators and fakes from jitr_gcp.testing, and per-test settings on them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from jitr_core.backend import Backend
from jitr_core.settings import Settings
from jitr_gcp import pubsub
from jitr_gcp.config import gcp_config
from jitr_gcp.testing import fixtures
from jitr_gcp.testing.backend import gcp_backend, gcp_settings, queue_names
from jitr_gcp.testing.compute_fake import FakeCompute
from jitr_gcp.testing.emulators import Emulator
from jitr_gcp.testing.secretmanager_fake import FakeSecretManager

# pytest finds fixtures by module-level name
pubsub_emulator = fixtures.pubsub_emulator
firestore_emulator = fixtures.firestore_emulator
fake_compute = fixtures.fake_compute
fake_secret_manager = fixtures.fake_secret_manager


@pytest.fixture
def store_backend(firestore_emulator: Emulator) -> Backend:
    return gcp_backend(gcp_settings())


@pytest.fixture
def make_queue_backend(pubsub_emulator: Emulator) -> Callable[..., Backend]:
    """Backends on fresh topics and subscriptions (created here) with the given extra ``[gcp]`` keys."""

    def make(**gcp: object) -> Backend:
        settings = gcp_settings({**queue_names(), "pull_wait_s": 2, **gcp})
        pubsub.ensure_topology(gcp_config(settings))
        return gcp_backend(settings)

    return make


@pytest.fixture
def vm_settings(fake_compute: FakeCompute) -> Settings:
    return gcp_settings(
        {
            "compute_endpoint": fake_compute.url,
            "zones": "us-central1-a,us-central1-b",
            "service_account": "runner@jitr-test.iam.gserviceaccount.com",
        }
    )


@pytest.fixture
def vm_backend(vm_settings: Settings) -> Backend:
    return gcp_backend(vm_settings)


@pytest.fixture
def secrets_backend(fake_secret_manager: FakeSecretManager) -> Backend:
    return gcp_backend(gcp_settings({"secretmanager_endpoint": fake_secret_manager.url}))
