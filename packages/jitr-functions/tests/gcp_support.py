"""Helpers for the Cloud Run tests: functions-framework servers in child processes and one jitr
deployment on the Pub/Sub and Firestore emulators, the GCE fake and the GitHub simulator."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jitr_core.backend import Backend
from jitr_core.messages import JobMessage, encode
from jitr_core.settings import Settings
from jitr_core.testing.environment import deadline_s, wait_until
from jitr_gcp.config import gcp_config
from jitr_gcp.testing.compute_fake import FakeCompute
from jitr_gcp.testing.emulators import free_port
from jitr_github.simulator import GitHubSimulator

FIXTURES = Path(__file__).parent / "fixtures" / "gcp"
FUNCTIONS_FRAMEWORK = Path(sys.executable).with_name("functions-framework")
WEBHOOK_SECRET = "whsec-gcp-functions-test-0123456789"
LABELS = ["self-hosted", "linux", "x64"]
PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
POOL = {
    "name": "linux",
    "labels": ["self-hosted", "linux", "x64"],
    "machine_types": ["e2-standard-2"],
    "image": "projects/debian-cloud/global/images/family/debian-12",
    "max_runners": 20,
}


def bytecode_env() -> dict[str, str]:
    """Bytecode settings for a function server's made-up environment: the run's shared cache
    (``PYTHONPYCACHEPREFIX``, set by the nox sessions) where there is one, so each server does not
    compile again what the run compiled already; else none written, so no ``__pycache__`` lands in
    the bundle the tests share."""
    prefix = os.environ.get("PYTHONPYCACHEPREFIX")
    return {"PYTHONPYCACHEPREFIX": prefix} if prefix else {"PYTHONDONTWRITEBYTECODE": "1"}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


class FunctionServer:
    """``functions-framework --target T --source main.py`` as a child process on 127.0.0.1."""

    def __init__(self, source: Path, target: str, env: dict[str, str], log_dir: Path) -> None:
        self.source = source
        self.target = target
        self.env = env
        self.port = free_port()
        self.log_path = log_dir / f"{target}-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_after_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 120.0, tries: int = 3) -> FunctionServer:
        """Start it and wait for its answer; on a port another process took between the pick and
        the bind (the other then answers the probe), start again on a new port."""
        for _ in range(tries):
            if self._start(timeout_s):
                return self
            stop_servers([self])
            self.port = free_port()
        raise AssertionError(f"{self.target} found its port taken {tries} times:\n{self.log_text()}")

    def _start(self, timeout_s: float) -> bool:
        command = [
            str(FUNCTIONS_FRAMEWORK),
            "--target",
            self.target,
            "--source",
            str(self.source),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with self.log_path.open("ab") as log:
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                command,
                cwd=self.source.parent,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + deadline_s(timeout_s)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.target} exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                urllib.request.urlopen(self.url + "_ready", timeout=1).close()
            except urllib.error.HTTPError:
                pass  # any HTTP answer means the server is up
            except OSError:
                time.sleep(0.05)
                continue
            if not _listens(self.process.pid, self.port):
                return False
            self.ready_after_s = time.monotonic() - self.started_at
            return True
        raise AssertionError(f"{self.target} did not answer within {timeout_s} s:\n{self.log_text()}")

    def stop(self) -> None:
        stop_servers([self])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines the function wrote."""
        lines = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines

    def post(self, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket listening on ``port`` (Linux's /proc; elsewhere,
    assumed)."""
    table = Path("/proc/net/tcp")
    if not table.exists():
        return True
    sockets = set()
    for line in table.read_text().splitlines()[1:]:
        columns = line.split()
        local, state, inode = columns[1], columns[3], columns[9]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
            sockets.add(f"socket:[{inode}]")
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            held.add(os.readlink(fd))
        except OSError:  # closed since the listing
            continue
    return bool(sockets & held)


def stop_servers(servers: list[FunctionServer]) -> None:
    """Stop servers together: each takes about a second to shut down, so signal all before waiting."""
    running = [s.process for s in servers if s.process is not None and s.process.poll() is None]
    for process in running:
        os.killpg(process.pid, signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@dataclass
class Deployment:
    """One jitr deployment on GCP's emulators and fakes, with GitHub simulated."""

    env: dict[str, str]
    settings: Settings
    backend: Backend
    sim: GitHubSimulator
    compute: FakeCompute
    bundle: Path
    log_dir: Path
    installation_id: int
    servers: list[FunctionServer] = field(default_factory=list)

    def serve(self, target: str, source: Path | None = None, **env: str) -> FunctionServer:
        server = FunctionServer(source or self.bundle / "main.py", target, {**self.env, **env}, self.log_dir)
        self.servers.append(server.start())
        return server

    def push(self, queue: str, server: FunctionServer, ack_deadline_s: int = 60) -> str:
        """A push subscription on ``queue``'s topic delivering to ``server`` (what Eventarc sets up)."""
        from google.cloud import pubsub_v1

        names = gcp_config(self.settings).queue(queue)
        name = f"{names.subscription}-push-{server.target}-{uuid.uuid4().hex[:4]}"
        pubsub_v1.SubscriberClient().create_subscription(
            request={
                "name": name,
                "topic": names.topic,
                "ack_deadline_seconds": ack_deadline_s,
                "push_config": {"push_endpoint": server.url},
                "dead_letter_policy": {"dead_letter_topic": names.dead_letter_topic, "max_delivery_attempts": 5},
            }
        )
        return name

    def publish(self, queue: str, body: bytes, **attributes: str) -> str:
        from google.cloud import pubsub_v1

        topic = gcp_config(self.settings).queue(queue).topic
        message_id: str = pubsub_v1.PublisherClient().publish(topic, body, **attributes).result(timeout=30)
        return message_id

    def job_message(self, job_id: int) -> bytes:
        """The jobs-queue message the webhook would publish for a job queued in the simulator."""
        job = self.sim.job(job_id)
        message = JobMessage(
            job_id=job.id,
            run_id=job.run_id,
            repository=job.repository,
            owner="octo-org",
            installation_id=self.installation_id,
            labels=job.labels,
            private=True,
        )
        return encode(message).body.encode()

    def instances(self, runner_prefix: str) -> list[str]:
        with self.compute.lock:
            return [name for (_, name) in self.compute.instances if name.startswith(runner_prefix)]


def wait_for(predicate: Callable[[], object], timeout_s: float = 60.0, what: str = "condition") -> None:
    wait_until(predicate, timeout_s, what, step_s=0.1)


def runner(job_id: int) -> str:
    return f"jitr-linux-{job_id}-1"


def logged(server: FunctionServer, message: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        r for r in server.records() if r.get("message") == message and all(r.get(k) == v for k, v in fields.items())
    ]


def quiet_job(deployment: Deployment) -> int:
    """A job queued in the simulator without a webhook, for tests that publish its message themselves."""
    deployment.sim.set_webhook(None, None)
    return deployment.sim.queue_job("octo-org/api", LABELS)


def with_data(event: dict[str, Any], body: bytes) -> dict[str, Any]:
    """A copy of a MessagePublishedData (or a CloudEvent carrying one) with ``message.data`` replaced."""
    event = json.loads(json.dumps(event))
    data = event["data"] if "specversion" in event else event
    data["message"]["data"] = base64.b64encode(body).decode()
    return event


def ce_headers(event_id: str = "ce-1") -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-type": PUBLISHED,
        "ce-id": event_id,
        "ce-source": "//pubsub.googleapis.com/projects/jitr-test/topics/jitr-jobs",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
