"""The embedded queue beyond the contract: receipts, workers in other processes, waiting, dead letters."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from jitr_core.backend import Backend
from jitr_core.embedded import wait_for_messages
from jitr_core.errors import PluginError
from jitr_core.model import QueueMessage
from jitr_core.services.consume import Disposition, consume
from jitr_core.testing.environment import deadline_s


def test_a_stale_receipt_cannot_acknowledge_a_redelivered_message(embedded_backend: Backend) -> None:
    backend = embedded_backend
    backend.enqueue("jobs", QueueMessage('{"v":1}'))
    (first,) = backend.receive("jobs", 10, 0)  # visible again at once: as if the worker stalled
    (second,) = backend.receive("jobs", 10, 60)
    assert (first.receive_count, second.receive_count) == (1, 2)
    assert not backend.ack("jobs", first.receipt)
    assert backend.ack("jobs", second.receipt)
    assert not backend.ack("jobs", second.receipt)
    assert not backend.ack("jobs", "not-a-receipt")


def test_concurrent_workers_never_share_a_delivery(embedded_backend: Backend) -> None:
    backend = embedded_backend
    bodies = {f'{{"n":{i}}}' for i in range(400)}
    for body in bodies:
        backend.enqueue("jobs", QueueMessage(body))
    barrier = threading.Barrier(8)

    def work(_: int) -> list[str]:
        barrier.wait()
        got: list[str] = []
        while messages := backend.receive("jobs", 7, 60):
            got += [m.body for m in messages]
        return got

    with ThreadPoolExecutor(8) as pool:
        received = [body for got in pool.map(work, range(8)) for body in got]
    assert sorted(received) == sorted(bodies)


def test_logical_queues_are_separate(embedded_backend: Backend) -> None:
    backend = embedded_backend
    backend.enqueue("lifecycle", QueueMessage("for lifecycle"))
    assert backend.receive("jobs", 10, 60) == []
    assert [m.body for m in backend.receive("lifecycle", 10, 60)] == ["for lifecycle"]


def test_a_message_sent_by_another_process_reaches_a_waiting_worker(
    embedded_backend: Backend, run_embedded_python: Callable[..., subprocess.Popen[str]]
) -> None:
    backend = embedded_backend
    backend.enqueue("jobs", QueueMessage("warm-up"))  # open the state dir before the other process races us
    sender = run_embedded_python(
        """
        from jitr_core.model import QueueMessage
        for i in range(300):
            backend.enqueue("jobs", QueueMessage(f"from-child-{i}", {"i": str(i)}))
        """
    )
    received: dict[str, str] = {}
    deadline = time.monotonic() + deadline_s(60)
    while len(received) < 301 and time.monotonic() < deadline:
        if not wait_for_messages("jobs", 1.0, backend.settings):
            continue
        for message in backend.receive("jobs", 10, 60):
            received[message.body] = message.attributes.get("i", "")
            assert backend.ack("jobs", message.receipt)
    assert sender.wait(30) == 0, sender.stderr.read() if sender.stderr else ""
    assert len(received) == 301
    assert all(received[f"from-child-{i}"] == str(i) for i in range(300))


def test_waiting_returns_when_a_message_arrives_or_the_time_is_up(embedded_backend: Backend) -> None:
    backend = embedded_backend
    assert not wait_for_messages("jobs", 0.3, backend.settings)
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(wait_for_messages("jobs", 30, backend.settings)))
    waiter.start()
    backend.enqueue("jobs", QueueMessage("wake up"))
    waiter.join(40)
    assert results == [True]
    backend.enqueue("lifecycle", QueueMessage("later"), delay_s=1)
    assert wait_for_messages("lifecycle", 30, backend.settings)
    assert [m.body for m in backend.receive("lifecycle", 10, 60)] == ["later"]


def test_dead_letters_keep_attributes_and_say_why(embedded_backend: Backend) -> None:
    backend = embedded_backend
    body = "poison-" + uuid.uuid4().hex
    assert backend.dead_letter("jobs", QueueMessage(body, {"type": "job"}), "body is not JSON")
    backend.enqueue("jobs", QueueMessage("retried", {"type": "job"}))
    assert [len(backend.receive("jobs", 10, 0)) for _ in range(3)] == [1, 1, 1]
    assert backend.receive("jobs", 10, 0) == []  # a fourth delivery would pass max_receive_count: buried
    dead = {m.body: m for m in backend.dead_letters("jobs")}
    assert dead[body].attributes == {"type": "job", "dead_letter_reason": "body is not JSON"}
    assert dead["retried"].attributes["type"] == "job"
    assert "max_receive_count is 3" in dead["retried"].attributes["dead_letter_reason"]
    assert dead["retried"].receive_count == 3
    assert backend.receive("jobs", 10, 0) == []
    assert backend.dead_letters("lifecycle") == []


def test_dead_letters_are_pruned_after_finished_ttl(embedded_backend: Backend) -> None:
    backend = embedded_backend
    backend.dead_letter("jobs", QueueMessage('{"old":1}'), "poison")
    buried_by = time.time()
    ttl = backend.settings.finished_ttl_s

    assert backend.purge_expired(buried_by + ttl - 60) == 0  # younger than the TTL: kept
    assert [m.body for m in backend.dead_letters("jobs")] == ['{"old":1}']
    backend.dead_letter("lifecycle", QueueMessage('{"old":2}'), "poison")

    assert backend.purge_expired(time.time() + ttl + 1) == 2
    assert backend.dead_letters("jobs") == [] and backend.dead_letters("lifecycle") == []


def test_a_failure_on_the_last_try_is_dead_lettered_with_its_reason(embedded_backend: Backend) -> None:
    backend = embedded_backend
    backend.enqueue("jobs", QueueMessage('{"v":1}', {"type": "job"}))

    def broken_plugin(body: str) -> str:
        raise PluginError("no startup script is rendered while a plugin is broken: mirror (jitr-mirror 1.0)")

    outcomes = []
    while messages := backend.receive("jobs", 10, 0):
        (message,) = messages
        outcomes.append(
            (
                message.last_try,
                consume(backend, "jobs", message.body, broken_plugin, message.attributes, message.last_try),
            )
        )
        if outcomes[-1][1].disposition is Disposition.DONE:
            assert backend.ack("jobs", message.receipt)

    assert [last for last, _ in outcomes] == [False, False, True]  # max_receive_count is 3
    assert [o.disposition for _, o in outcomes] == [Disposition.RETRY, Disposition.RETRY, Disposition.DONE]
    (dead,) = backend.dead_letters("jobs")
    assert dead.attributes["type"] == "job"
    assert dead.attributes["dead_letter_reason"] == (
        "failed on its last try: no startup script is rendered while a plugin is broken: mirror (jitr-mirror 1.0)"
    )
