"""The example third-party plugin (examples/jitr-docker-mirror), installed the way a user installs it.

pip installs it into a directory of its own that this module's processes put on their path, so
tests running beside these in other workers never see it come and go. Installed, it is listed by
``jitr plugins``, its step appears in the ``pre_run`` phase of ``jitr render-startup-script``, it
and its entry point are in a rebuilt Lambda bundle, the rendered EC2 script runs with it
in the startup-script sandbox, and its own tests pass.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from jitr_core.testing.environment import deadline_s, require_tool, unavailable
from jitr_core.testing.sandbox import FakeCloud, Sandbox, fake_cloud

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "jitr-docker-mirror"
DIST = "jitr-docker-mirror"
MIRROR = "https://mirror.example.com"
CONFIG = f"""
provider = "aws"

[aws]
region = "eu-west-1"

[[pools]]
name = "linux"
labels = ["self-hosted", "linux"]
machine_types = ["m7i.large"]
options = {{ docker_mirror = "{MIRROR}" }}
"""
pytestmark = pytest.mark.skipif(not EXAMPLE.is_dir(), reason="examples/ is not beside this package (not a checkout)")


def _installer() -> list[str]:
    """pip where the venv has it, else uv (nox's uv-made venvs come without pip)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    return [require_tool("uv", "the venv has no pip; pip install uv"), "pip"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed example, as ``pip install --target`` leaves it."""
    target = tmp_path_factory.mktemp("site")
    installer = _installer()
    python = ["--python", sys.executable] if installer[0] != sys.executable else []
    subprocess.run(
        [*installer, "install", *python, "--no-deps", "--target", str(target), str(EXAMPLE)],
        check=True,
        capture_output=True,
        timeout=deadline_s(300),
    )
    return target


def _env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def jitr(site: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "jitr_functions", *args],
        capture_output=True,
        text=True,
        timeout=deadline_s(60),
        env=_env(site),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def script(site: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    config = tmp_path_factory.mktemp("config") / "jitr.toml"
    config.write_text(CONFIG)
    return jitr(site, "render-startup-script", "--pool", "linux", "--config", str(config))


def test_jitr_plugins_lists_it(site: Path) -> None:
    plugins = {p["name"]: p for p in json.loads(jitr(site, "plugins", "--json"))}
    assert plugins["docker-mirror"]["distribution"] == DIST
    assert plugins["docker-mirror"]["hooks"] == ["jitr_render_startup_script"]
    assert not plugins["docker-mirror"]["builtin"]


def test_its_step_is_rendered_in_the_pre_run_phase(script: str) -> None:
    assert script.index("# --- install") < script.index("# --- pre_run") < script.index("# from docker-mirror")
    assert script.index("# from docker-mirror") < script.index("# --- run")
    assert base64.b64encode(MIRROR.encode()).decode() in script and MIRROR not in script


def test_a_rebuilt_lambda_bundle_carries_it(site: Path, tmp_path: Path) -> None:
    pytest.importorskip("jitr_aws")
    out = tmp_path / "lambda.zip"
    command = ["bundle", "aws", "--python", "3.12", "--arch", "x86_64", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "jitr_functions", *command],
        capture_output=True,
        text=True,
        timeout=deadline_s(600),
        env=_env(site),
    )
    if done.returncode != 0 and "No matching distribution" in done.stderr:
        unavailable(f"pip could not download the Lambda wheels from PyPI: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as bundle:
        names = bundle.namelist()
        (entry_points,) = [n for n in names if n.startswith("jitr_docker_mirror-") and n.endswith("/entry_points.txt")]
        assert "docker-mirror = jitr_docker_mirror" in bundle.read(entry_points).decode()
    assert "jitr_docker_mirror/__init__.py" in names


def test_the_rendered_script_runs_with_it(script: str, tmp_path: Path) -> None:
    with fake_cloud() as cloud:
        box = Sandbox(tmp_path, cloud, prebaked_version="2.336.0", docker=True)
        outcome = box.run(script)
    assert json.loads((box.root / "etc/docker/daemon.json").read_text()) == {"registry-mirrors": [MIRROR]}
    restart = outcome.calls.index("systemctl restart docker")
    assert restart < outcome.calls.index("run.sh ") < outcome.calls.index("shutdown -h now")
    assert outcome.called("aws") == [  # the runner's exit report, then the instance ends itself
        f"aws ec2 create-tags --region {FakeCloud.region} --resources {FakeCloud.instance_id}"
        " --tags Key=jitr-runner-exit,Value=no-job",
        f"aws ec2 terminate-instances --region {FakeCloud.region} --instance-ids {FakeCloud.instance_id}",
    ]


def test_its_own_tests_pass(site: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        timeout=deadline_s(120),
        cwd=EXAMPLE,
        env=_env(site),
    )
    assert done.returncode == 0, done.stdout[-3000:]


def test_the_rendered_script_passes_shellcheck(script: str) -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    done = subprocess.run([shellcheck, "-s", "bash", "-"], input=script, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
