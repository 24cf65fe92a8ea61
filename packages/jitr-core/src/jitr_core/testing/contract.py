"""Contract tests shared by every backend (see the package docstring for the fixtures)."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace

import pytest

from ..backend import Backend
from ..errors import SecretNotFoundError
from ..model import LaunchRequest, QueueMessage, ReceivedMessage, Record, RecordQuery
from ..services.records import TIMELINE_MAX, step, with_steps
from .environment import deadline_s


def _kind() -> str:
    """A record kind of its own per test, so tests never see each other's records."""
    return "t" + uuid.uuid4().hex[:10]


def _wait_for(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + deadline_s(timeout_s)
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


@contextmanager
def _switching_often() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _race_to_create(backend: Backend, kind: str, key: str, racers: int) -> list[bool]:
    """Whether each of ``racers`` threads, released at once, created the record (its index in ``data``)."""
    now, barrier = time.time(), threading.Barrier(racers)

    def race(i: int) -> bool:
        record = Record(kind, key, state="claimed", created_at=now, updated_at=now, data={"racer": i})
        barrier.wait()
        return backend.create(record)

    with ThreadPoolExecutor(racers) as pool:
        return list(pool.map(race, range(racers)))


class StoreContract:
    """Create-if-absent, conditional writes, indexed queries with pagination, TTL."""

    pagination_records = 1500
    page_size = 150
    racers = 16
    race_rounds = 16

    def test_create_is_won_by_exactly_one_of_many_racers(self, backend: Backend) -> None:
        """Threads switch far more often than by default while they race, as on a busy machine, so
        a create that checks and then writes with nothing held in between is caught."""
        kind = _kind()
        with _switching_often():
            for key in (f"job-{round_}" for round_ in range(self.race_rounds)):
                results = _race_to_create(backend, kind, key, self.racers)
                assert results.count(True) == 1, f"{key}: {results.count(True)} racers created it"
                stored = backend.load(kind, key)
                assert stored is not None
                assert stored.data["racer"] == results.index(True)

    def test_load_of_an_absent_record_is_none(self, backend: Backend) -> None:
        assert backend.load(_kind(), "nothing") is None

    def test_record_round_trips_every_field(self, backend: Backend) -> None:
        kind = _kind()
        record = Record(
            kind,
            "k/1:2",
            state="launched",
            pool="linux-x64",
            version=1,
            created_at=1700000000.5,
            updated_at=1700000001.25,
            expires_at=time.time() + 3600,
            data={"vm_id": "i-0abc", "attempt": 2, "labels": ["self-hosted", "linux"], "nested": {"a": None}},
        )
        assert backend.create(record)
        loaded = backend.load(kind, "k/1:2")
        assert loaded is not None
        assert loaded == replace(record, data=loaded.data)
        assert dict(loaded.data) == dict(record.data)

    def test_a_full_job_timeline_round_trips_and_stays_small(self, backend: Backend) -> None:
        """A job record at its timeline's bound, every string at its cut, fits every store's item limit."""
        kind, at = _kind(), 1700000000.123
        data: dict[str, object] = {"attempt": 3, "queued_at": at}
        for i in range(TIMELINE_MAX + 3):
            entry = step("launch", at + i, candidate="c" * 500, outcome="no-capacity", code="\x1b" + "e" * 500)
            data.update(with_steps(data, entry))
        assert len(json.dumps(data)) < 64 * 1024  # DynamoDB items ≤ 400 KB, Firestore documents ≤ 1 MiB
        record = Record(kind, "42", state="queued", created_at=at, updated_at=at, data=data)
        assert backend.create(record)
        loaded = backend.load(kind, "42")
        assert loaded is not None and dict(loaded.data) == data
        assert loaded.data["timeline_dropped"] == 3 and len(loaded.data["timeline"]) == TIMELINE_MAX

    def test_replace_holds_only_at_the_expected_version(self, backend: Backend) -> None:
        kind, now = _kind(), time.time()
        assert backend.create(Record(kind, "r", state="claimed", created_at=now, updated_at=now))
        assert backend.replace(Record(kind, "r", state="launched", version=2, created_at=now, updated_at=now), 1)
        assert not backend.replace(Record(kind, "r", state="busy", version=2, created_at=now, updated_at=now), 1)
        stored = backend.load(kind, "r")
        assert stored is not None and stored.state == "launched" and stored.version == 2

    def test_replace_of_an_absent_record_fails(self, backend: Backend) -> None:
        assert not backend.replace(Record(_kind(), "ghost", state="busy", version=2), 1)

    def test_concurrent_replaces_at_one_version_have_one_winner(self, backend: Backend) -> None:
        kind, now = _kind(), time.time()
        assert backend.create(Record(kind, "r", state="claimed", created_at=now, updated_at=now))
        barrier = threading.Barrier(self.racers)

        def race(i: int) -> bool:
            barrier.wait()
            return backend.replace(
                Record(kind, "r", state="launched", version=2, created_at=now, updated_at=now, data={"i": i}), 1
            )

        with ThreadPoolExecutor(self.racers) as pool:
            assert list(pool.map(race, range(self.racers))).count(True) == 1

    def test_query_selects_by_state_pool_and_age_oldest_first(self, backend: Backend) -> None:
        kind, base = _kind(), time.time() - 1000
        for i, (state, pool) in enumerate(
            [("launched", "a"), ("launched", "b"), ("busy", "a"), ("launched", "a"), ("finished", "a")]
        ):
            t = base + i * 10
            assert backend.create(Record(kind, f"r{i}", state=state, pool=pool, created_at=t, updated_at=t))
        launched = backend.query(RecordQuery(kind, "launched"))
        assert [r.key for r in launched.records] == ["r0", "r1", "r3"]
        pool_a = backend.query(RecordQuery(kind, "launched", pool="a"))
        assert [r.key for r in pool_a.records] == ["r0", "r3"]
        old = backend.query(RecordQuery(kind, "launched", updated_before=base + 15))
        assert [r.key for r in old.records] == ["r0", "r1"]
        assert backend.query(RecordQuery(kind, "retired")).records == ()

    def test_query_follows_a_state_change(self, backend: Backend) -> None:
        kind, now = _kind(), time.time()
        assert backend.create(Record(kind, "r", state="claimed", created_at=now, updated_at=now))
        assert backend.replace(Record(kind, "r", state="busy", version=2, created_at=now, updated_at=now + 1), 1)
        assert backend.query(RecordQuery(kind, "claimed")).records == ()
        assert [r.key for r in backend.query(RecordQuery(kind, "busy")).records] == ["r"]

    def test_pagination_returns_every_record_once(self, backend: Backend) -> None:
        kind, base = _kind(), time.time() - 100000
        n = self.pagination_records
        with ThreadPoolExecutor(8) as pool:
            created = list(
                pool.map(
                    lambda i: backend.create(
                        Record(kind, f"r{i:05d}", state="launched", pool="p", created_at=base + i, updated_at=base + i)
                    ),
                    range(n),
                )
            )
        assert all(created)
        keys: list[str] = []
        pages = 0
        query = RecordQuery(kind, "launched", limit=self.page_size)
        page = backend.query(query)
        while True:
            pages += 1
            assert len(page.records) <= self.page_size
            keys.extend(r.key for r in page.records)
            if page.cursor is None:
                break
            page = backend.query(replace(query, cursor=page.cursor))
        assert len(keys) == n and len(set(keys)) == n
        assert keys == sorted(keys)  # oldest updated_at first
        assert pages >= n // self.page_size
        assert sum(1 for _ in backend.query_all(RecordQuery(kind, "launched", limit=self.page_size - 3))) == n

    def test_expired_records_are_invisible_and_purged(self, backend: Backend) -> None:
        kind, now = _kind(), time.time()
        assert backend.create(Record(kind, "old", state="finished", created_at=now, updated_at=now, expires_at=now - 5))
        assert backend.create(
            Record(kind, "new", state="finished", created_at=now, updated_at=now, expires_at=now + 3600)
        )
        assert backend.load(kind, "old") is None
        assert [r.key for r in backend.query(RecordQuery(kind, "finished")).records] == ["new"]
        assert backend.purge_expired(now) >= 0
        assert backend.load(kind, "old") is None
        assert backend.load(kind, "new") is not None

    def test_an_expired_record_can_be_claimed_again(self, backend: Backend) -> None:
        kind, now = _kind(), time.time()
        assert backend.create(Record(kind, "lease", state="held", created_at=now, updated_at=now, expires_at=now - 1))
        assert backend.create(Record(kind, "lease", state="held", created_at=now, updated_at=now, expires_at=now + 60))
        assert not backend.create(Record(kind, "lease", state="held", created_at=now, updated_at=now))

    def test_delete_is_conditional_when_asked(self, backend: Backend) -> None:
        kind, now = _kind(), time.time()
        assert backend.create(Record(kind, "r", state="busy", created_at=now, updated_at=now))
        assert not backend.delete(kind, "r", expected_version=7)
        assert backend.delete(kind, "r", expected_version=1)
        assert backend.load(kind, "r") is None
        assert backend.create(Record(kind, "r2", state="busy", created_at=now, updated_at=now))
        assert backend.delete(kind, "r2")


class QueueContract:
    """At-least-once delivery, visibility timeout, dead-lettering after N receives, delay.

    ``max_receive_count`` must match how the backend fixture configured its queues.
    """

    max_receive_count = 3
    queue = "jobs"
    wait_s = 30.0

    def _drain(self, backend: Backend) -> None:
        while messages := backend.receive(self.queue, 10, 60):
            for message in messages:
                backend.ack(self.queue, message.receipt)

    def _receive_body(self, backend: Backend, body: str, visibility_s: int = 30) -> list[str]:
        found: list[str] = []

        def poll() -> bool:
            for message in backend.receive(self.queue, 10, visibility_s):
                if message.body == body:
                    found.append(message.receipt)
            return bool(found)

        _wait_for(poll, self.wait_s)
        return found

    def test_a_message_is_delivered_until_acknowledged(self, backend: Backend) -> None:
        self._drain(backend)
        body = f'{{"v":1,"id":"{uuid.uuid4().hex}"}}'
        assert backend.enqueue(self.queue, QueueMessage(body, {"type": "job"}))
        receipts = self._receive_body(backend, body, visibility_s=1)
        assert receipts, "the message never arrived"
        again = self._receive_body(backend, body, visibility_s=30)
        assert again, "an unacknowledged message must come back after its visibility timeout"
        assert backend.ack(self.queue, again[0])
        time.sleep(1.5)
        assert all(m.body != body for m in backend.receive(self.queue, 10, 30))

    def test_a_received_message_is_hidden_for_its_visibility_timeout(self, backend: Backend) -> None:
        self._drain(backend)
        body = f'{{"v":1,"id":"{uuid.uuid4().hex}"}}'
        backend.enqueue(self.queue, QueueMessage(body))
        receipts = self._receive_body(backend, body, visibility_s=60)
        assert receipts
        assert all(m.body != body for m in backend.receive(self.queue, 10, 60))
        backend.ack(self.queue, receipts[0])

    def test_receive_count_grows_and_poison_messages_reach_the_dead_letter_queue(self, backend: Backend) -> None:
        self._drain(backend)
        body = f'{{"v":1,"poison":"{uuid.uuid4().hex}"}}'
        backend.enqueue(self.queue, QueueMessage(body))
        counts: list[int] = []

        def poll() -> bool:
            for message in backend.receive(self.queue, 10, 1):
                if message.body == body:
                    counts.append(message.receive_count)
            return len(counts) >= self.max_receive_count

        assert _wait_for(poll, self.wait_s * 2), f"received {counts}"
        assert counts == sorted(counts) and counts[0] == 1

        def dead() -> bool:
            backend.receive(self.queue, 10, 1)  # a receive past the limit moves it
            return any(m.body == body for m in backend.dead_letters(self.queue))

        assert _wait_for(dead, self.wait_s * 2), "the poison message never reached the dead-letter queue"
        assert all(m.body != body for m in backend.receive(self.queue, 10, 1))

    def test_a_delayed_message_waits(self, backend: Backend) -> None:
        self._drain(backend)
        body = f'{{"v":1,"delayed":"{uuid.uuid4().hex}"}}'
        backend.enqueue(self.queue, QueueMessage(body), delay_s=3)
        assert all(m.body != body for m in backend.receive(self.queue, 10, 30))
        assert self._receive_body(backend, body), "the delayed message never arrived"

    def test_attributes_travel_with_the_message(self, backend: Backend) -> None:
        self._drain(backend)
        body = f'{{"v":1,"attrs":"{uuid.uuid4().hex}"}}'
        backend.enqueue(self.queue, QueueMessage(body, {"type": "lifecycle", "job_id": "42"}))
        got: list[ReceivedMessage] = []

        def poll() -> bool:
            got.extend(m for m in backend.receive(self.queue, 10, 30) if m.body == body)
            return bool(got)

        assert _wait_for(poll, self.wait_s)
        assert got[0].attributes.get("type") == "lifecycle" and got[0].attributes.get("job_id") == "42"
        backend.ack(self.queue, got[0].receipt)


class VMContract:
    """Idempotent launch, list of managed VMs, terminate (twice is fine)."""

    def test_one_token_launches_one_vm(
        self, backend: Backend, launch_request: Callable[[str, str], LaunchRequest]
    ) -> None:
        name = f"jitr-contract-{uuid.uuid4().hex[:8]}"
        request = launch_request(name, uuid.uuid4().hex)
        first = backend.launch_vm(request)
        second = backend.launch_vm(request)
        assert first.vm_id == second.vm_id
        mine = [vm for vm in backend.list_vms() if vm.runner_name == name and vm.running]
        assert [vm.vm_id for vm in mine] == [first.vm_id]
        assert mine[0].pool == request.pool
        backend.terminate_vm(first.vm_id)

    def test_terminate_removes_the_vm_and_is_idempotent(
        self, backend: Backend, launch_request: Callable[[str, str], LaunchRequest]
    ) -> None:
        name = f"jitr-contract-{uuid.uuid4().hex[:8]}"
        result = backend.launch_vm(launch_request(name, uuid.uuid4().hex))
        assert backend.terminate_vm(result.vm_id)
        assert _wait_for(lambda: all(not vm.running for vm in backend.list_vms() if vm.vm_id == result.vm_id), 30)
        assert backend.terminate_vm(result.vm_id)

    def test_two_tokens_launch_two_vms(
        self, backend: Backend, launch_request: Callable[[str, str], LaunchRequest]
    ) -> None:
        a = backend.launch_vm(launch_request(f"jitr-contract-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex))
        b = backend.launch_vm(launch_request(f"jitr-contract-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex))
        assert a.vm_id != b.vm_id
        listed = {vm.vm_id for vm in backend.list_vms() if vm.running}
        assert {a.vm_id, b.vm_id} <= listed
        backend.terminate_vm(a.vm_id)
        backend.terminate_vm(b.vm_id)


class SecretsContract:
    """Secrets by reference; a missing secret is a clear error that never shows a value."""

    def test_a_secret_is_read_by_reference(self, backend: Backend, secret_reference: Callable[[str, str], str]) -> None:
        value = "s3cr3t-" + uuid.uuid4().hex
        reference = secret_reference("webhook_secret", value)
        with_ref = replace(backend.settings, secrets={**backend.settings.secrets, "webhook_secret": reference})
        assert Backend(backend.pm, with_ref).secret("webhook_secret") == value

    def test_a_missing_secret_is_a_clear_error(self, backend: Backend, missing_reference: str) -> None:
        with_ref = replace(backend.settings, secrets={**backend.settings.secrets, "webhook_secret": missing_reference})
        with pytest.raises(SecretNotFoundError, match="webhook_secret"):
            Backend(backend.pm, with_ref).secret("webhook_secret")
