"""Shared fixtures of the jitr-functions tests.

End-to-end fixtures are prefixed ``e2e_``: a whole deployment on this machine (GitHub simulator,
embedded backend, simulated VMs, the local runtime), started per test and stopped after it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def e2e_fixture() -> Callable[[str], bytes]:
    """The bytes of a file under ``tests/fixtures`` (real payloads; see fixtures/SOURCES.md)."""

    def read(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()

    return read


@pytest.fixture
def e2e_sandbox(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Start a :class:`~jitr_functions.sandbox.Sandbox` with the given arguments; stopped after the test.

    Its JSON log lines go to ``sandbox.log_text()``, and are attached to the report of a failed test.
    """
    from jitr_functions.sandbox import Sandbox

    started: list[tuple[Any, io.StringIO]] = []

    def start(**kwargs: Any) -> Any:
        stream = io.StringIO()
        kwargs.setdefault("log_stream", stream)
        sandbox = Sandbox(**kwargs)
        sandbox.log_text = stream.getvalue  # type: ignore[attr-defined]
        started.append((sandbox, stream))
        return sandbox.start()

    yield start
    for sandbox, stream in reversed(started):
        sandbox.stop()
        lines = stream.getvalue().splitlines()
        request.node.add_report_section("teardown", "jitr log (last 200 lines)", "\n".join(lines[-200:]))
