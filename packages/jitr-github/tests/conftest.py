"""Fixtures of jitr-github's tests, and a guard failing any test whose logs carry a secret."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from github_support import LogCapture, SimFactory, WebhookReceiver, leaks, secret_fragments
from jitr_github.simulator import GitHubSimulator

pytest_plugins = ["jitr_github.testing", "pytester"]


@pytest.fixture
def make_sim() -> Iterator[SimFactory]:
    factory = SimFactory()
    yield factory
    factory.stop_all()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    found = WebhookReceiver()
    yield found
    found.stop()


@pytest.fixture(autouse=True)
def secret_free_logs(request: pytest.FixtureRequest) -> Iterator[Callable[[], list[logging.LogRecord]]]:
    """Every test: no log record (message, extra fields, exception) carries a simulator's secret."""
    capture = LogCapture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    yield lambda: list(capture.records)
    root.removeHandler(capture)
    root.setLevel(previous)
    sims = [value for value in request.node.funcargs.values() if isinstance(value, GitHubSimulator)]
    factory = request.node.funcargs.get("make_sim")
    if isinstance(factory, SimFactory):
        sims += factory.created
    pieces = secret_fragments(sims)
    for text in capture.texts():
        assert not leaks(text, pieces), f"a secret leaked into a log record: {text[:120]!r}"
