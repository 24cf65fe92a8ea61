"""``jitr serve``'s HTTP server over real sockets: concurrent new connections beside slow clients,
chunked bodies, keep-alive, malformed framing, and the limits on headers and bodies."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from e2e_support import POOL, QUIET, post, store_rows, wait_for, webhook_headers
from jitr_core.hookspecs import hookimpl
from jitr_core.model import QueueMessage
from jitr_core.settings import Settings
from jitr_core.testing.environment import deadline_s
from jitr_functions.local import LocalRuntime
from jitr_functions.webhook_server import HttpLimits

LIMITS = HttpLimits(threads=4, request_timeout_s=1.0, idle_timeout_s=2.0)


def _delivery(payload: bytes, job_id: int) -> bytes:
    data = json.loads(payload)
    data["workflow_job"].update(id=job_id, labels=list(POOL["labels"]))
    data["repository"]["private"] = True
    return json.dumps(data).encode()


@pytest.fixture
def served(e2e_sandbox) -> Iterator[tuple[object, LocalRuntime]]:
    """A sandbox with no queue workers (accepted deliveries stay queued) and a server with short timeouts."""
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, workers=0)
    runtime = LocalRuntime(sandbox.app, port=0, workers=0, intervals=QUIET, http=LIMITS).start()
    try:
        yield sandbox, runtime
    finally:
        runtime.stop(timeout_s=10)


def _address(runtime: LocalRuntime) -> tuple[str, int]:
    parts = urlsplit(runtime.url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _raw(runtime: LocalRuntime, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(_address(runtime), timeout=deadline_s(10)) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # what came before the reset is the answer
        return received


def _queued_jobs(sandbox) -> list[int]:
    return sorted(json.loads(body)["job_id"] for (body,) in store_rows(sandbox, "SELECT body FROM messages"))


def _signed_request(sandbox, body: bytes, extra: str = "") -> bytes:
    headers = webhook_headers(sandbox.webhook_secret, body)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST /webhook HTTP/1.1\r\nHost: jitr\r\n{lines}{extra}".encode()


def test_concurrent_new_connections_are_all_answered_while_slow_clients_are_cut_off(served, e2e_fixture):
    sandbox, runtime = served
    payload = e2e_fixture("webhooks/workflow_job.queued.payload.json")
    slow = []
    for _ in range(20):  # each announces a large body and sends one byte of it
        sock = socket.create_connection(_address(runtime), timeout=deadline_s(30))
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: jitr\r\nContent-Length: 1000000\r\n\r\n{")
        slow.append(sock)

    jobs = list(range(9001, 9051))
    start = threading.Barrier(len(jobs))

    def deliver(job_id: int) -> tuple[int, dict]:
        body = _delivery(payload, job_id)
        conn = http.client.HTTPConnection(*_address(runtime), timeout=deadline_s(30))
        try:
            start.wait(deadline_s(30))
            conn.request("POST", "/webhook", body=body, headers=webhook_headers(sandbox.webhook_secret, body))
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(deliver, jobs))

    assert answers == [(202, {"queued": "jobs"})] * len(jobs)
    assert _queued_jobs(sandbox) == jobs

    for sock in slow:  # the request timeout closes each one; nothing was taken from them
        with sock:
            assert sock.recv(65536) == b""
    assert _queued_jobs(sandbox) == jobs


def test_a_chunked_delivery_and_keep_alive_requests_share_one_connection(served, e2e_fixture):
    sandbox, runtime = served
    payload = e2e_fixture("webhooks/workflow_job.queued.payload.json")
    conn = http.client.HTTPConnection(*_address(runtime), timeout=deadline_s(30))
    try:
        body = _delivery(payload, 7101)
        pieces = iter([body[:100], body[100:2000], body[2000:]])
        conn.request("POST", "/webhook", body=pieces, headers=webhook_headers(sandbox.webhook_secret, body))
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (202, {"queued": "jobs"})
        first = conn.sock

        body = _delivery(payload, 7102)
        conn.request("POST", "/webhook", body=body, headers=webhook_headers(sandbox.webhook_secret, body))
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (202, {"queued": "jobs"})
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
        assert conn.sock is first  # one connection for all three
    finally:
        conn.close()
    assert _queued_jobs(sandbox) == [7101, 7102]


def test_malformed_framing_is_refused_and_the_body_never_read_as_a_request(served):
    sandbox, runtime = served
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: jitr\r\n\r\n"
    for length in (b"abc", b"-1", b"1e3"):
        answer = _raw(runtime, _signed_request(sandbox, b"") + b"Content-Length: " + length + b"\r\n\r\n" + smuggled)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert answer.count(b"HTTP/1.1 ") == 1, answer  # one answer, then the connection is closed
        assert "Content-Length" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]

    garbage = b"zz\r\n{}\r\n0\r\n\r\n"  # not a chunk size
    answer = _raw(runtime, _signed_request(sandbox, b"{}", "Transfer-Encoding: chunked\r\n\r\n") + garbage + smuggled)
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1 ") == 1, answer

    answer = _raw(runtime, b"POST /webhook HTTP/1.1\r\nHost: jitr\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 501 "), answer
    assert _queued_jobs(sandbox) == []


def test_bodies_over_the_limit_and_oversized_headers_are_refused(served):
    sandbox, runtime = served
    limit = sandbox.app.settings.max_body_bytes

    # Each refusal comes when the last byte sent arrives: nothing is left unread when the server
    # closes, so the answer is not lost to a reset.
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    stream = (chunk * (limit // len(chunk) + 2))[: limit + 1]
    answer = _raw(runtime, _signed_request(sandbox, b"", "Transfer-Encoding: chunked\r\n\r\n") + stream)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"error": f"body exceeds {limit} bytes"}

    head = b"GET /healthz HTTP/1.1\r\nHost: jitr\r\nX-Big: "
    answer = _raw(runtime, head + b"a" * (LIMITS.max_header_bytes - len(head)))
    assert answer.split(b" ", 2)[1] == b"431", answer[:200]
    assert _queued_jobs(sandbox) == []


def test_an_idle_keep_alive_connection_is_closed(served):
    _, runtime = served
    conn = http.client.HTTPConnection(*_address(runtime), timeout=deadline_s(30))
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        sock = conn.sock
        assert sock is not None
        wait_for(lambda: sock.recv(1) == b"", 60, "the idle connection to be closed")
    finally:
        conn.close()


@pytest.mark.parametrize("option", ["--http-threads=0", "--http-connections=-1", "--http-request-timeout=abc"])
def test_serve_refuses_limits_that_are_not_positive(option, capsys):
    from jitr_functions.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["serve", option])
    assert exit_.value.code == 2
    assert option.split("=")[0] in capsys.readouterr().err


class HoldEnqueues:
    """Holds the webhook inside its enqueue of a ``jobs`` message until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    @hookimpl(tryfirst=True)
    def jitr_enqueue(self, queue: str, message: QueueMessage, delay_s: int, settings: Settings) -> None:
        if queue == "jobs" and not self.release.is_set():
            self.entered.set()
            self.release.wait(deadline_s(30))


def _accepts(runtime: LocalRuntime) -> bool:
    """Whether the server takes a new connection; a reset means it closed its listener mid-connect."""
    try:
        socket.create_connection(_address(runtime), timeout=deadline_s(5)).close()
    except (ConnectionRefusedError, ConnectionResetError):
        return False
    return True


def test_stop_answers_the_delivery_in_hand_and_takes_no_new_connection(e2e_sandbox, e2e_fixture):
    hold = HoldEnqueues()
    sandbox = e2e_sandbox(pools=[POOL], intervals=QUIET, workers=0, extra_plugins=[("e2e-hold-enqueue", hold)])
    runtime = sandbox.runtime
    body = _delivery(e2e_fixture("webhooks/workflow_job.queued.payload.json"), 7301)
    answers: list[tuple[int, dict]] = []
    headers = webhook_headers(sandbox.webhook_secret, body)
    poster = threading.Thread(target=lambda: answers.append(post(runtime.url + "/webhook", body, headers)))
    poster.start()
    assert hold.entered.wait(deadline_s(30)), "the delivery never reached the queue"

    stopper = threading.Thread(target=runtime.stop, kwargs={"timeout_s": 30})
    stopper.start()
    wait_for(lambda: not _accepts(runtime), 60, "the server to stop taking connections")
    assert poster.is_alive(), "the delivery in hand was answered before it was released"
    hold.release.set()
    poster.join(deadline_s(30))
    stopper.join(deadline_s(30))

    assert answers == [(202, {"queued": "jobs"})]
    assert _queued_jobs(sandbox) == [7301]
