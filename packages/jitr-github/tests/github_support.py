"""Test helpers for jitr-github: a fake clock, clients for a simulator, a webhook receiver,
the reference schemas, and secret-leak checks. (Named uniquely: test directories of several
packages may share one pytest session.)"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import jwt
import requests
from jitr_core.secret import Secret
from jitr_core.testing import environment
from jitr_github import GitHubClient
from jitr_github.simulator import GitHubSimulator
from referencing import Registry, Resource

FIXTURES = Path(__file__).parent / "fixtures"
GITHUB = FIXTURES / "github"
WEBHOOK_SCHEMAS = GITHUB / "webhooks" / "schemas" / "api.github.com"


class FakeClock:
    """A clock that moves only when told to; shared by a simulator and a client."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps(list[float]):
    """An injected ``sleep`` that records the delays instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Wait for something another thread does; True once it holds, fails the test on timeout."""
    return bool(environment.wait_until(condition, timeout, step_s=0.01))


def make_client(sim: GitHubSimulator, **kwargs: Any) -> GitHubClient:
    kwargs.setdefault("backoff_s", 0.001)
    return GitHubClient(str(sim.app_id), Secret(sim.private_key_pem), sim.base_url, **kwargs)


class SimFactory:
    """Starts simulators for a test and stops them after it."""

    def __init__(self) -> None:
        self.created: list[GitHubSimulator] = []

    def __call__(self, **kwargs: Any) -> GitHubSimulator:
        sim = GitHubSimulator(**kwargs)
        sim.start()
        self.created.append(sim)
        return sim

    def stop_all(self) -> None:
        for sim in self.created:
            sim.stop()


# -- a webhook receiver ----------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def payload(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """Records every POST; answers ``status``, after ``gate`` is set when there is one."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.gate: threading.Event | None = None
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.gate is not None:
                    receiver.gate.wait(30)
                with receiver._changed:
                    receiver.received.append(Received(dict(self.headers.items()), body))
                    receiver._changed.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        """The deliveries received so far, once there are at least ``count`` (or the scaled timeout passed)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, environment.deadline_s(timeout))
            return list(self.received)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- reference schemas -----------------------------------------------------------------------


def _openapi_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects to JSON Schema: ``nullable: true`` also admits null."""
    if isinstance(node, list):
        return [_openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key == "nullable":
            continue
        if key == "properties":
            converted[key] = {name: _openapi_to_json_schema(schema) for name, schema in value.items()}
        else:
            converted[key] = _openapi_to_json_schema(value)
    return {"anyOf": [converted, {"type": "null"}]} if node.get("nullable") is True else converted


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    subset = json.loads((GITHUB / "rest-openapi-subset.json").read_text())["operations"]
    extra = json.loads((GITHUB / "extra-operations.json").read_text())["operations"]
    return {(op["method"], op["path"]): op for op in [*subset, *extra]}


OPERATIONS = _operations()


def response_schema(method: str, path: str, status: int) -> dict[str, Any]:
    """The JSON Schema GitHub documents for one operation's answer with this status.

    An error status an operation does not list (a 404 for a runner already deleted) is checked
    against GitHub's ``basic-error``, which every REST error body follows.
    """
    responses = OPERATIONS[(method, path)]["responses"]
    if str(status) not in responses and status >= 400:  # errors GitHub answers everywhere: basic-error
        return response_schema("POST", "/repos/{owner}/{repo}/actions/runners/generate-jitconfig", 404)
    response = responses[str(status)]
    if "same_as" in response:
        method, path, same_status = response["same_as"]
        return response_schema(method, path, int(same_status))
    schema: dict[str, Any] = _openapi_to_json_schema(response["content"]["application/json"]["schema"])
    return schema


def assert_conforms(method: str, path: str, status: int, body: Any) -> None:
    jsonschema.Draft4Validator(response_schema(method, path, status)).validate(body)


def _webhook_registry() -> Registry[Any]:
    resources = []
    for file in WEBHOOK_SCHEMAS.rglob("*.schema.json"):
        schema = json.loads(file.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


WEBHOOK_REGISTRY = _webhook_registry()


def assert_webhook_conforms(payload: dict[str, Any]) -> None:
    """Validate a ``workflow_job`` payload against octokit's schema for its action."""
    schema = json.loads((WEBHOOK_SCHEMAS / "workflow_job" / f"{payload['action']}.schema.json").read_text())
    jsonschema.Draft7Validator(schema, registry=WEBHOOK_REGISTRY).validate(payload)


# -- raw calls -------------------------------------------------------------------------------


class RawApp:
    """Raw HTTP calls as the simulator's App (JWT or installation token); every answer is checked
    against GitHub's documented schema for its status."""

    def __init__(self, sim: GitHubSimulator) -> None:
        self.sim = sim
        self.http = requests.Session()
        self.walked: set[tuple[str, str]] = set()

    def jwt(self, now: float | None = None) -> str:
        now = int(self.sim.clock() if now is None else now)
        claims = {"iat": now - 60, "exp": now + 540, "iss": str(self.sim.app_id)}
        return jwt.encode(claims, self.sim.private_key_pem, algorithm="RS256")

    def token(self, installation_id: int) -> str:
        answer = self.call(
            "POST",
            "/app/installations/{installation_id}/access_tokens",
            201,
            self.jwt(),
            installation_id=installation_id,
        )
        return str(answer["token"])

    def call(
        self, method: str, template: str, status: int, credential: str, json: Any = None, query: str = "", **params: Any
    ) -> Any:
        url = self.sim.base_url + template.format(**params) + query
        response = self.http.request(method, url, json=json, headers={"Authorization": f"Bearer {credential}"})
        assert response.status_code == status, response.text
        for header in (
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "x-ratelimit-used",
            "x-ratelimit-resource",
        ):
            assert header in response.headers
        self.walked.add((method, template))
        if status == 204:
            assert response.content == b""
            return None
        body = response.json()
        assert_conforms(method, template, status, body)
        return body

    def register(
        self, token: str, name: str, labels: list[str], org: str, repo: str | None = None, group: int = 1
    ) -> Any:
        """generate-jitconfig at repository (``repo``) or organisation scope; the 201 answer."""
        body = {"name": name, "runner_group_id": group, "labels": labels}
        if repo is None:
            return self.call("POST", "/orgs/{org}/actions/runners/generate-jitconfig", 201, token, json=body, org=org)
        path = "/repos/{owner}/{repo}/actions/runners/generate-jitconfig"
        return self.call("POST", path, 201, token, json=body, owner=org, repo=repo)


# -- the secret-leak guard -------------------------------------------------------------------


CHUNK = 16


def secret_fragments(sims: list[GitHubSimulator]) -> set[str]:
    """Every secret the simulators handed out or saw, cut into 16-character pieces.

    Any leaked stretch of 31 or more characters of a secret contains one whole piece, so a
    leaked prefix or a line of a PEM key is caught as surely as the whole secret.
    """
    pieces: set[str] = set()
    for sim in sims:
        for secret in sim.secrets_issued():
            for line in secret.splitlines():
                if "-----" in line:
                    continue
                pieces.update(line[i : i + CHUNK] for i in range(0, len(line) - CHUNK + 1, CHUNK))
    return pieces


def leaks(text: str, pieces: set[str]) -> bool:
    return any(text[i : i + CHUNK] in pieces for i in range(len(text) - CHUNK + 1))


def assert_secret_free(text: str, sims: list[GitHubSimulator]) -> None:
    assert not leaks(text, secret_fragments(sims)), "a secret appears in text meant for logs or errors"


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> Iterator[str]:
        for record in self.records:
            yield self._formatter.format(record)
            yield repr(record.__dict__)
