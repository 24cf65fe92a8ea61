"""``jitr bundle aws``: the zip is deterministic and complete, and every handler runs from it alone.

The bundle is built for python3.12 on x86_64 (pip downloads the manylinux wheels from PyPI), unpacked
into an empty directory, and run by a python3.12 child process whose path holds only the bundle and,
as Lambda's runtime provides them, boto3 and its own dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from conftest_aws import LABELS, Deployment, event, queued_payload, signed
from jitr_core.messages import JobMessage, LifecycleMessage, decode, encode
from jitr_core.testing.environment import unavailable
from jitr_functions.app import get_app
from jitr_functions.bundle_aws import FUNCTIONS, write_zip

pytest_plugins = ["conftest_aws"]

# What Lambda's Python runtime ships besides the standard library (the bundle leaves these out).
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six")
NETWORK_FAILURES = ("No matching distribution", "Could not find a version", "NewConnectionError", "Temporary failure")
DRIVER = """
import json, sys, time
started = time.perf_counter()
bundle, runtime, name, request_id = sys.argv[1:5]
sys.path[:0] = [bundle]
sys.path.append(runtime)
from jitr_functions import aws
class Context:
    aws_request_id = request_id
result = getattr(aws, name)(json.loads(sys.stdin.read()), Context())
import jitr_functions
print(json.dumps({"result": result, "origin": jitr_functions.__file__, "modules": sorted(sys.modules),
                  "seconds": time.perf_counter() - started}))
"""
PLUGINS = """
import sys
sys.path[:0] = [sys.argv[1]]
from jitr_functions.cli import main
sys.exit(main(["plugins", "--json"]))
"""


def python_312() -> str | None:
    """A working python3.12 interpreter: on PATH, or one of pyenv's versions."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which("python3.12"), *map(str, sorted(root.glob("versions/3.12*/bin/python3.12")))]
    probe = "import sys; print(sys.version_info[:2]); print(sys.executable)"
    for candidate in filter(None, candidates):
        done = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, check=False)
        lines = done.stdout.split("\n")
        if done.returncode == 0 and lines[0] == "(3, 12)":
            return lines[1]  # the interpreter itself, not a shim that needs this environment
    return None


@pytest.fixture(scope="session")
def bundle_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lambda") / "jitr.zip"
    jitr = Path(sys.executable).with_name("jitr")
    found = python_312()
    if found is None:
        unavailable("no python3.12 interpreter to compile the python3.12 bundle's bytecode with")
    path = tmp_path_factory.mktemp("path")  # python3.12 on the PATH, as the bundle looks for it
    (path / "python3.12").symlink_to(found)
    env = {**os.environ, "PATH": f"{path}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(jitr), "bundle", "aws", "--python", "3.12", "--arch", "x86_64", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, check=False, env=env)  # fmt: skip
    if done.returncode != 0 and any(failure in done.stderr for failure in NETWORK_FAILURES):
        unavailable(f"pip could not download the Lambda wheels from PyPI: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    assert "MB zipped (within the 8 MB target)" in done.stdout, done.stdout
    assert all(f"jitr_functions.aws.{name}" in done.stdout for name in FUNCTIONS)
    assert "bytecode: compiled for python3.12" in done.stdout, done.stdout
    return out


@pytest.fixture(scope="session")
def bundle_dir(bundle_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(bundle_zip) as archive:
        archive.extractall(target)
    return target


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """boto3 and what it needs, from this environment, as Lambda's runtime puts them on the path."""
    target = tmp_path_factory.mktemp("runtime")
    for name in RUNTIME_MODULES:
        module = __import__(name)
        source = Path(module.__file__).parent if module.__file__.endswith("__init__.py") else Path(module.__file__)
        (target / source.name).symlink_to(source)
    return target


@pytest.fixture(scope="session")
def python312() -> str:
    found = python_312()
    if found is None:
        unavailable("no python3.12 interpreter to run the python3.12 bundle with")
    return found


def test_the_zip_is_sorted_timestamped_and_rebuilds_identically(bundle_zip: Path, bundle_dir: Path,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    with zipfile.ZipFile(bundle_zip) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    write_zip(bundle_dir, tmp_path / "a.zip")
    write_zip(bundle_dir, tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_the_bundle_keeps_entry_points_and_leaves_out_the_runtime_and_other_clouds(bundle_dir: Path) -> None:
    tops = {path.name for path in bundle_dir.iterdir()}
    assert {"jitr_core", "jitr_github", "jitr_functions", "jitr_aws", "pluggy", "requests", "jwt"} <= tops
    (aws_metadata,) = bundle_dir.glob("jitr_aws-*.dist-info")
    assert aws_metadata.name == f"jitr_aws-{metadata.version('jitr-aws')}.dist-info"
    assert "aws = jitr_aws.plugin" in (aws_metadata / "entry_points.txt").read_text()
    assert not tops & {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "jitr_gcp", "bin"}
    assert not list(bundle_dir.rglob("direct_url.json"))


def test_the_bundle_carries_reproducible_bytecode_for_its_runtime_only(bundle_dir: Path) -> None:
    """Lambda's /var/task is read-only: without bytecode in the zip, every cold start compiles every import."""
    pycs = list(bundle_dir.rglob("*.pyc"))
    assert pycs and all(p.parent.name == "__pycache__" and p.name.endswith(".cpython-312.pyc") for p in pycs)
    # flags 0b01: hash-based and not checked against the source (PEP 552), so no timestamps
    assert {int.from_bytes(p.read_bytes()[4:8], "little") for p in pycs} == {0b01}
    for module in ("jitr_functions/aws.py", "jitr_core/webhook.py", "jitr_aws/plugin.py", "pluggy/_hooks.py"):
        source = bundle_dir / module
        assert (source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc").is_file(), module


def test_plugin_discovery_sees_aws_from_the_bundle(bundle_dir: Path, python312: str) -> None:
    done = subprocess.run([python312, "-I", "-S", "-c", PLUGINS, str(bundle_dir)], capture_output=True, text=True,
                          check=False, env={"PATH": os.environ.get("PATH", "")})  # fmt: skip
    assert done.returncode == 0, done.stderr
    plugins = {plugin["name"]: plugin for plugin in json.loads(done.stdout)}
    assert plugins["aws"]["distribution"] == "jitr-aws"
    assert "jitr_launch_vm" in plugins["aws"]["hooks"]
    assert "gcp" not in plugins


@pytest.fixture
def invoke(
    bundle_dir: Path, runtime_dir: Path, python312: str, deployment: Deployment
) -> Iterator[Any]:  # fmt: skip
    """Run one handler in a fresh python3.12 process (a cold start) with only the bundle and the runtime."""

    def run(name: str, payload: dict[str, Any]) -> dict[str, Any]:
        command = [python312, "-I", "-S", "-c", DRIVER, str(bundle_dir), str(runtime_dir), name, str(uuid.uuid4())]
        done = subprocess.run(command, input=json.dumps(payload), capture_output=True, text=True, timeout=120,
                              env={**deployment.env, "PATH": os.environ.get("PATH", "")}, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        *metric_lines, last = done.stdout.splitlines()  # the handler's EMF metric lines, then the driver's answer
        assert all("_aws" in json.loads(line) for line in metric_lines), metric_lines
        answer: dict[str, Any] = json.loads(last)
        assert answer["origin"].startswith(str(bundle_dir))
        return answer

    yield run


def test_every_handler_runs_from_the_bundle(deployment: Deployment, invoke: Any) -> None:
    request = signed(event("lambdaFunctionUrlEvent.json"), queued_payload(), str(uuid.uuid4()), base64_body=True)

    webhook = invoke("webhook", request)
    assert webhook["result"]["statusCode"] == 202, webhook["result"]
    assert not {"requests", "jwt", "cryptography"} & {m.split(".")[0] for m in webhook["modules"]}
    [message] = deployment.take(deployment.jobs_url)
    assert isinstance(decode(message["Body"]), JobMessage)

    deployment.sim.set_webhook(None, None)
    job_id = deployment.sim.queue_job("octo-org/api", LABELS)
    scaleup = invoke("scaleup", deployment.bodies_event(deployment.job_message(job_id)))
    assert scaleup["result"] == {"batchItemFailures": []}
    [instance] = deployment.instances()
    assert instance["tags"]["jitr-runner"] == deployment.runner_name(job_id)

    started = LifecycleMessage(action="in_progress", job_id=job_id, run_id=1, repository="octo-org/api",
                               owner="octo-org", installation_id=deployment.installation_id, labels=tuple(LABELS),
                               runner_name=deployment.runner_name(job_id))  # fmt: skip
    lifecycle = invoke("lifecycle", deployment.bodies_event(encode(started).body, queue="lifecycle"))
    assert lifecycle["result"] == {"batchItemFailures": []}
    assert get_app().backend.load("runner", deployment.runner_name(job_id)).state == "busy"

    for name in ("scaledown", "rebalancer"):
        report = invoke(name, event("example-eventbridge-schedule.json"))["result"]
        assert isinstance(report, dict) and "skipped" not in report, report
