"""Exact caps on DynamoDB: claims counted in counter items in one transaction, on a moto server."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from awsworld import World
from jitr_aws.counts import counter_key
from jitr_aws.dynamodb import create_table
from jitr_core.backend import Backend
from jitr_core.model import Admission, Record
from jitr_core.plugins import JitrPluginManager


@pytest.fixture
def fresh(world: World, plugin_manager: JitrPluginManager, unique: Callable[[str], str]) -> Backend:
    """A backend on a table of its own, so the counters start at nothing."""
    settings = world.settings(table=unique("jitr-caps"))
    create_table(settings)
    return Backend(plugin_manager, settings)


def _claim(name: str, pool: str) -> Record:
    now = time.time()
    return Record("runner", name, "claimed", pool, 1, now, now, None, {"job_id": 1, "attempt": 1})


def _count(backend: Backend, world: World, pool: str | None) -> int:
    table = backend.settings.section("aws")["table"]
    item = world.client("dynamodb").get_item(TableName=table, Key=counter_key(pool), ConsistentRead=True).get("Item")
    return int(item["n"]["N"]) if item else 0


def _counts(backend: Backend, world: World) -> tuple[int, int, int]:
    return _count(backend, world, None), _count(backend, world, "a"), _count(backend, world, "b")


def test_concurrent_claims_never_pass_a_pool_or_the_global_cap(fresh: Backend, world: World) -> None:
    claims = [_claim(f"jitr-{'ab'[i % 2]}-{i}-1", "ab"[i % 2]) for i in range(40)]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda record: fresh.claim_runner(record, 3, 5), claims))

    admitted = [c for c, a in zip(claims, answers, strict=True) if a.ok]
    per_pool = Counter(c.pool for c in admitted)
    assert len(admitted) == 5 and max(per_pool.values()) <= 3, per_pool
    assert {a.refused_by for a in answers if not a.ok} <= {"pool", "global"}
    assert [c.key for c in claims if fresh.load("runner", c.key) is not None] == [c.key for c in admitted]
    assert _counts(fresh, world) == (5, per_pool["a"], per_pool["b"])
    assert fresh.claim_runner(admitted[0], 3, 5) == Admission(False, "exists")
    assert _counts(fresh, world) == (5, per_pool["a"], per_pool["b"])


def test_a_paused_pool_admits_no_claim_even_before_its_first(fresh: Backend, world: World) -> None:
    """``max_runners = 0`` pauses a pool: refused while its counter does not exist yet, as after."""
    assert fresh.claim_runner(_claim("jitr-a-1-1", "a"), 0, 5) == Admission(False, "pool")
    assert fresh.claim_runner(_claim("jitr-a-2-1", "a"), 1, 0) == Admission(False, "global")
    assert fresh.load("runner", "jitr-a-1-1") is None and _counts(fresh, world) == (0, 0, 0)


def test_a_runner_leaving_flight_frees_its_slot_exactly_once(fresh: Backend, world: World) -> None:
    first, second = _claim("jitr-a-1-1", "a"), _claim("jitr-a-2-1", "a")
    assert fresh.claim_runner(first, 2, 10).ok and fresh.claim_runner(second, 2, 10).ok
    assert fresh.claim_runner(_claim("jitr-a-3-1", "a"), 2, 10) == Admission(False, "pool")

    launched = replace(first, state="launched", version=2)
    assert fresh.replace(launched, 1)
    assert _counts(fresh, world) == (2, 2, 0)  # still in flight
    finished = replace(launched, state="finished", version=3, expires_at=time.time() + 3600)
    assert fresh.replace(finished, 2)
    assert not fresh.replace(finished, 2)  # a retried or late write at the same version
    assert fresh.replace(replace(finished, state="retired", version=4), 3)  # out of flight already
    assert _counts(fresh, world) == (1, 1, 0)

    assert fresh.delete("runner", second.key, expected_version=7) is False
    assert fresh.delete("runner", second.key, expected_version=1)
    assert fresh.delete("runner", second.key)
    assert _counts(fresh, world) == (0, 0, 0)
    assert fresh.claim_runner(_claim("jitr-a-3-1", "a"), 2, 10).ok


def test_scaledown_repair_sets_a_drifted_counter_to_the_records(fresh: Backend, world: World) -> None:
    assert fresh.claim_runner(_claim("jitr-a-1-1", "a"), 5, 5).ok
    table = fresh.settings.section("aws")["table"]
    ddb = world.client("dynamodb")
    for pool, wrong in ((None, 5), ("a", 4)):  # as a record removed behind jitr's back would leave them
        item = {**counter_key(pool), "n": {"N": str(wrong)}, "updated_at": {"N": "0"}}
        ddb.put_item(TableName=table, Item=item)
    assert fresh.claim_runner(_claim("jitr-a-2-1", "a"), 5, 5) == Admission(False, "global")

    assert fresh.repair_runner_counts() == 2
    assert _counts(fresh, world) == (1, 1, 0)
    assert fresh.repair_runner_counts() == 0
    assert fresh.claim_runner(_claim("jitr-a-2-1", "a"), 5, 5).ok


def test_a_counter_that_just_moved_is_left_to_settle(fresh: Backend, world: World) -> None:
    assert fresh.claim_runner(_claim("jitr-a-1-1", "a"), 5, 5).ok
    table = fresh.settings.section("aws")["table"]
    item = {**counter_key("a"), "n": {"N": "3"}, "updated_at": {"N": str(time.time())}}
    world.client("dynamodb").put_item(TableName=table, Item=item)

    assert fresh.repair_runner_counts() == 0
    assert _count(fresh, world, "a") == 3
