"""Retries, rate limits, timeouts and GitHub Enterprise Server URLs."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github_support import FakeClock, SimFactory, Sleeps, make_client
from jitr_core.errors import GitHubError, GitHubNotFoundError, GitHubRateLimitError, GitHubUnavailableError
from jitr_core.github import calls_done_by
from jitr_core.model import Scope
from jitr_core.secret import Secret
from jitr_github import GitHubClient
from jitr_github.manifest import convert_manifest_code
from jitr_github.simulator import Faults, GitHubSimulator

RUNNERS = "GET /repos/{owner}/{repo}/actions/runners"


def _setup(sim: GitHubSimulator) -> Scope:
    return Scope(sim.add_installation("octo-org", repos=["app"]), "octo-org", "app")


def test_server_errors_are_retried_with_growing_backoff(github_simulator: GitHubSimulator) -> None:
    scope = _setup(github_simulator)
    sleeps = Sleeps()
    client = make_client(github_simulator, sleep=sleeps, backoff_s=1.0, jitter=lambda: 1.0)
    client.list_runners(scope)  # token minted
    github_simulator.reset_call_counts()
    github_simulator.fail_next(3, 503)
    assert client.list_runners(scope) == []
    assert sleeps == [1.0, 2.0, 4.0]
    assert github_simulator.call_counts()[RUNNERS] == 4


def test_server_errors_that_persist_end_in_unavailable(github_simulator: GitHubSimulator) -> None:
    scope = _setup(github_simulator)
    client = make_client(github_simulator, sleep=Sleeps(), max_retries=2)
    client.list_runners(scope)
    github_simulator.reset_call_counts()
    github_simulator.fail_next(10, 502, path_contains="/actions/runners")
    with pytest.raises(GitHubUnavailableError) as failed:
        client.list_runners(scope)
    assert failed.value.status == 502
    assert github_simulator.call_counts()[RUNNERS] == 3


def test_a_short_retry_after_is_waited_out(github_simulator: GitHubSimulator) -> None:
    scope = _setup(github_simulator)
    sleeps = Sleeps()
    client = make_client(github_simulator, sleep=sleeps)
    client.list_runners(scope)
    github_simulator.fail_next(1, 429, retry_after=7)
    github_simulator.fail_next(1, 403, retry_after=3)
    assert client.list_runners(scope) == []
    assert sleeps == [7.0, 3.0]


def test_a_long_retry_after_is_raised_not_slept(github_simulator: GitHubSimulator) -> None:
    scope = _setup(github_simulator)
    sleeps = Sleeps()
    client = make_client(github_simulator, sleep=sleeps, max_rate_limit_wait_s=60)
    client.list_runners(scope)
    github_simulator.fail_next(1, 429, retry_after=120)
    with pytest.raises(GitHubRateLimitError) as limited:
        client.list_runners(scope)
    assert (limited.value.retry_after, limited.value.status) == (120.0, 429)
    assert sleeps == []


def test_random_secondary_limits_are_ridden_through(make_sim: SimFactory) -> None:
    sim = make_sim(faults=Faults(seed=11, http_429=0.3, http_5xx=0.2, retry_after_s=2))
    scope = _setup(sim)
    sleeps = Sleeps()
    client = make_client(sim, sleep=sleeps, max_retries=8)
    for index in range(20):
        client.generate_jit_config(scope, f"runner-{index}", ["self-hosted"], "")
    assert len(client.list_runners(scope)) == 20
    assert 2.0 in sleeps


def test_an_exhausted_rate_limit_waits_for_its_reset_when_that_is_soon(make_sim: SimFactory) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock, faults=Faults(rate_limit=3, rate_limit_window_s=30))
    scope = _setup(sim)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    client = make_client(sim, clock=clock, sleep=sleep)
    for _ in range(5):
        client.list_runners(scope)
    assert waits, "the client waited for the window to reset"
    assert all(0 < wait <= 31 for wait in waits)
    assert client.rate_limit_remaining is not None


def test_an_exhausted_rate_limit_far_from_reset_fails_fast(make_sim: SimFactory) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock, faults=Faults(rate_limit=2, rate_limit_window_s=3600))
    scope = _setup(sim)
    client = make_client(sim, clock=clock, sleep=Sleeps())
    client.list_runners(scope)
    client.list_runners(scope)
    assert client.rate_limits()[f"installation:{scope.installation_id}"].remaining == 0
    calls = sim.call_counts()[RUNNERS]
    with pytest.raises(GitHubRateLimitError) as limited:
        client.list_runners(scope)
    assert 3500 < limited.value.retry_after <= 3601
    assert sim.call_counts()[RUNNERS] == calls, "a known-exhausted installation is not called"
    other = Scope(sim.add_installation("other-org", repos=["app"]), "other-org", "app")
    assert client.list_runners(other) == [], "another tenant is not held up"


def test_rate_limit_remaining_follows_the_headers(github_simulator: GitHubSimulator) -> None:
    scope = _setup(github_simulator)
    client = make_client(github_simulator)
    assert client.rate_limit_remaining is None
    client.list_runners(scope)
    limits = client.rate_limits()
    assert limits[f"installation:{scope.installation_id}"].remaining == 4999
    assert limits["app"].remaining == 4999, "the token request counts against the App"
    client.list_runners(scope)
    assert client.rate_limit_remaining == 4998
    assert client.fetch_rate_limit(scope.installation_id).remaining == 4998, "/rate_limit itself is free"
    assert client.fetch_rate_limit().remaining == 4999


def test_an_unreachable_github_is_unavailable_after_retries(github_simulator: GitHubSimulator) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    client = GitHubClient(
        str(github_simulator.app_id), Secret(github_simulator.private_key_pem), f"http://127.0.0.1:{port}",
        sleep=sleeps, max_retries=3,
    )  # fmt: skip
    with pytest.raises(GitHubUnavailableError, match="did not answer"):
        client.installation_for("octo-org")
    assert len(sleeps) == 3


def test_slow_answers_time_out_and_are_retried(make_sim: SimFactory) -> None:
    sim = make_sim()
    scope = _setup(sim)
    client = make_client(sim, timeout=0.2, max_retries=1, sleep=Sleeps())
    client.list_runners(scope)
    sim.faults = Faults(latency_s=1.0)
    with pytest.raises(GitHubUnavailableError, match="ReadTimeout"):
        client.list_runners(scope)


class ClockedSleeps(Sleeps):
    """Sleeps that move ``clock`` on by what they would have slept."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        super().__call__(seconds)
        self.clock.advance(seconds)


def test_within_a_deadline_server_errors_are_retried_only_while_time_is_left(github_simulator: GitHubSimulator) -> None:
    scope = _setup(github_simulator)
    clock = FakeClock(time.time())
    sleeps = ClockedSleeps(clock)
    client = make_client(github_simulator, clock=clock, sleep=sleeps, backoff_s=1.0, jitter=lambda: 1.0)
    client.list_runners(scope)
    github_simulator.reset_call_counts()
    github_simulator.fail_next(10, 503, path_contains="/actions/runners")
    with calls_done_by(clock() + 5), pytest.raises(GitHubUnavailableError, match="deadline leaves no time to retry"):
        client.list_runners(scope)
    assert sleeps == [1.0, 2.0]  # a third wait (4 s) would end past the deadline
    assert github_simulator.call_counts()[RUNNERS] == 3


def test_within_a_deadline_a_rate_limit_wait_past_it_is_raised_not_slept(github_simulator: GitHubSimulator) -> None:
    scope = _setup(github_simulator)
    clock = FakeClock(time.time())
    sleeps = ClockedSleeps(clock)
    client = make_client(github_simulator, clock=clock, sleep=sleeps)
    client.list_runners(scope)
    github_simulator.fail_next(1, 429, retry_after=7)
    with calls_done_by(clock() + 5), pytest.raises(GitHubRateLimitError) as limited:
        client.list_runners(scope)
    assert limited.value.retry_after == 7.0 and sleeps == []
    github_simulator.fail_next(1, 429, retry_after=3)
    with calls_done_by(clock() + 5):
        assert client.list_runners(scope) == []  # a wait that fits is waited out
    assert sleeps == [3.0]


def test_a_call_past_its_deadline_is_not_made(github_simulator: GitHubSimulator) -> None:
    scope = _setup(github_simulator)
    client = make_client(github_simulator)
    client.list_runners(scope)
    github_simulator.reset_call_counts()
    with (
        calls_done_by(time.time() + 60),
        calls_done_by(time.time() - 1),  # nested: the earlier holds
        pytest.raises(GitHubUnavailableError, match="deadline has passed"),
    ):
        client.list_runners(scope)
    assert RUNNERS not in github_simulator.call_counts()
    assert client.list_runners(scope) == []  # outside, unbounded again


def test_within_a_deadline_a_slow_answer_is_read_no_longer_than_it_leaves(make_sim: SimFactory) -> None:
    sim = make_sim()
    scope = _setup(sim)
    client = make_client(sim, timeout=30, max_retries=0)
    client.list_runners(scope)
    sim.faults = Faults(latency_s=3.0)
    with calls_done_by(time.time() + 0.5), pytest.raises(GitHubUnavailableError, match="ReadTimeout"):
        client.list_runners(scope)


def test_github_enterprise_server_urls_keep_their_path(make_sim: SimFactory) -> None:
    sim = make_sim(api_prefix="/api/v3")
    assert sim.base_url.endswith("/api/v3")
    installation = sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    scope = Scope(None, "octo-org", "app")
    assert client.installation_for("octo-org", "app") == installation
    for index in range(101):
        client.generate_jit_config(scope, f"ghes-{index}", ["self-hosted"], "")
    assert len(client.list_runners(scope)) == 101
    sim.queue_job("octo-org/app", ["self-hosted", "nothing-matches"])
    assert len(client.queued_jobs(scope)) == 1
    without_prefix = GitHubClient(str(sim.app_id), Secret(sim.private_key_pem), sim.root_url, sleep=Sleeps())
    with pytest.raises(GitHubNotFoundError):
        without_prefix.installation_for("octo-org", "app")


class _Hostile(BaseHTTPRequestHandler):
    """A GitHub of answers the simulator never gives: runner registrations counted in a bucket of
    their own, spent (``/generate-jitconfig``), a body nested past any parser's depth (``/nested``),
    an answer cut off mid-body (``/app-manifests``); core answers otherwise."""

    reset = str(int(time.time()) + 3000)
    calls: list[str] = []

    def _answer(self, status: int, body: object, resource: str = "core", remaining: int = 4990) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for name, value in {
            "limit": "5000",
            "remaining": str(remaining),
            "reset": self.reset,
            "resource": resource,
        }.items():
            self.send_header(f"x-ratelimit-{name}", value)
        self.send_header("Content-Length", str(len(raw) * (2 if "/app-manifests/" in self.path else 1)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        self.calls.append(self.path)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/access_tokens"):
            self._answer(201, {"token": "ghs_hostile", "expires_at": "2099-01-01T00:00:00Z"})
        elif self.path.endswith("/generate-jitconfig"):
            jit = {"runner": {"id": 1, "name": "r1"}, "encoded_jit_config": "e30="}
            self._answer(201, jit, resource="actions_runner_registration", remaining=0)
        else:  # a manifest conversion, its connection dropped half-way (Content-Length says twice as much)
            self._answer(201, b'{"id": 1, "slug": "x", "pem": "-----BEGIN RSA PRIVATE KEY-----')
            self.close_connection = True

    def do_GET(self) -> None:
        nested = "nested" in self.path
        self._answer(200, b"[" * 100_000 + b"]" * 100_000 if nested else {"total_count": 0, "runners": []})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[str]:
    _Hostile.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _app_key() -> Secret:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return Secret(pem.decode())


def test_a_spent_registration_bucket_does_not_stop_core_calls(hostile: str) -> None:
    """GitHub counts runner registrations in a bucket of their own (``x-ratelimit-resource``):
    that one spent, the installation's core calls go on, and the core window is the one kept."""
    client = GitHubClient("1", _app_key(), hostile)
    scope = Scope(7, "o", "r")
    client.generate_jit_config(scope, "r1", ["self-hosted"], "")

    assert client.list_runners(scope) == []
    assert client.rate_limit_remaining == 4990
    assert {limit.resource for limit in client.rate_limits().values()} == {"core"}


def test_a_body_nested_past_the_parsers_depth_is_a_github_error(hostile: str) -> None:
    client = GitHubClient("1", _app_key(), hostile, max_retries=0)
    with pytest.raises(GitHubError, match="not JSON"):
        client.list_runners(Scope(7, "o", "nested"))


def test_a_manifest_conversion_cut_off_mid_answer_is_retried_then_unavailable(hostile: str) -> None:
    with pytest.raises(GitHubUnavailableError, match="ChunkedEncodingError"):
        convert_manifest_code(hostile, "abc", sleep=lambda s: None)
    assert len(_Hostile.calls) == 3  # the first try and max_retries (2) more
