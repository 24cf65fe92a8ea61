"""A third-party plugin that fails to load takes down only what needs it: the Lambda webhook keeps
answering, scaleup retries naming the plugin (and ``jitr serve`` dead-letters the job with that
reason after its last try), and ``jitr plugins`` marks it."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import uuid
from pathlib import Path

import pytest
from conftest_aws import LABELS, Deployment, event, queued_payload, signed
from e2e_support import POOL, QUIET, dead_letters, queue_jobs, running_vms, wait_for
from fake_plugin import install_fake_plugin
from jitr_core.logs import JsonFormatter
from jitr_functions import aws
from jitr_functions.cli import main

pytest_plugins = ["conftest_aws"]


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed startup-script plugin whose module raises at import."""
    site = tmp_path / "site"
    install_fake_plugin(monkeypatch, site, "jitr-mirror-broken", "mirror", module="jitr_mirror_broken")
    (site / "jitr_mirror_broken.py").write_text("raise ImportError('the mirror SDK is missing')\n")
    monkeypatch.delitem(sys.modules, "jitr_mirror_broken", raising=False)
    return "mirror"


def test_jitr_plugins_lists_the_healthy_plugins_and_marks_the_broken_one(
    broken: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "--json"]) == 1
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert plugins[broken]["error"] == "ImportError: the mirror SDK is missing"
    assert plugins["embedded"]["error"] == "" and "jitr_launch_vm" in plugins["embedded"]["hooks"]

    assert main(["plugins"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^mirror +jitr-mirror-broken 1\.0 \[BROKEN\]$", out, re.MULTILINE), out
    assert "failed to load: ImportError: the mirror SDK is missing" in out and "[built-in]" in out


def test_the_webhook_works_and_scaleup_retries_naming_the_plugin(broken: str, deployment: Deployment) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("jitr").addHandler(handler)
    try:
        answer = aws.webhook(signed(event("lambdaFunctionUrlEvent.json"), queued_payload(), str(uuid.uuid4())), None)
        assert answer["statusCode"] == 202, answer

        deployment.take(deployment.jobs_url)  # the example delivery's message: its job is not on the simulator
        job_id = deployment.sim.queue_job("octo-org/api", LABELS)
        result = aws.scaleup(deployment.bodies_event(deployment.job_message(job_id)), None)
    finally:
        logging.getLogger("jitr").removeHandler(handler)

    assert len(result["batchItemFailures"]) == 1  # left for SQS to redeliver, then its dead-letter queue
    assert deployment.instances() == []
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    loaded = [line for line in lines if line["message"].startswith("plugin failed to load")]
    assert [(line["plugin"], line["error"]) for line in loaded] == [(broken, "ImportError: the mirror SDK is missing")]
    retried = [line for line in lines if line["message"] == "message will be retried"]
    assert retried and "plugin 'mirror' (jitr-mirror-broken 1.0) failed to load" in retried[0]["reason"]


def test_jitr_serve_dead_letters_the_job_naming_the_plugin_after_its_last_try(broken: str, e2e_sandbox) -> None:
    sandbox = e2e_sandbox(pools=[POOL], installations={"octo-org": ["api"]}, intervals=QUIET)
    [job] = queue_jobs(sandbox, 1)

    [(body, reason)] = wait_for(lambda: dead_letters(sandbox, "jobs"), 60, "the job to be dead-lettered")
    assert json.loads(body)["job_id"] == job
    assert reason.startswith("failed on its last try: ") and "plugin 'mirror' (jitr-mirror-broken 1.0)" in reason
    assert running_vms(sandbox) == {}
