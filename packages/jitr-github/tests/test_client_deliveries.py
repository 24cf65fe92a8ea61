"""Redelivering the App's failed webhook deliveries: each failed event once, none already delivered."""

from __future__ import annotations

from github_support import FakeClock, SimFactory, WebhookReceiver, make_client
from jitr_github.simulator import Faults

SECRET = "redelivery-webhook-secret-0b6d"
ATTEMPTS = "POST /app/hook/deliveries/{delivery_id}/attempts"


def test_failed_deliveries_are_redelivered_until_each_event_arrived(
    make_sim: SimFactory, receiver: WebhookReceiver
) -> None:
    sim = make_sim(webhook_url=receiver.url, webhook_secret=SECRET)
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    receiver.status = 500
    for _ in range(3):
        sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.drain_webhooks()
    receiver.status = 200
    sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.drain_webhooks()
    assert client.redeliver_failed_deliveries(since=0) == 3
    assert sim.drain_webhooks()
    guids = {d.guid for d in sim.deliveries()}
    delivered = {d.guid for d in sim.deliveries() if d.ok}
    assert guids == delivered
    assert client.redeliver_failed_deliveries(since=0) == 0, "events delivered by a redelivery are left alone"


def test_an_event_still_failing_is_asked_for_once_per_sweep(make_sim: SimFactory, receiver: WebhookReceiver) -> None:
    sim = make_sim(webhook_url=receiver.url, webhook_secret=SECRET)
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    receiver.status = 502
    sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.drain_webhooks()
    assert client.redeliver_failed_deliveries(since=0) == 1
    assert sim.drain_webhooks()
    assert client.redeliver_failed_deliveries(since=0) == 1, "original and redelivery failed: one more attempt"
    assert sim.call_counts()[ATTEMPTS] == 2


def test_only_failures_since_the_given_time_are_redelivered(make_sim: SimFactory, receiver: WebhookReceiver) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock, webhook_url=receiver.url, webhook_secret=SECRET, faults=Faults(drop_webhook=1.0))
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim, clock=clock)
    sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.drain_webhooks()
    clock.advance(600)
    since = clock()
    sim.queue_job("octo-org/app", ["self-hosted"])
    sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.drain_webhooks()
    sim.faults = Faults()
    assert client.redeliver_failed_deliveries(since) == 2


def test_delivery_lists_are_followed_across_pages(make_sim: SimFactory, receiver: WebhookReceiver) -> None:
    sim = make_sim(webhook_url=receiver.url, webhook_secret=SECRET, faults=Faults(drop_webhook=1.0))
    sim.add_installation("octo-org", repos=["app"])
    client = make_client(sim)
    for _ in range(130):
        sim.queue_job("octo-org/app", ["self-hosted"])
    assert sim.drain_webhooks()
    sim.faults = Faults()
    assert client.redeliver_failed_deliveries(since=0) == 130
    assert sim.call_counts()["GET /app/hook/deliveries"] == 2
    assert sim.drain_webhooks()
    assert len(receiver.wait_for(130)) == 130
