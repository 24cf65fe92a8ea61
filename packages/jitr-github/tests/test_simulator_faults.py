"""Faults the simulator injects: seeded, reproducible, changeable at run time, shaped like GitHub's."""

from __future__ import annotations

import pytest
import requests
from github_support import FakeClock, RawApp, SimFactory, WebhookReceiver, wait_until
from jitr_github.simulator import Faults, GitHubSimulator

SECRET = "fault-test-webhook-secret-91c2"


def _dropped_pattern(make_sim: SimFactory, receiver_url: str, seed: int) -> list[bool]:
    """Which of 40 queued jobs lost their delivery, for one seed."""
    sim = make_sim(faults=Faults(seed=seed, drop_webhook=0.5), webhook_url=receiver_url, webhook_secret=SECRET)
    sim.add_installation("octo-org", repos=["app"])
    jobs = [sim.queue_job("octo-org/app", ["self-hosted"]) for _ in range(40)]
    assert sim.drain_webhooks()
    failed = {d.job_id for d in sim.deliveries() if not d.ok}
    return [job in failed for job in jobs]


def test_faults_repeat_for_the_same_seed(make_sim: SimFactory, receiver: WebhookReceiver) -> None:
    first = _dropped_pattern(make_sim, receiver.url, seed=7)
    second = _dropped_pattern(make_sim, receiver.url, seed=7)
    other = _dropped_pattern(make_sim, receiver.url, seed=8)
    assert first == second
    assert first != other
    assert 0 < sum(first) < 40


def test_duplicates_carry_the_same_delivery_guid(make_sim: SimFactory, receiver: WebhookReceiver) -> None:
    sim = make_sim(faults=Faults(duplicate_webhook=1.0), webhook_url=receiver.url, webhook_secret=SECRET)
    sim.add_installation("octo-org", repos=["app"])
    sim.queue_job("octo-org/app", ["self-hosted"])
    received = receiver.wait_for(2)
    assert len(received) == 2
    assert received[0].headers["X-GitHub-Delivery"] == received[1].headers["X-GitHub-Delivery"]
    assert received[0].body == received[1].body


def test_a_held_back_delivery_is_overtaken_by_later_events(make_sim: SimFactory, receiver: WebhookReceiver) -> None:
    sim = make_sim(faults=Faults(reorder=1.0, reorder_hold_s=60), webhook_url=receiver.url, webhook_secret=SECRET)
    sim.add_installation("octo-org", repos=["app"])
    job = sim.queue_job("octo-org/app", ["self-hosted"])  # its "queued" is held back for a minute
    sim.faults = Faults()
    sim.cancel_job(job)
    (first,) = receiver.wait_for(1)
    assert first.payload()["action"] == "completed", "the later event arrived first"
    assert wait_until(lambda: len(sim.deliveries()) == 1)
    assert [d.action for d in sim.deliveries()] == ["completed"]


def test_dropped_deliveries_never_reach_the_receiver(make_sim: SimFactory, receiver: WebhookReceiver) -> None:
    sim = make_sim(faults=Faults(drop_webhook=1.0), webhook_url=receiver.url, webhook_secret=SECRET)
    sim.add_installation("octo-org", repos=["app"])
    sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.drain_webhooks()
    (lost,) = sim.deliveries()
    assert (lost.ok, lost.status_code) == (False, 0)
    assert receiver.received == []


def test_http_faults_answer_5xx_and_429_with_retry_after(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    installation = sim.add_installation("octo-org", repos=["app"])
    app = RawApp(sim)
    token = app.token(installation)
    url = f"{sim.base_url}/repos/octo-org/app/actions/runners"
    headers = {"Authorization": f"Bearer {token}"}
    sim.faults = Faults(http_5xx=1.0)
    assert requests.get(url, headers=headers).status_code in (502, 503, 504)
    sim.faults = Faults(http_429=1.0, retry_after_s=7)
    limited = requests.get(url, headers=headers)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert "secondary rate limit" in limited.json()["message"]
    sim.faults = Faults()
    assert requests.get(url, headers=headers).status_code == 200


def test_scripted_failures_hit_the_next_matching_calls_only(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    installation = sim.add_installation("octo-org", repos=["app"])
    token = RawApp(sim).token(installation)
    headers = {"Authorization": f"Bearer {token}"}
    sim.fail_next(2, 502, path_contains="/actions/runners")
    assert requests.get(f"{sim.base_url}/rate_limit", headers=headers).status_code == 200
    statuses = [
        requests.get(f"{sim.base_url}/repos/octo-org/app/actions/runners", headers=headers).status_code
        for _ in range(3)
    ]
    assert statuses == [502, 502, 200]


def test_rate_limit_exhaustion_answers_403_with_its_headers(make_sim: SimFactory) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock, faults=Faults(rate_limit=3, rate_limit_window_s=60))
    installation = sim.add_installation("octo-org", repos=["app"])
    token = RawApp(sim).token(installation)
    url = f"{sim.base_url}/repos/octo-org/app/actions/runners"
    headers = {"Authorization": f"Bearer {token}"}
    remaining = [requests.get(url, headers=headers).headers["x-ratelimit-remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    refused = requests.get(url, headers=headers)
    assert refused.status_code == 403
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert float(refused.headers["x-ratelimit-reset"]) > clock()
    assert refused.json()["message"] == f"API rate limit exceeded for installation ID {installation}."
    assert requests.get(f"{sim.base_url}/rate_limit", headers=headers).status_code == 200, "/rate_limit is free"
    clock.advance(61)
    assert requests.get(url, headers=headers).headers["x-ratelimit-remaining"] == "2", "a new window starts"


def test_not_modified_answers_cost_no_rate_limit(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    installation = sim.add_installation("octo-org", repos=["app"])
    token = RawApp(sim).token(installation)
    url = f"{sim.base_url}/repos/octo-org/app/actions/runs?status=queued"
    first = requests.get(url, headers={"Authorization": f"Bearer {token}"})
    etag = first.headers["ETag"]
    again = requests.get(url, headers={"Authorization": f"Bearer {token}", "If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["x-ratelimit-remaining"] == first.headers["x-ratelimit-remaining"]
    sim.queue_job("octo-org/app", ["self-hosted"])
    changed = requests.get(url, headers={"Authorization": f"Bearer {token}", "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["total_count"] == 1


def test_jit_name_conflicts_leave_a_stale_runner_holding_the_name(make_sim: SimFactory) -> None:
    sim = make_sim(faults=Faults(jit_409=1.0))
    installation = sim.add_installation("octo-org", repos=["app"])
    app = RawApp(sim)
    body = {"name": "jitr-pool-1-1", "runner_group_id": 1, "labels": ["self-hosted"]}
    path = "/repos/{owner}/{repo}/actions/runners/generate-jitconfig"
    answer = app.call("POST", path, 409, app.token(installation), json=body, owner="octo-org", repo="app")
    assert "already exists" in answer["message"]
    (stale,) = sim.runners("octo-org", "app")
    assert (stale.name, stale.status, stale.busy) == ("jitr-pool-1-1", "offline", False)


def test_call_counts_are_kept_per_endpoint(github_simulator: GitHubSimulator) -> None:
    sim = github_simulator
    installation = sim.add_installation("octo-org", repos=["app"])
    app = RawApp(sim)
    token = app.token(installation)
    for _ in range(3):
        app.call("GET", "/repos/{owner}/{repo}/actions/runners", 200, token, owner="octo-org", repo="app")
    counts = sim.call_counts()
    assert counts["GET /repos/{owner}/{repo}/actions/runners"] == 3
    assert counts["POST /app/installations/{installation_id}/access_tokens"] == 1
    sim.reset_call_counts()
    assert sim.call_counts() == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"drop_webhook": 1.5}, "probability"), ({"latency_s": -1}, "negative"), ({"rate_limit": 0}, "at least 1")],
)
def test_fault_settings_are_validated(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults.from_dict(dict(settings))


def test_unknown_fault_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault settings"):
        Faults.from_dict({"drop_webhooks": 0.1})
