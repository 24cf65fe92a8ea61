"""``terraform validate`` of the AWS module and its example, with the provider from a local mirror (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_terraform import Workspace
from jitr_core.testing.environment import unavailable


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("tf-validate"))


@pytest.mark.parametrize("which", ["module", "example"])
def test_validate(workspace: Workspace, which: str) -> None:
    directory: Path = workspace.module if which == "module" else workspace.example
    workspace.init(directory)

    done = workspace.run(directory, "validate", "-no-color")

    assert "The configuration is valid" in done.stdout


def test_module_is_formatted(workspace: Workspace) -> None:
    done = workspace.run(workspace.root, "fmt", "-check", "-recursive", "-no-color")

    assert done.stdout == ""


# -- terraform test: what the variables refuse, how pools are rendered ---------------------------


def test_module_tests_pass(workspace: Workspace) -> None:
    """``infra/aws/terraform/tests/*.tftest.hcl``: invalid input refused at plan, JITR_POOLS rendered as jitr reads it.

    The provider is mocked there (``mock_provider``, Terraform 1.7 or later): nothing is created.
    """
    version = json.loads(workspace.run(workspace.root, "version", "-json").stdout)["terraform_version"]
    if tuple(int(part) for part in version.split("-")[0].split(".")[:2]) < (1, 7):
        unavailable(f"terraform test with mock providers needs Terraform 1.7 or later, found {version}")
    workspace.init(workspace.module)

    done = workspace.run(workspace.module, "test", "-no-color", timeout_s=300)

    assert "0 failed" in done.stdout, done.stdout
