"""SnapStart: the handler module builds the app during a SnapStart INIT and reseeds ``random`` after a restore.

Each case imports ``jitr_functions.aws`` in a fresh interpreter, as Lambda's INIT does; a stand-in
``snapshot_restore_py`` (the library Lambda's Python runtime ships) records the hooks registered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HOOKS = """
registered = []
def register_after_restore(func, *args, **kwargs):
    registered.append(func)
    return func
"""
PROBE = """
import json, random, sys
sys.path.insert(0, sys.argv[1])
from jitr_functions import app, aws
try:
    import snapshot_restore_py
    hooks = snapshot_restore_py.registered
except ImportError:
    hooks = None
result = {"built": app._APP is not None, "hooks": None if hooks is None else len(hooks),
          "modules": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}
if hooks:
    state = random.getstate()
    for hook in hooks:
        hook()
    result["reseeded"] = random.getstate() != state
print(json.dumps(result))
"""
GITHUB_CLIENT = ["jitr_github.client", "requests", "jwt"]  # the client's module and the libraries it loads
WATCHED = ["boto3", "jitr_aws.sqs", "jitr_aws.ec2", *GITHUB_CLIENT]
SETTINGS = {
    "JITR_PROVIDER": "aws",
    "JITR_AWS_REGION": "eu-west-1",
    "JITR_AWS_TABLE": "jitr",
    "JITR_AWS_JOBS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/jitr-jobs",
    "JITR_AWS_LIFECYCLE_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/jitr-lifecycle",
    "JITR_GITHUB_APP_ID": "1",
    "JITR_SECRETS_WEBHOOK_SECRET": "jitr/webhook",
    "JITR_POOLS": json.dumps([{"name": "linux", "labels": ["self-hosted", "linux"], "machine_types": ["m7i.large"]}]),
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def init(tmp_path: Path, hooks: bool, **env: str) -> dict[str, object]:
    """Import the handler module the way Lambda's INIT does, with ``env``; what it did."""
    library = tmp_path / "runtime"
    library.mkdir()
    if hooks:
        (library / "snapshot_restore_py.py").write_text(HOOKS)
    done = subprocess.run([sys.executable, "-c", PROBE, str(library), json.dumps(WATCHED)], capture_output=True,
                          text=True, timeout=120, env={"PATH": os.environ.get("PATH", ""), **SETTINGS, **env},
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "handler,modules",
    [
        ("jitr_functions.aws.webhook", ["boto3", "jitr_aws.sqs"]),
        ("jitr_functions.aws.scaleup", ["boto3", "jitr_aws.sqs", "jitr_aws.ec2", *GITHUB_CLIENT]),
    ],
)
def test_a_snapstart_init_builds_the_app_and_imports_what_the_function_uses(
    tmp_path: Path, handler: str, modules: list[str]
) -> None:
    result = init(tmp_path, hooks=True, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start", _HANDLER=handler)

    assert result == {"built": True, "hooks": 1, "modules": modules, "reseeded": True}


def test_without_the_runtime_hooks_library_the_init_still_builds_the_app(tmp_path: Path) -> None:
    result = init(tmp_path, hooks=False, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start", _HANDLER="x.webhook")

    assert result["built"] is True and result["hooks"] is None


def test_an_on_demand_init_leaves_everything_to_the_first_invocation(tmp_path: Path) -> None:
    result = init(tmp_path, hooks=True, AWS_LAMBDA_INITIALIZATION_TYPE="on-demand", _HANDLER="x.scaleup")

    assert result == {"built": False, "hooks": 0, "modules": []}
