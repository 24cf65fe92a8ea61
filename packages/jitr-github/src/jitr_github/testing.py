"""Pytest fixtures for code that talks to GitHub: a running simulator, and a client bound to it.

Opt in where you want them: ``pytest_plugins = ["jitr_github.testing"]`` in a ``conftest.py``,
or ``pytest -p jitr_github.testing``. Installing jitr-github alone loads nothing into anyone's
pytest runs. The simulator is imported when a fixture is first used, not when pytest starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .client import GitHubClient
    from .simulator import GitHubSimulator


@pytest.fixture
def github_simulator() -> Iterator[GitHubSimulator]:
    """A started :class:`~jitr_github.simulator.GitHubSimulator` on an ephemeral port, stopped after the test."""
    from .simulator import GitHubSimulator

    with GitHubSimulator() as sim:
        yield sim


@pytest.fixture
def github_client(github_simulator: GitHubSimulator) -> Iterator[GitHubClient]:
    """A :class:`~jitr_github.GitHubClient` authenticated as the simulator's App, with short retry backoffs."""
    from jitr_core.secret import Secret

    from .client import GitHubClient

    client = GitHubClient(
        str(github_simulator.app_id),
        Secret(github_simulator.private_key_pem),
        github_simulator.base_url,
        backoff_s=0.01,
    )
    yield client
    client.close()
