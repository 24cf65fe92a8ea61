"""Running Terraform offline in tests: the provider from a local mirror, the code copied out of the checkout.

- :func:`terraform_binary` and :func:`plugin_mirror` find the tools (skipping, or failing under
  ``JITR_REQUIRE_TOOLS=1``, when they are missing);
- :class:`Workspace` copies the module and the example into a temporary directory (so no
  ``.terraform`` or state lands in the checkout), writes the CLI configuration that installs
  providers from the mirror only, and runs ``terraform`` there;
- :func:`moto_override` is the provider override that points the example at a moto server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jitr_core.testing.environment import deadline_s, require_tool, unavailable

ROOT = Path(__file__).resolve().parents[3]
MODULE = ROOT / "infra" / "aws" / "terraform"
EXAMPLE = ROOT / "examples" / "aws"
PROVIDER = Path("registry.terraform.io") / "hashicorp" / "aws"
KNOWN_MIRRORS = (
    Path("/opt/tf-plugins"),
    Path.home() / ".terraform.d" / "plugins",
    Path("/usr/share/terraform/plugins"),
)
# Every service the module's resources call, pointed at moto.
SERVICES = (
    "apigateway", "apigatewayv2", "cloudwatch", "cloudwatchlogs", "dynamodb", "ec2", "events", "iam", "kms",
    "lambda", "scheduler", "secretsmanager", "sns", "sqs", "ssm", "sts",
)  # fmt: skip


def terraform_binary() -> str:
    return require_tool("terraform", "https://developer.hashicorp.com/terraform/install")


def plugin_mirror() -> Path:
    """A filesystem mirror holding hashicorp/aws: ``JITR_TERRAFORM_PLUGIN_MIRROR`` or a known location."""
    configured = os.environ.get("JITR_TERRAFORM_PLUGIN_MIRROR")
    candidates = [Path(configured)] if configured else list(KNOWN_MIRRORS)
    for candidate in candidates:
        if (candidate / PROVIDER).is_dir() and any((candidate / PROVIDER).iterdir()):
            return candidate
    unavailable(
        f"no Terraform provider mirror with hashicorp/aws in {', '.join(str(c) for c in candidates)} "
        "(set JITR_TERRAFORM_PLUGIN_MIRROR; `terraform providers mirror DIR` makes one)"
    )


def moto_override(endpoint: str) -> str:
    """An ``*_override.tf`` for the example's provider: every service at ``endpoint``, no AWS account checks."""
    endpoints = "\n".join(f'    {service} = "{endpoint}"' for service in SERVICES)
    return f"""provider "aws" {{
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {{
{endpoints}
  }}
}}
"""


class Workspace:
    """A copy of the module and the example under ``root``, with an offline Terraform CLI configuration."""

    def __init__(self, root: Path) -> None:
        self.terraform = terraform_binary()
        mirror = plugin_mirror()
        self.root = root
        shutil.copytree(MODULE, root / "infra" / "aws" / "terraform", ignore=_IGNORED)
        shutil.copytree(EXAMPLE, root / "examples" / "aws", ignore=_IGNORED)
        self.module = root / "infra" / "aws" / "terraform"
        self.example = root / "examples" / "aws"
        self.cli_config = root / "terraformrc"
        self.cli_config.write_text(
            f'provider_installation {{\n  filesystem_mirror {{\n    path    = "{mirror}"\n'
            f'    include = ["registry.terraform.io/*/*"]\n  }}\n}}\n'
        )
        self.plugin_cache = root / "plugin-cache"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "AWS_"))}
        return {
            **keep,
            "TF_CLI_CONFIG_FILE": str(self.cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
            **(extra or {}),
        }

    def run(
        self, directory: Path, *args: str, timeout_s: float = 300, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``terraform args...`` in ``directory``; fails with Terraform's output when it exits non-zero."""
        done = subprocess.run(
            [self.terraform, *args],
            cwd=directory,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=deadline_s(timeout_s),
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} failed ({done.returncode}) in {directory}:\n{_tail(done.stdout)}\n"
                f"{_tail(done.stderr)}"
            )
        return done

    def init(self, directory: Path) -> None:
        self.run(directory, "init", "-backend=false", "-no-color", "-input=false", timeout_s=180)

    def apply(self, directory: Path, var_file: Path, parallelism: int = 20) -> dict[str, Any]:
        """``terraform apply`` and the outputs (their values)."""
        self.run(
            directory, "apply", "-auto-approve", "-no-color", f"-var-file={var_file}", f"-parallelism={parallelism}",
            timeout_s=600,
        )  # fmt: skip
        shown = self.run(directory, "output", "-json", "-no-color")
        return {name: value["value"] for name, value in json.loads(shown.stdout).items()}

    def destroy(self, directory: Path, var_file: Path, parallelism: int = 20) -> None:
        self.run(
            directory, "destroy", "-auto-approve", "-no-color", f"-var-file={var_file}", f"-parallelism={parallelism}",
            timeout_s=600,
        )  # fmt: skip

    def state_resources(self, directory: Path) -> list[str]:
        return [line for line in self.run(directory, "state", "list").stdout.splitlines() if line]


def write_tfvars(path: Path, values: Mapping[str, Any]) -> Path:
    """A ``*.tfvars.json`` file (JSON: no quoting of HCL by hand)."""
    path.write_text(json.dumps(values, indent=2))
    return path


def _IGNORED(directory: str, names: Sequence[str]) -> list[str]:
    return [n for n in names if n in (".terraform", ".terraform.lock.hcl", "terraform.tfstate", "terraform.tfvars")]


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])
