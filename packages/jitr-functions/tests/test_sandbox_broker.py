"""The sandbox VMs' side of the broker handoff: their identity tokens and their calls for a config,
against a small HTTP server answering as the broker would."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jitr_core.errors import IdentityError
from jitr_functions.sandbox_broker import VMTokens, ask_broker


class _Broker(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server: Any = self.server
        server.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        status, body = server.answers.pop(0) if len(server.answers) > 1 else server.answers[0]
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broker() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(answers: list[tuple[int, dict[str, str] | None]]) -> Any:
        server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Broker)
        server.answers, server.requests = answers, []
        server.url = f"http://127.0.0.1:{server.server_port}/broker"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_token_verifies_while_its_vm_runs_and_never_after() -> None:
    tokens = VMTokens("simulated")
    token = tokens.issue("sim-000001")
    identity = tokens.verify({"token": token})
    assert (identity.provider, identity.vm_id) == ("simulated", "sim-000001")
    tokens.forget("sim-000001")
    with pytest.raises(IdentityError, match="matches no running VM"):
        tokens.verify({"token": token})


@pytest.mark.parametrize(
    "proof",
    [
        {},
        {"token": ""},
        {"token": 7},
        {"token": "x" * 300},
        {"token": "sim-000001.not-the-secret"},
        {"token": "sim-000002." + "a" * 43},
        {"document": "{}"},
    ],
    ids=["missing", "empty", "not-text", "oversized", "wrong-secret", "unknown-vm", "another-provider's-form"],
)
def test_a_malformed_forged_or_unknown_token_is_refused_without_echoing_it(proof: dict[str, Any]) -> None:
    tokens = VMTokens("simulated")
    tokens.issue("sim-000001")
    with pytest.raises(IdentityError) as caught:
        tokens.verify(proof)
    assert "not-the-secret" not in str(caught.value) and "aaaa" not in str(caught.value)


def test_the_vm_retries_until_the_broker_answers_its_config(broker: Any) -> None:
    server = broker(
        [
            (409, {"error": "the launch of this VM is not recorded yet; retry"}),
            (503, {"error": "GitHub could not register the runner now; retry"}),
            (200, {"runner_name": "jitr-linux-1-1", "jit_config": "Y29uZmln"}),
        ]
    )
    got = ask_broker(server.url, "jitr-linux-1-1", "simulated", "sim-1.token", threading.Event(), 30)
    assert got == ("jitr-linux-1-1", "Y29uZmln")
    assert len(server.requests) == 3
    assert server.requests[0] == {
        "runner_name": "jitr-linux-1-1",
        "provider": "simulated",
        "proof": {"token": "sim-1.token"},
    }


def test_a_warm_vm_becomes_the_runner_the_broker_names(broker: Any) -> None:
    server = broker([(204, None), (200, {"runner_name": "jitr-linux-9-1", "jit_config": "Y29uZmln"})])
    got = ask_broker(server.url, "jitr-warm-linux-abc", "simulated", "t", threading.Event(), 30)
    assert got == ("jitr-linux-9-1", "Y29uZmln")


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413])
def test_a_refusal_ends_the_asking_at_once(broker: Any, status: int) -> None:
    server = broker([(status, {"error": "no"})])
    assert ask_broker(server.url, "jitr-linux-1-1", "simulated", "t", threading.Event(), 30) is None
    assert len(server.requests) == 1


def test_the_asking_ends_at_its_deadline_or_when_the_vm_stops(broker: Any) -> None:
    server = broker([(503, {"error": "retry"})])
    assert ask_broker(server.url, "jitr-linux-1-1", "simulated", "t", threading.Event(), 0.3) is None
    stopped = threading.Event()
    stopped.set()
    before = len(server.requests)
    assert ask_broker(server.url, "jitr-linux-1-1", "simulated", "t", stopped, 30) is None
    assert len(server.requests) == before  # a stopped VM asks no more


def test_a_url_of_another_scheme_is_never_opened() -> None:
    assert ask_broker("file:///etc/passwd", "jitr-linux-1-1", "simulated", "t", threading.Event(), 0.2) is None
