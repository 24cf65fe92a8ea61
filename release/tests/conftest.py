"""Fixtures shared by the release tests (see ``release_support``)."""

from __future__ import annotations

import pytest
from release_support import Artifacts, artifacts


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """The sdists and wheels under test: those ``nox -s release-check`` built, or freshly built ones."""
    return artifacts(tmp_path_factory.mktemp("artifacts"))
