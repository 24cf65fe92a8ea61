"""Reading the GCP module and its example: HCL parsed with python-hcl2, and the module's variable-only
files (variables.tf, settings.tf, permissions.tf, networks.tf) evaluated by ``terraform console`` with the
example's values, so the settings and grants tested are the ones Terraform would compute."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
from jitr_core.testing.environment import deadline_s, require_tool

ROOT = Path(__file__).resolve().parents[3]
MODULE = ROOT / "infra" / "gcp" / "terraform"
EXAMPLE = ROOT / "examples" / "gcp"
INDEXES = ROOT / "packages" / "jitr-gcp" / "src" / "jitr_gcp" / "firestore.indexes.json"
# The module's files that reference variables and locals only (no resource or data source), so
# `terraform console` can evaluate them without the Google provider.
PROVIDERLESS = ("variables.tf", "settings.tf", "permissions.tf", "networks.tf")
_VAR_REF = re.compile(r"^\$\{var\.([a-z_][a-z0-9_]*)\}$")
# The project number of a deployment whose inputs do not give one: the broker, there unless every
# pool says handoff = "metadata", is reached at a URL built from it.
PROJECT_NUMBER = "123456789012"


def load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        data: dict[str, Any] = hcl2.load(handle)
    return data


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted (``'"text"'``); the plain values."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:  # a heredoc: raw newlines inside the quotes
            return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


def blocks(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """``variable``/``output``/``module`` blocks of a parsed file, by name."""
    return {unquote(name): body for block in data.get(kind, []) for name, body in block.items()}


def resources(directory: Path = MODULE) -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource and data source of a module, keyed by (type, name); data sources as ``data.TYPE``."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        data = load(path)
        for kind, prefix in (("resource", ""), ("data", "data.")):
            for block in data.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        found[(prefix + unquote(rtype), unquote(name))] = body
    return found


def example_inputs() -> dict[str, Any]:
    """The module's inputs as examples/gcp passes them, with terraform.tfvars.example filled in."""
    tfvars = unquote(load(EXAMPLE / "terraform.tfvars.example"))
    defaults = {
        name: unquote(body["default"])
        for name, body in blocks(load(EXAMPLE / "variables.tf"), "variable").items()
        if "default" in body
    }
    call = blocks(load(EXAMPLE / "main.tf"), "module")["jitr"]
    inputs: dict[str, Any] = {}
    for name, value in call.items():
        if name in ("source", "__is_block__"):
            continue
        match = _VAR_REF.match(value) if isinstance(value, str) else None
        if match:
            inputs[name] = tfvars.get(match.group(1), defaults.get(match.group(1)))
        else:
            inputs[name] = unquote(value)
    return inputs


def deployed_inputs() -> dict[str, Any]:
    """The example's inputs with a ``project_number`` (examples/gcp's own, when it gives one): what a
    deployment with the broker, the default handoff, must give."""
    inputs = example_inputs()
    if inputs.get("project_number") is None:
        inputs["project_number"] = PROJECT_NUMBER
    return inputs


def metadata_inputs() -> dict[str, Any]:
    """The example's inputs with every pool on ``handoff = "metadata"``: no broker, no project number needed."""
    inputs = example_inputs()
    return {**inputs, "pools": [{**pool, "handoff": "metadata"} for pool in inputs["pools"]]}


class TerraformError(AssertionError):
    pass


def evaluate(expression: str, inputs: dict[str, Any]) -> Any:
    """``expression`` (JSON-encoded by Terraform) over the module's provider-less files and ``inputs``."""
    terraform = require_tool("terraform", "https://developer.hashicorp.com/terraform/install")
    return _evaluate(terraform, expression, json.dumps(inputs, sort_keys=True))


@cache
def _evaluate(terraform: str, expression: str, inputs_json: str) -> Any:
    with tempfile.TemporaryDirectory(prefix="gcp-iac-") as work:
        root = Path(work) / "terraform"
        root.mkdir()
        for name in PROVIDERLESS:
            shutil.copy(MODULE / name, root / name)
        # path.module must resolve as it does in the module (the index file's default path).
        (root / "terraform.tfvars.json").write_text(inputs_json)
        env = {
            **os.environ,
            "TF_IN_AUTOMATION": "1",
            "CHECKPOINT_DISABLE": "1",
            "TF_CLI_CONFIG_FILE": os.devnull,
        }
        done = subprocess.run(
            [terraform, "console"],
            input=f"jsonencode({expression})\n",
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=deadline_s(60),
            check=False,
        )
    if done.returncode != 0:
        raise TerraformError(f"terraform console failed on {expression}:\n{done.stdout}\n{done.stderr}")
    return json.loads(json.loads(done.stdout.strip()))
