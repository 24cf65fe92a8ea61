"""Test helpers for jitr-github: a fake clock, clients for a simulator, a webhook receiver,
the reference schemas, and secret-leak checks. (Named uniquely: test directories of several
packages may share one pytest session.)"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
from jitr_core.secret import Secret
from referencing import Registry, Resource

from jitr_github import GitHubClient
from jitr_github.simulator import GitHubSimulator

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
    """Records every POST; answers ``status`` (settable)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._changed:
                    receiver.received.append(Received(dict(self.headers.items()), body))
                    receiver._changed.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, timeout)
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
        return response_schema(*response["same_as"][:2], int(response["same_as"][2]))
    schema: dict[str, Any] = _openapi_to_json_schema(response["content"]["application/json"]["schema"])
    return schema


def assert_conforms(method: str, path: str, status: int, body: Any) -> None:
    jsonschema.Draft4Validator(response_schema(method, path, status)).validate(body)


def _webhook_registry() -> Registry:  # type: ignore[type-arg]
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


# -- the secret-leak guard -------------------------------------------------------------------


def secret_fragments(sims: list[GitHubSimulator]) -> list[str]:
    """Every secret the simulators handed out or saw; a PEM key by each of its body lines."""
    found: list[str] = []
    for sim in sims:
        for secret in sim.secrets_issued():
            if "PRIVATE KEY-----" in secret:
                found += [line for line in secret.splitlines() if line and "-----" not in line]
            else:
                found.append(secret)
    return found


def assert_secret_free(text: str, sims: list[GitHubSimulator]) -> None:
    for fragment in secret_fragments(sims):
        assert fragment not in text, "a secret appears in text meant for logs or errors"


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
