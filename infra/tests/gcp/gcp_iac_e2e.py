"""One end-to-end run of the six functions with the settings the module gives them, every Google API
call recorded per function, and the mapping of those calls to IAM permissions.

The functions run in functions-framework (jitr-functions' ``gcp_support.FunctionServer``) against
the Pub/Sub and Firestore emulators, the Compute and Secret Manager fakes of ``jitr_gcp.testing``
and the GitHub simulator. Only endpoints, the GitHub App id (the simulator's) and the keys that
sign GCE identity tokens (a key server of the test's, standing in for Google's) differ from what
the module renders. ``gcp_iac_hook/sitecustomize.py`` records the calls in each function process.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gcp_support import LABELS, WEBHOOK_SECRET, FunctionServer, bytecode_env, logged, stop_servers, wait_for
from jitr_gcp.testing.compute_fake import FakeCompute
from jitr_gcp.testing.emulators import Emulator
from jitr_gcp.testing.fakehttp import JsonServer
from jitr_gcp.testing.identity import GoogleKey
from jitr_gcp.testing.secretmanager_fake import FakeSecretManager
from jitr_github.simulator import GitHubSimulator

HOOK = Path(__file__).parent / "gcp_iac_hook"
PERMISSIONS = Path(__file__).parent / "gcp_permissions.json"
FUNCTIONS = ("webhook", "scaleup", "lifecycle", "scaledown", "rebalancer", "broker")
# Settings the test changes: where the fakes and emulators listen, the simulator's App, and where
# the broker fetches the keys of GCE identity tokens.
OVERRIDDEN = frozenset(
    {
        "JITR_GCP_COMPUTE_ENDPOINT",
        "JITR_GCP_SECRETMANAGER_ENDPOINT",
        "JITR_GITHUB_APP_ID",
        "JITR_GITHUB_API_URL",
        "JITR_GCP_IDENTITY_CERTS_URL",
    }
)
_JIT_IN_SCRIPT = re.compile(r"ACTIONS_RUNNER_INPUT_JITCONFIG=\"\$\(printf %s '([A-Za-z0-9+/=]+)' \| base64 -d\)\"")


@dataclass
class Run:
    """What one end-to-end run did: the calls of each function, and the fakes' own request logs."""

    calls: dict[str, list[dict[str, Any]]]
    fake_requests: int
    recorded_rest: int
    steps: list[str] = field(default_factory=list)


def main_py(directory: Path) -> Path:
    """The ``main.py`` `jitr bundle gcp` writes (same text), importing jitr from this environment."""
    from jitr_functions.bundle_gcp import MAIN_PY

    path = directory / "main.py"
    path.write_text(MAIN_PY)
    return path


class _Recording:
    """Counts the requests a fake server answered (its request log), next to what it serves."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def note(self, method: str, path: str) -> None:
        self.requests.append((method, path))


class RecordingCompute(FakeCompute):
    def __init__(self, project: str, zones: tuple[str, ...], log: _Recording) -> None:
        super().__init__(project, zones)
        self.log = log

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        self.log.note(method, path)
        return super().handle(method, path, query, body)


class RecordingSecretManager(FakeSecretManager):
    def __init__(self, log: _Recording) -> None:
        super().__init__()
        self.log = log

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        self.log.note(method, path)
        return super().handle(method, path, query, body)


class IdentityKeys(JsonServer):
    """Google, for the broker: signs the ``format=full`` identity tokens of GCE instances with a key
    of its own, whose certificate it serves as Google's ``oauth2/v1/certs`` do."""

    KEY_ID = "gcp-iac-key"

    def __init__(self, project: str, audience: str) -> None:
        super().__init__()
        self.project = project
        self.audience = audience
        self.key = GoogleKey(self.KEY_ID)

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        return (200, {self.KEY_ID: self.key.certificate}) if method == "GET" else (404, {"error": "not found"})

    def token(self, instance: dict[str, Any]) -> str:
        """The identity token the metadata server of ``instance`` (as the Compute fake holds it) gives."""
        now = int(time.time())
        compute = {
            "instance_id": str(instance.get("id", "1")),
            "instance_name": instance["name"],
            "project_id": self.project,
            "zone": instance["zone"].rsplit("/", 1)[-1],
        }
        claims = {
            "aud": self.audience, "iss": "https://accounts.google.com", "sub": "112233445566778899000",
            "iat": now, "exp": now + 3600, "google": {"compute_engine": compute},
        }  # fmt: skip
        return self.key.sign(claims)


def _secret(reference: str) -> tuple[str, str]:
    match = re.fullmatch(r"projects/([^/]+)/secrets/([^/]+)", reference)
    assert match, f"the module names secrets as projects/P/secrets/S, found {reference!r}"
    return match.group(1), match.group(2)


@contextmanager
def deployment(
    settings: dict[str, str], timeouts: dict[str, int], pubsub: Emulator, firestore: Emulator, work: Path
) -> Iterator[
    tuple[dict[str, FunctionServer], GitHubSimulator, RecordingCompute, dict[str, Path], _Recording, IdentityKeys]
]:
    """The six functions serving with ``settings``, their queues wired as the module wires them."""
    from google.cloud import pubsub_v1

    project = settings["JITR_GCP_PROJECT"]
    pools = json.loads(settings["JITR_POOLS"])
    zones = sorted({z for p in pools for z in p.get("placements", [])} | set(settings["JITR_GCP_ZONES"].split(",")))
    log = _Recording()
    compute = RecordingCompute(project, tuple(z for z in zones if z), log)
    secrets = RecordingSecretManager(log)
    sim = GitHubSimulator()
    keys = IdentityKeys(project, settings["JITR_BROKER_URL"])
    compute.start()
    secrets.start()
    keys.start()
    api_url = sim.start()
    owner = settings["JITR_ALLOWED_OWNERS"].split(",")[0]
    sim.add_installation(owner, "Organization", repos=["api"])
    secrets.put(*_secret(settings["JITR_SECRETS_WEBHOOK_SECRET"]), WEBHOOK_SECRET)
    secrets.put(*_secret(settings["JITR_SECRETS_GITHUB_APP_PRIVATE_KEY"]), sim.private_key_pem)
    overrides = {
        "JITR_GCP_COMPUTE_ENDPOINT": compute.url,
        "JITR_GCP_SECRETMANAGER_ENDPOINT": secrets.url,
        "JITR_GITHUB_APP_ID": str(sim.app_id),
        "JITR_GITHUB_API_URL": api_url,
        "JITR_GCP_IDENTITY_CERTS_URL": keys.url + "/oauth2/v1/certs",
    }
    assert set(overrides) == OVERRIDDEN
    source = main_py(work)
    logs = {name: work / f"calls-{name}.jsonl" for name in FUNCTIONS}
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        **bytecode_env(),
        "PYTHONPATH": str(HOOK),
        "GOOGLE_CLOUD_PROJECT": project,
        **pubsub.env,
        **firestore.env,
        **settings,
        **overrides,
    }
    servers = {
        name: FunctionServer(source, name, {**base, "GCP_IAC_CALL_LOG": str(logs[name])}, work) for name in FUNCTIONS
    }
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda s: s.start(), servers.values()))
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        max_deliveries = int(settings["JITR_GCP_MAX_DELIVERIES"])
        for queue, target in (("JOBS", "scaleup"), ("LIFECYCLE", "lifecycle")):
            topic = f"projects/{project}/topics/{settings[f'JITR_GCP_{queue}_TOPIC']}"
            dead = f"projects/{project}/topics/{settings[f'JITR_GCP_{queue}_DEAD_LETTER_TOPIC']}"
            publisher.create_topic(name=topic)
            publisher.create_topic(name=dead)
            dead_sub = settings[f"JITR_GCP_{queue}_DEAD_LETTER_SUBSCRIPTION"]
            subscriber.create_subscription(name=f"projects/{project}/subscriptions/{dead_sub}", topic=dead)
            subscriber.create_subscription(
                request={
                    "name": f"projects/{project}/subscriptions/{queue.lower()}-push-{uuid.uuid4().hex[:6]}",
                    "topic": topic,
                    "ack_deadline_seconds": timeouts[target] + 30,
                    "push_config": {"push_endpoint": servers[target].url},
                    "dead_letter_policy": {"dead_letter_topic": dead, "max_delivery_attempts": max_deliveries},
                }
            )
        sim.set_webhook(servers["webhook"].url, WEBHOOK_SECRET)
        yield servers, sim, compute, logs, log, keys
    finally:
        stop_servers(list(servers.values()))
        sim.stop()
        compute.stop()
        secrets.stop()
        keys.stop()


def _instance(compute: FakeCompute, name: str) -> dict[str, Any] | None:
    with compute.lock:
        return next((i for (_, n), i in compute.instances.items() if n == name), None)


def _warm_instances(compute: FakeCompute, pool: str) -> list[dict[str, Any]]:
    with compute.lock:
        return [i for (_, n), i in compute.instances.items() if n.startswith(f"jitr-{pool}-warm-")]


def run(settings: dict[str, str], timeouts: dict[str, int], pubsub: Emulator, firestore: Emulator, work: Path) -> Run:
    """Serve a job, cancel one, poison both queues, serve a job of the warm pool and fail to serve
    another, then call both periodic functions; the calls made. The settings' first pool must say
    handoff = "metadata" (its VM's JIT config is read from the startup script), and one pool must
    keep one warm VM (broker handoff) with a short hold at the broker (``warm_hold_s``)."""
    steps: list[str] = []
    pools = json.loads(settings["JITR_POOLS"])
    assert pools[0]["handoff"] == "metadata", "the first pool's runner takes its JIT config from its startup script"
    [warm_pool] = [p for p in pools if p.get("warm") == 1]
    with deployment(settings, timeouts, pubsub, firestore, work) as (servers, sim, compute, logs, log, keys):
        repo = f"{settings['JITR_ALLOWED_OWNERS'].split(',')[0]}/api"
        # A job served end to end: webhook -> jobs topic -> scaleup -> GCE -> runner -> lifecycle.
        job = sim.queue_job(repo, LABELS)
        name = f"jitr-linux-{job}-1"
        wait_for(lambda: _instance(compute, name), 60, f"an instance for job {job}")
        instance = _instance(compute, name) or {}
        script = next(i["value"] for i in instance["metadata"]["items"] if i["key"] == "startup-script")
        match = _JIT_IN_SCRIPT.search(script)
        assert match is not None, "the startup script carries no JIT config"
        agent = sim.agent_connect(base64.b64decode(match.group(1)).decode())
        assert sim.agent_poll(agent.id, timeout=10) is not None
        sim.agent_finish(agent.id)
        wait_for(lambda: len(sim.deliveries()) >= 3 and sim.drain_webhooks(), 60, "the job's three webhooks")
        steps.append("job served")
        # A job cancelled while its runner boots: lifecycle retires the runner and deletes its VM.
        cancelled = sim.queue_job(repo, LABELS)
        surplus = f"jitr-linux-{cancelled}-1"
        wait_for(lambda: _instance(compute, surplus), 60, f"an instance for job {cancelled}")
        # Cancelled once scaleup has linked the job to its runner: lifecycle retires the runner then
        # (a job cancelled while scaleup still launches has its runner retired by scaleup itself).
        wait_for(lambda: logged(servers["scaleup"], "scaleup", job_id=cancelled), 60, "scaleup to link the job")
        sim.cancel_job(cancelled)
        wait_for(lambda: _instance(compute, surplus) is None, 60, "the cancelled job's VM to be deleted")
        steps.append("surplus VM deleted")
        # Poison on both queues: dead-lettered by the function itself.
        for target in ("scaleup", "lifecycle"):
            status, body = servers[target].post(b"not a pubsub delivery")
            assert status == 200 and "dead_lettered" in body, (target, status, body)
        steps.append("poison dead-lettered")
        # The warm pool: scaledown's pass fills it; its VM waits at the broker; a job takes it and
        # the VM's next call gets that job's config; scaleup refills the pool. The next job takes
        # the new VM, but GitHub will not register its runner: the broker deletes the VM and
        # dead-letters the job.
        status, body = servers["scaledown"].post(b"", {"X-CloudScheduler-JobName": "jitr-scaledown"})
        assert status == 200, ("scaledown", status, body)
        wait_for(lambda: _warm_instances(compute, warm_pool["name"]), 60, "scaledown to launch the warm VM")
        [warm] = _warm_instances(compute, warm_pool["name"])

        def ask(vm: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            request = {"runner_name": vm["name"], "provider": "gcp", "proof": {"token": keys.token(vm)}}
            return servers["broker"].post(request)

        assert ask(warm)[0] == 204, "the waiting warm VM's first call"
        warm_job = sim.queue_job(repo, warm_pool["labels"])
        answers: list[tuple[int, dict[str, Any]]] = []
        wait_for(lambda: answers.append(ask(warm)) or answers[-1][0] != 204, 60, f"a runner for job {warm_job}")
        status, answer = answers[-1]
        assert status == 200 and "jit_config" in answer, (status, answer)
        agent = sim.agent_connect(answer["jit_config"])
        assert sim.agent_poll(agent.id, timeout=10) is not None
        assert ask(warm)[0] == 410, "asked again"
        steps.append("warm VM handed a job")
        wait_for(lambda: len(_warm_instances(compute, warm_pool["name"])) == 2, 60, "scaleup to refill the pool")
        [refilled] = [i for i in _warm_instances(compute, warm_pool["name"]) if i["name"] != warm["name"]]
        sim.fail_next(1, 404, path_contains="generate-jitconfig")
        unserved = sim.queue_job(repo, warm_pool["labels"])
        answers.clear()
        wait_for(lambda: answers.append(ask(refilled)) or answers[-1][0] != 204, 60, f"a runner for job {unserved}")
        status, answer = answers[-1]
        assert status == 410 and "cannot serve" in answer.get("error", ""), (status, answer)
        wait_for(lambda: _instance(compute, refilled["name"]) is None, 60, "the unserved runner's VM to be deleted")
        steps.append("unserved warm job dead-lettered")
        # The served job's VM powered off (as a runner without a self-delete grant does): scaledown
        # lists the instances and deletes the stopped one; the rebalancer runs once.
        compute.set_status(instance["zone"].rsplit("/", 1)[-1], name, "TERMINATED")
        for target in ("scaledown", "rebalancer"):
            status, body = servers[target].post(b"", {"X-CloudScheduler-JobName": f"jitr-{target}"})
            assert status == 200, (target, status, body)
        steps.append("periodic runs")
    calls = {name: _read(path) for name, path in logs.items()}
    recorded_rest = sum(1 for entries in calls.values() for e in entries if e["transport"] == "rest")
    return Run(calls, len(log.requests), recorded_rest, steps)


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- calls to permissions ------------------------------------------------------------------------


def table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PERMISSIONS.read_text())
    return data


def _insert_conditions(body: dict[str, Any]) -> set[str]:
    """Which conditional permissions of instances.insert a request body brings in."""
    disks = body.get("disks", [])
    interfaces = body.get("networkInterfaces", [])
    found = {
        "boot_disk_created": any("initializeParams" in d for d in disks),
        "source_image": any(d.get("initializeParams", {}).get("sourceImage") for d in disks),
        "metadata": bool(body.get("metadata", {}).get("items")),
        "labels": bool(body.get("labels")),
        "tags": bool(body.get("tags", {}).get("items")),
        "service_account": bool(body.get("serviceAccounts")),
        "network_interface": bool(interfaces),
        "access_config": any(i.get("accessConfigs") for i in interfaces),
    }
    return {key for key, present in found.items() if present}


def needed(entry: dict[str, Any], permissions: dict[str, Any]) -> set[tuple[str, str]]:
    """(permission, resource) pairs one recorded call needs; resource "" is the project."""
    if entry["transport"] == "grpc":
        rule = permissions["grpc"].get(entry["method"])
        assert rule is not None, f"no permission listed for gRPC method {entry['method']}: add it to {PERMISSIONS.name}"
        if "writes" in rule:
            out: set[tuple[str, str]] = set()
            for write in entry["writes"]:
                assert write in rule["writes"], f"no permission listed for a Commit write {write!r}"
                out |= {(p, "") for p in rule["writes"][write]}
            return out
        resource = entry.get("topic", "").rsplit("/", 1)[-1] if rule.get("resource") == "topic" else ""
        return {(p, resource) for p in rule["permissions"]}
    path = "/" + entry["url"].split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
    for rule in permissions["rest"]:
        if rule["method"] == entry["method"] and re.match(rule["path"], path):
            resource = ""
            if rule.get("resource") == "secret":
                resource = path.split("/versions/", 1)[0].removeprefix("/v1/")
            out = {(p, resource) for p in rule["permissions"]}
            if rule.get("when"):
                body = json.loads(entry["body"] or "{}")
                for condition in _insert_conditions(body):
                    for permission in rule["when"][condition]:
                        acts_as = permission == "iam.serviceAccounts.actAs"
                        out.add((permission, body["serviceAccounts"][0]["email"] if acts_as else ""))
            return out
    raise AssertionError(f"no permission listed for {entry['method']} {path}: add it to {PERMISSIONS.name}")
