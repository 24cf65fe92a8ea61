"""pytest fixtures for the Cloud Run tests (load with ``pytest_plugins = ["conftest_gcp"]``): a bundle
written by ``jitr bundle gcp``, the emulators from ``jitr_gcp.testing`` and a fresh deployment per test."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from gcp_support import POOL, WEBHOOK_SECRET, Deployment, bytecode_env, stop_servers
from jitr_core.settings import Settings
from jitr_gcp import pubsub
from jitr_gcp.config import gcp_config
from jitr_gcp.testing import fixtures
from jitr_gcp.testing.backend import PROJECT, gcp_backend, queue_names
from jitr_gcp.testing.compute_fake import FakeCompute
from jitr_gcp.testing.emulators import Emulator
from jitr_gcp.testing.secretmanager_fake import FakeSecretManager
from jitr_github.simulator import GitHubSimulator

pubsub_emulator = fixtures.pubsub_emulator
firestore_emulator = fixtures.firestore_emulator


@pytest.fixture(scope="session")
def gcp_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source directory written by ``jitr bundle gcp`` (the jitr command of this environment).

    Written once per run: the pytest-xdist workers take turns on a lock in the run's base
    directory and the first writes it (seconds of CPU each time). Tests only read it.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's base is a directory in the run's base
        root = root.parent
    root = root / "jitr-gcp-bundle"
    root.mkdir(exist_ok=True)
    out = root / "functions"
    with (root / "lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "written").exists():
            shutil.rmtree(out, ignore_errors=True)  # a worker that failed here left a part
            done = subprocess.run(
                [str(Path(sys.executable).with_name("jitr")), "bundle", "gcp", "--out", str(out)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
            (root / "written").touch()
    return out


@pytest.fixture
def deployment(
    pubsub_emulator: Emulator,
    firestore_emulator: Emulator,
    gcp_bundle: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Deployment]:
    """Fresh topics, collection, fakes and simulator per test; function servers are stopped after it.

    What each function process wrote (its log lines and any traceback) is attached to the test's
    report, so a failed test shows why a function answered as it did.
    """
    suffix = uuid.uuid4().hex[:8]
    compute = FakeCompute(PROJECT, ("us-central1-a",))
    secrets = FakeSecretManager()
    sim = GitHubSimulator()
    compute.start()
    secrets.start()
    api_url = sim.start()
    installation_id = sim.add_installation("octo-org", "Organization", repos=["api"])
    secrets.put(PROJECT, "webhook-secret", WEBHOOK_SECRET)
    secrets.put(PROJECT, "github-app-key", sim.private_key_pem)
    gcp = {
        "project": PROJECT,
        "zones": "us-central1-a",
        "compute_endpoint": compute.url,
        "secretmanager_endpoint": secrets.url,
        "firestore_collection": f"jitr-{suffix}",
        **queue_names(suffix),
    }
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator.host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        **bytecode_env(),
        "JITR_PROVIDER": "gcp",
        "JITR_CLAIM_TIMEOUT_S": "2",
        "JITR_POOLS": json.dumps([POOL]),
        "JITR_GITHUB_APP_ID": str(sim.app_id),
        "JITR_GITHUB_API_URL": api_url,
        "JITR_SECRETS_WEBHOOK_SECRET": "webhook-secret",
        "JITR_SECRETS_GITHUB_APP_PRIVATE_KEY": "github-app-key",
        **{f"JITR_GCP_{key.upper()}": value for key, value in gcp.items()},
    }
    settings = Settings.from_env(env)
    pubsub.ensure_topology(gcp_config(settings))
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    deployment = Deployment(env, settings, gcp_backend(settings), sim, compute, gcp_bundle, log_dir, installation_id)
    try:
        yield deployment
    finally:
        stop_servers(deployment.servers)
        for server in deployment.servers:
            lines = server.log_text().splitlines()
            request.node.add_report_section(
                "teardown", f"function {server.log_path.name} (last 200 lines)", "\n".join(lines[-200:])
            )
        sim.stop()
        compute.stop()
        secrets.stop()
