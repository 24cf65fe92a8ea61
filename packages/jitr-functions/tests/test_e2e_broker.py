"""The broker handoff end to end on ``jitr serve``: local-process VMs pull their JIT config.

A deployment here is the embedded backend with real local VMs (each runs its startup script and
then the simulator's runner agent), the local runtime's HTTP server with ``POST /broker``, and
the GitHub simulator over HTTP. The VM proves who it is with the per-VM token of the embedded
provider. Checked: a job completes; the rendered script holds no secret; the config reaches the
runner's environment and no file, record, log line or message; a forged token gets 401; a second
call, and concurrent duplicate calls, get the config handed once; a crash between minting and
answering leaves one runner for the job.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from broker_support import JSON, Deployment, ask, free_port, start_deployment, stop_deployment, vm_token
from e2e_support import LABELS, post, wait_for
from jitr_functions.sandbox import SimulatedCrash
from jitr_github.simulator import Faults


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    started: list[Deployment] = []

    def start(broker_url: str | None = None, **extra: Any) -> Deployment:
        pool = {"name": "linux", "labels": LABELS, "machine_types": ["local"], "max_runners": 10, "handoff": "broker"}
        started.append(start_deployment(tmp_path, [pool], broker_url=broker_url, **extra))
        return started[-1]

    yield start
    for d in reversed(started):
        stop_deployment(d)


def _launched(d: Deployment) -> Any:
    return wait_for(
        lambda: next((r for r in d.runners() if r.state == "launched" and r.data.get("vm_id")), None),
        60,
        "a runner launched in broker mode",
    )


def test_a_broker_mode_job_completes_with_the_config_only_in_the_runner_environment(deployment):
    d = deployment()
    job = d.sim.queue_job("octo-org/api", LABELS, name="brokered")

    wait_for(lambda: d.sim.job(job).status == "completed", 90, "the job to complete", detail=d.log.getvalue)

    [runner] = [r for r in d.runners() if r.data.get("job_id") == job]
    assert runner.data["handoff"] == "handed" and runner.data["github_runner_id"] is not None
    [config] = d.jit_configs()
    [(_, _, vm_dir, _, _)] = d.vm_rows()
    vm = Path(vm_dir)
    script = (vm / "startup.sh").read_text()
    assert "jitr_fetch_jit_config" in script and d.broker in script
    assert config not in script and "base64 -d" not in script  # the script holds no secret
    # the runner process got it in its environment, and nothing of the VM's identity
    assert (vm / "runner-config.sha256").read_text().strip() == hashlib.sha256(config.encode()).hexdigest()
    assert not (vm / "runner-token-leaked").exists()
    # ...and it is nowhere else: the VM's output, the records, the database files, the log lines
    d.runtime.stop(timeout_s=5.0)
    surfaces = {
        "vm output": (vm / "vm.log").read_text(),
        "records": json.dumps([r.data for r in d.runners()]),
        "log": d.log.getvalue(),
    }
    for path in (d.dir / "state").glob("jitr.sqlite3*"):
        surfaces[path.name] = path.read_bytes().decode("latin-1")
    assert not [name for name, text in surfaces.items() if config in text]
    lines = [json.loads(line) for line in d.log.getvalue().splitlines() if line.startswith("{")]
    broker_lines = [line for line in lines if line.get("message") == "broker"]
    assert [(line.get("runner_name"), line.get("status"), line.get("reason")) for line in broker_lines] == [
        (runner.key, 200, "handed")
    ]


def test_forged_replayed_and_duplicate_calls_get_nothing(deployment):
    """The VM cannot reach the broker (its URL points nowhere): the test plays the VM with its token."""
    d = deployment(broker_url=f"http://127.0.0.1:{free_port()}/broker")
    job = d.sim.queue_job("octo-org/api", LABELS, name="played")
    runner = _launched(d)
    assert runner.data["handoff"] == "waiting" and runner.data["github_runner_id"] is None
    vm_id, token = vm_token(d, runner.key)

    forged = f"{vm_id}.{'A' * 43}"
    status, answer = ask(d, runner.key, forged)
    assert status == 401 and "identity refused" in answer["error"]
    assert forged not in d.log.getvalue()
    assert ask(d, runner.key, token, provider="gcp")[0] == 401  # another provider's verifier refuses it
    assert ask(d, "jitr-linux-1-1", token)[0] == 404  # a valid VM asking for a runner that does not exist
    request = {"runner_name": runner.key, "provider": "embedded", "proof": {"token": token}}
    hostile = [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b"[" * 5000,  # nested past the parser's depth, well under the size limit
        json.dumps({"runner_name": runner.key}).encode(),
        json.dumps({**request, "runner_name": "x; touch /tmp/pwned"}).encode(),
        json.dumps({**request, "provider": "../aws"}).encode(),
        json.dumps({**request, "proof": {"token": 5}}).encode(),
        json.dumps({**request, "proof": [token]}).encode(),
        json.dumps({**request, "extra": 1}).encode(),
    ]
    for body in hostile:
        status, answer = post(d.broker, body, JSON)
        assert status == 400 and token not in json.dumps(answer), (body, answer)
    assert post(d.broker, b"x" * 20_000, JSON)[0] == 413

    answers: list[tuple[int, dict[str, Any]]] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait(10)
        answers.append(ask(d, runner.key, token))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = Counter(status for status, _ in answers)
    assert statuses[200] == 1 and statuses[200] + statuses[409] + statuses[410] == 8, answers
    [config] = [answer["jit_config"] for status, answer in answers if status == 200]
    assert config in d.jit_configs() and len(d.jit_configs()) == 1  # minted once
    assert all("jit_config" not in answer for status, answer in answers if status != 200)

    status, answer = ask(d, runner.key, token)  # the same identity again, later: a replay
    assert status == 410 and "jit_config" not in answer
    assert d.runner(runner.key).data["handoff"] == "handed"
    assert config not in d.log.getvalue() and token not in d.log.getvalue()
    assert d.sim.job(job).status == "queued"  # nobody ran the config the test took


def test_a_github_too_slow_for_the_answers_deadline_is_a_retry_not_a_late_answer(deployment):
    """A mint answered after API Gateway gave up on the request (29 s) would be lost, the record
    saying handed. GitHub here answers in 3 s, the broker's deadline is 2 s (25 s in use): the VM is
    told to retry, and then gets its config; the registration the slow call left is replaced."""
    d = deployment(broker_url=f"http://127.0.0.1:{free_port()}/broker")  # the test plays the VM
    job = d.sim.queue_job("octo-org/api", LABELS, name="slow-github")
    runner = _launched(d)
    _, token = vm_token(d, runner.key)
    d.app.broker.answer_within_s = 2
    d.sim.faults = Faults(latency_s=3.0)

    status, answer = ask(d, runner.key, token)
    assert status == 503 and "retry" in answer["error"] and "jit_config" not in answer
    assert d.runner(runner.key).data["handoff"] == "waiting"

    d.sim.faults = Faults()
    status, answer = ask(d, runner.key, token)
    assert status == 200 and answer["jit_config"] == d.jit_configs()[-1]
    assert d.runner(runner.key).data["handoff"] == "handed" and d.sim.job(job).status == "queued"
    assert [r.name for r in d.sim.runners()] == [runner.key]  # one registration under its name


def _crash_once(at: str) -> Callable[[str], None]:
    crashed: list[str] = []
    lock = threading.Lock()

    def checkpoint(step: str) -> None:
        with lock:
            if step != at or crashed:
                return
            crashed.append(step)
        raise SimulatedCrash(f"broker died after step {step!r}")

    return checkpoint


def test_a_crash_between_minting_and_answering_still_gives_the_job_one_runner(deployment):
    """The VM retries; once the stopped handoff is older than claim_timeout_s it gets a fresh config."""
    d = deployment()
    d.app.broker.checkpoint = _crash_once("minted")
    job = d.sim.queue_job("octo-org/api", LABELS, name="minted-then-crashed")

    wait_for(lambda: d.sim.job(job).status == "completed", 90, "the job to complete", detail=d.log.getvalue)

    assert len(d.vm_rows()) == 1  # one VM, which got its config on a retry
    first, second = d.jit_configs()
    [(_, _, vm_dir, _, _)] = d.vm_rows()
    assert (Path(vm_dir) / "runner-config.sha256").read_text().strip() == hashlib.sha256(second.encode()).hexdigest()
    [runner] = d.runners()
    assert runner.data["handoff"] == "handed"
    # the registration minted before the crash was replaced under the same name, not left behind
    wait_for(lambda: not [r for r in d.sim.runners() if r.name == runner.key], 30, "no registration left")
    assert first not in d.log.getvalue() and second not in d.log.getvalue()


def test_a_crash_after_handing_leaves_a_vm_that_gives_up_and_a_new_attempt(deployment):
    """The answer is lost after the record says handed: retries get 410, the VM ends, scaledown repairs."""
    d = deployment(boot_timeout_s=30)
    d.app.broker.checkpoint = _crash_once("handed")
    job = d.sim.queue_job("octo-org/api", LABELS, name="handed-then-crashed")

    def done() -> bool:
        d.app.scaledown.run()
        return d.sim.job(job).status == "completed"

    wait_for(done, 120, "the job to complete on a new attempt", step_s=0.5, detail=d.log.getvalue)

    names = Counter(name for _, name, _, _, _ in d.vm_rows())
    assert set(names.values()) == {1} and len(names) == 2, names  # one VM per attempt
    by_name = {r.key: r for r in d.runners()}
    assert by_name[f"jitr-linux-{job}-1"].state == "retired"
    assert by_name[f"jitr-linux-{job}-2"].data["handoff"] == "handed"
    wait_for(
        lambda: by_name[f"jitr-linux-{job}-2"].key in {r.key for r in d.runners() if r.state == "finished"},
        60,
        "the second runner to finish",
    )


def test_a_vm_that_never_reaches_the_broker_is_retired_and_its_job_launched_again(deployment):
    """Like a VM whose runner never came online: nothing was registered, the job gets a new launch."""
    d = deployment(broker_url=f"http://127.0.0.1:{free_port()}/broker", boot_timeout_s=3)
    job = d.sim.queue_job("octo-org/api", LABELS, name="unreachable-broker")
    first = _launched(d)

    def relaunched() -> bool:
        d.app.scaledown.run()
        return d.runner(first.key).state == "retired" and len(d.vm_rows()) >= 2

    wait_for(relaunched, 90, "the first runner retired and the job launched again", step_s=0.5)
    assert d.jit_configs() == []  # no VM asked, so nothing was ever registered on GitHub
    assert d.sim.job(job).status == "queued"
    assert d.runner(first.key).data["handoff"] == "waiting"


def test_a_github_failure_answers_503_with_retry_after_and_the_next_call_gets_the_config(deployment):
    d = deployment(broker_url=f"http://127.0.0.1:{free_port()}/broker")
    d.sim.queue_job("octo-org/api", LABELS, name="github-down")
    runner = _launched(d)
    _, token = vm_token(d, runner.key)
    body = json.dumps({"runner_name": runner.key, "provider": "embedded", "proof": {"token": token}})
    d.sim.faults = Faults(seed=3, http_5xx=1.0)

    parts = urlsplit(d.broker)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", parts.path, body=body, headers=JSON)
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 503 and int(response.getheader("Retry-After")) > 0, answer
    assert "jit_config" not in answer and d.runner(runner.key).data["handoff"] == "waiting"

    d.sim.faults = Faults(seed=4)
    status, answer = ask(d, runner.key, token)
    assert status == 200 and answer["jit_config"] in d.jit_configs()


def test_a_vm_that_asks_before_its_launch_is_recorded_waits_for_it(deployment):
    """scaleup dies after launching the VM and before recording it: the VM is told to retry (409)
    until the redelivered message finds the VM and records it, then gets its config."""
    d = deployment()
    d.app.scaleup.checkpoint = _crash_once("launched")
    job = d.sim.queue_job("octo-org/api", LABELS, name="launched-then-crashed")

    wait_for(lambda: d.sim.job(job).status == "completed", 90, "the job to complete", detail=d.log.getvalue)

    assert len(d.vm_rows()) == 1 and len(d.jit_configs()) == 1
    lines = [json.loads(line) for line in d.log.getvalue().splitlines() if line.startswith("{")]
    statuses = [line["status"] for line in lines if line.get("message") == "broker"]
    assert statuses[-1] == 200 and set(statuses[:-1]) == {409}, statuses
