"""pytest fixtures for GCP backend tests; import the names you use into a ``conftest.py``.

- ``pubsub_emulator`` / ``firestore_emulator`` (session): a running emulator with
  ``PUBSUB_EMULATOR_HOST`` / ``FIRESTORE_EMULATOR_HOST`` set for the session. Missing emulator:
  the test is skipped with the reason, or fails when ``JITR_REQUIRE_EMULATORS=1``. The pair is
  started once per run (``gcp_emulators``, session, maps each name to its emulator or why it is
  missing): pytest-xdist workers share it (:mod:`.shared`), so every test must name its own
  topics, subscriptions, collection or record kinds.
- ``fake_compute`` / ``fake_secret_manager``: a fresh fake server per test; pass
  ``fake.url`` as ``compute_endpoint`` / ``secretmanager_endpoint``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from . import emulators, shared
from .compute_fake import FakeCompute
from .secretmanager_fake import FakeSecretManager


class _Pair:
    """This process's hold on the run's emulator pair, taken by the first session fixture that
    needs it and let go with the last one, so ``pubsub_emulator`` and ``firestore_emulator`` need
    no other fixture bound beside them."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._holders = 0
        self._running: dict[str, emulators.Emulator | str] = {}

    @contextlib.contextmanager
    def held(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, emulators.Emulator | str]]:
        if not self._holders:
            directory = None
            if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's base is a directory in the run's base
                directory = tmp_path_factory.getbasetemp().parent / "jitr-gcp-emulators"
            try:
                self._running = self._stack.enter_context(shared.running(directory))
            except emulators.EmulatorFailed as exc:
                pytest.fail(str(exc))
        self._holders += 1
        try:
            yield self._running
        finally:
            self._holders -= 1
            if not self._holders:
                self._stack.close()


_pair = _Pair()


@pytest.fixture(scope="session")
def gcp_emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, emulators.Emulator | str]]:
    """Both emulators, or why one is missing; the workers of one pytest-xdist run share them."""
    with _pair.held(tmp_path_factory) as running:
        yield running


def _running(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulators.Emulator]:
    with _pair.held(tmp_path_factory) as running:
        emulator = running[name]
        if isinstance(emulator, str):
            if os.environ.get("JITR_REQUIRE_EMULATORS") == "1":
                pytest.fail(f"{emulator}; JITR_REQUIRE_EMULATORS=1 makes this a failure")
            pytest.skip(emulator)
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


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulators.Emulator]:
    yield from _running("pubsub", tmp_path_factory)


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[emulators.Emulator]:
    yield from _running("firestore", tmp_path_factory)


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
