"""pytest fixtures for GCP backend tests; import the names you use into a ``conftest.py``.

- ``pubsub_emulator`` / ``firestore_emulator`` (session): a running emulator with
  ``PUBSUB_EMULATOR_HOST`` / ``FIRESTORE_EMULATOR_HOST`` set for the session. Missing emulator:
  the test is skipped with the reason, or fails when ``JITR_REQUIRE_EMULATORS=1``.
- ``fake_compute`` / ``fake_secret_manager``: a fresh fake server per test; pass
  ``fake.url`` as ``compute_endpoint`` / ``secretmanager_endpoint``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from . import emulators
from .compute_fake import FakeCompute
from .secretmanager_fake import FakeSecretManager


def _running(name: str) -> Iterator[emulators.Emulator]:
    try:
        emulator = emulators.start(name)
    except emulators.EmulatorUnavailable as exc:
        if os.environ.get("JITR_REQUIRE_EMULATORS") == "1":
            pytest.fail(f"{exc}; JITR_REQUIRE_EMULATORS=1 makes this a failure")
        pytest.skip(str(exc))
    except emulators.EmulatorFailed as exc:
        pytest.fail(str(exc))
    saved = {key: os.environ.get(key) for key in emulator.env}
    os.environ.update(emulator.env)
    try:
        yield emulator
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        emulator.stop()


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[emulators.Emulator]:
    yield from _running("pubsub")


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[emulators.Emulator]:
    yield from _running("firestore")


@pytest.fixture
def fake_compute() -> Iterator[FakeCompute]:
    fake = FakeCompute()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_secret_manager() -> Iterator[FakeSecretManager]:
    fake = FakeSecretManager()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
