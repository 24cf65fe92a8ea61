"""Starting an emulator survives another process taking its port between pick and bind."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from jitr_gcp.testing import emulators


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_start_whose_port_was_taken_is_tried_again_on_another(
    taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        emulators.find("pubsub")
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(str(exc))
    picks = iter([taken_port])
    free = emulators.free_port
    monkeypatch.setattr(emulators, "free_port", lambda: next(picks, None) or free())

    emulator = emulators.start("pubsub")
    try:
        assert emulator.port != taken_port
        assert emulators._answers(emulator.port)
    finally:
        emulator.stop()


def test_a_port_taken_on_every_try_is_a_failure_naming_the_bind(
    taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        emulators.find("pubsub")
    except emulators.EmulatorUnavailable as exc:
        pytest.skip(str(exc))
    monkeypatch.setattr(emulators, "free_port", lambda: taken_port)

    with pytest.raises(emulators.EmulatorFailed, match="could not bind port"):
        emulators.start("pubsub", tries=2)
