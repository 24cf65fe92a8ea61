"""The provisioning scripts, run in their dry mode in a temporary root with fakes on PATH.

``JITR_DRY_RUN=1`` records every command that would change the system after checking that it
exists, so each family's branch runs end to end and a misspelt command or variable fails here.
The runner download is real: the fake server of :mod:`jitr_core.testing.sandbox` serves a fake
runner tarball and the build checks it against the pinned table it is given.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from jitr_core.testing.environment import deadline_s
from jitr_core.testing.sandbox import FakeCloud, Sandbox, fake_cloud, runner_tarball, sha256

SCRIPTS = Path(__file__).resolve().parents[1] / "packer" / "scripts"
VERSION = "2.336.0"
TARBALL = runner_tarball(VERSION)
OS_RELEASE = {
    "aws": 'ID="amzn"\nPRETTY_NAME="Amazon Linux 2023"\n',
    "gcp": 'ID=ubuntu\nPRETTY_NAME="Ubuntu 24.04 LTS"\n',
}
FAKES = ("usermod", "gpg", "rpm", "dpkg-query", "apt-get", "dnf")
TOOLS = {"actions-runner", "git", "git-lfs", "jq", "yq", "docker", "docker-compose", "docker-buildx", "python3", "node"}
TOOLS |= {"go", "kubectl", "helm", "gh", "yamllint"}


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with fake_cloud() as served:
        for arch in ("x64", "arm64"):
            served.serve_release(VERSION, arch, TARBALL)
        yield served


Provisioned = tuple[Sandbox, subprocess.CompletedProcess[str]]


def provision(tmp_path: Path, cloud: FakeCloud, provider: str, arch: str, pin: str) -> Provisioned:
    box = Sandbox(tmp_path, cloud, extra_fakes={name: "" for name in FAKES})
    (box.root / "etc/ssh").mkdir(parents=True)
    (box.root / "etc/ssh/ssh_host_ed25519_key").write_text("build host key")
    (box.root / "etc/machine-id").write_text("0123456789abcdef\n")
    (box.root / "var/lib/cloud/instances/i-build").mkdir(parents=True)
    (box.root / "etc/os-release").write_text(OS_RELEASE[provider])
    checksums = tmp_path / "runner-checksums.txt"
    checksums.write_text(f"{VERSION} {arch} {pin}\n")
    env = {
        **box.env(),
        "JITR_ROOT": str(box.root),
        "JITR_DRY_RUN": "1",
        "JITR_CLOUD": provider,
        "JITR_RUNNER_VERSION": VERSION,
        "JITR_RUNNER_ARCH": arch,
        "JITR_RUNNER_CHECKSUMS": str(checksums),
    }
    result = subprocess.run(
        [str(box.bin / "bash"), str(SCRIPTS / "provision.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=deadline_s(60),
    )
    return box, result


@pytest.mark.parametrize("arch", ["x64", "arm64"])
@pytest.mark.parametrize("provider", ["aws", "gcp"])
def test_a_dry_build_walks_every_step_of_its_family(tmp_path: Path, cloud: FakeCloud, provider: str, arch: str) -> None:
    box, result = provision(tmp_path, cloud, provider, arch, sha256(TARBALL))
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [line.removeprefix("dry-run: ") for line in result.stdout.splitlines() if line.startswith("dry-run: ")]
    manager, agent = ("dnf", "amazon-cloudwatch-agent") if provider == "aws" else ("apt-get", "google-cloud-ops-agent")
    assert any(s.startswith(f"{manager} ") and " docker" in s for s in steps)
    assert any(s.startswith(f"{manager} ") and s.endswith(f" {agent}") for s in steps)
    assert f"systemctl disable {agent}" in steps and f"systemctl enable {agent}" not in steps
    assert any(s.endswith("awscli-2" if provider == "aws" else "google-cloud-cli") for s in steps)
    assert "useradd --create-home --shell /bin/bash runner" in steps and "usermod -aG docker runner" in steps
    machine = {"x64": ("amd64", "x86_64"), "arm64": ("arm64", "aarch64")}[arch]
    downloads = [s.split()[-1] for s in steps if s.startswith("curl ") and " -o " in s]
    assert f"https://dl.k8s.io/release/v1.31.4/bin/linux/{machine[0]}/kubectl" in downloads
    assert any(d.endswith(f"docker-compose-linux-{machine[1]}") for d in downloads)
    assert any(d.endswith(f"node-v22.12.0-linux-{arch}.tar.xz") for d in downloads)
    assert (box.root / "opt/jitr/prebaked-runner-version").read_text() == f"{VERSION}\n"
    assert (box.root / "opt/actions-runner/run.sh").exists()
    assert [r["path"] for r in cloud.requests_to("github.com")][-1].endswith(f"-linux-{arch}-{VERSION}.tar.gz")
    manifest = json.loads((box.root / "opt/jitr/image-manifest.json").read_text())
    os_name = OS_RELEASE[provider].split('"')[-2]
    assert manifest["image"] == {"arch": arch, "cloud": provider, "os": os_name, "runner_version": VERSION}
    assert set(manifest["tools"]) >= TOOLS and manifest["tools"]["actions-runner"] == VERSION
    assert not list((box.root / "etc/ssh").glob("ssh_host_*"))
    assert (box.root / "etc/machine-id").read_text() == ""
    assert not (box.root / "var/lib/cloud/instances").exists()


def test_a_runner_that_differs_from_the_pin_stops_the_build(tmp_path: Path, cloud: FakeCloud) -> None:
    box, result = provision(tmp_path, cloud, "gcp", "x64", "0" * 64)
    assert result.returncode != 0
    assert f"runner {VERSION} (x64) does not match its pinned SHA-256 {'0' * 64}" in result.stderr
    assert not (box.root / "opt/jitr/prebaked-runner-version").exists()
