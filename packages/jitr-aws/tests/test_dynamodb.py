"""The DynamoDB layout (table, index, TTL, items) and the store's guarantees beyond the contract."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from awsworld import World
from jitr_aws.clients import client
from jitr_aws.config import aws_config
from jitr_aws.dynamodb import INDEX_NAME, table_definition
from jitr_core.backend import Backend
from jitr_core.errors import SettingsError
from jitr_core.model import Record, RecordQuery


def _kind() -> str:
    return "k" + uuid.uuid4().hex[:10]


@pytest.fixture
def operations(backend: Backend) -> Iterator[list[str]]:
    """The DynamoDB operations the store calls while the test runs."""
    seen: list[str] = []
    events = client("dynamodb", aws_config(backend.settings)).meta.events

    def record(model: Any, **_: Any) -> None:
        seen.append(model.name)

    events.register("before-call.dynamodb", record, unique_id="jitr-test-operations")
    yield seen
    events.unregister("before-call.dynamodb", unique_id="jitr-test-operations")


def test_the_table_has_the_documented_key_index_and_ttl(world: World) -> None:
    ddb = world.client("dynamodb")
    table = ddb.describe_table(TableName=world.table)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == INDEX_NAME == "by_state"
    assert index["KeySchema"] == [
        {"AttributeName": "kind_state", "KeyType": "HASH"},
        {"AttributeName": "updated_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName=world.table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert table_definition(world.table)["TableName"] == world.table


def test_an_item_is_stored_as_documented(backend: Backend, world: World) -> None:
    kind, now = _kind(), time.time()
    record = Record(
        kind,
        "job/7",
        state="queued",
        pool="gpu",
        created_at=now,
        updated_at=now,
        expires_at=now + 60,
        data={"attempt": 1, "vm": None},
    )
    assert backend.create(record)
    item = world.client("dynamodb").get_item(TableName=world.table, Key={"pk": {"S": f"{kind}#job/7"}})["Item"]
    assert item["kind_state"] == {"S": f"{kind}#queued"}
    assert (item["kind"], item["key"], item["state"], item["pool"]) == (
        {"S": kind},
        {"S": "job/7"},
        {"S": "queued"},
        {"S": "gpu"},
    )
    assert item["version"] == {"N": "1"}
    assert float(item["expires_at"]["N"]) == record.expires_at  # a number, as TTL requires
    assert json.loads(item["data"]["S"]) == {"attempt": 1, "vm": None}


def test_data_round_trips_exactly(backend: Backend) -> None:
    kind = _kind()
    data = {
        "floats": [0.1, 1e-7, 123456789.123456789, -2.5e300, 5e-324],
        "ints": [0, -1, 2**62],
        "text": 'ünïcode \u2603 "quoted" #hash',
        "nested": {"deeper": {"none": None, "empty": [], "flag": False}},
    }
    assert backend.create(Record(kind, "r", created_at=1e-7, updated_at=1.7e9 + 0.123456, data=data))
    loaded = backend.load(kind, "r")
    assert loaded is not None and dict(loaded.data) == data
    assert (loaded.created_at, loaded.updated_at) == (1e-7, 1.7e9 + 0.123456)


def test_a_pool_filter_still_fills_each_page(backend: Backend, operations: list[str]) -> None:
    kind, base = _kind(), time.time() - 1000
    for i in range(30):
        assert backend.create(
            Record(
                kind,
                f"r{i:02d}",
                state="launched",
                pool="a" if i % 3 == 0 else "b",
                created_at=base + i,
                updated_at=base + i,
            )
        )
    operations.clear()
    query = RecordQuery(kind, "launched", pool="a", limit=4)
    first = backend.query(query)
    assert [r.key for r in first.records] == ["r00", "r03", "r06", "r09"]
    assert first.cursor is not None
    rest = list(backend.query_all(replace(query, cursor=first.cursor)))
    assert [r.key for r in rest] == ["r12", "r15", "r18", "r21", "r24", "r27"]
    assert set(operations) == {"Query"}  # an index query; never a Scan


def test_periodic_paths_never_scan(backend: Backend, operations: list[str]) -> None:
    kind, now = _kind(), time.time()
    backend.create(Record(kind, "r", state="busy", created_at=now, updated_at=now))
    backend.load(kind, "r")
    backend.query(RecordQuery(kind, "busy", updated_before=now + 1))
    assert backend.purge_expired(now) == 0  # DynamoDB's TTL deletes; reads hide expired records meanwhile
    assert "Scan" not in operations and "Query" in operations


def test_a_replace_of_an_expired_record_fails(backend: Backend) -> None:
    kind, now = _kind(), time.time()
    assert backend.create(Record(kind, "r", state="finished", created_at=now, updated_at=now, expires_at=now - 1))
    assert not backend.replace(Record(kind, "r", state="busy", version=2, created_at=now, updated_at=now), 1)


def test_a_cursor_is_opaque_and_checked(backend: Backend) -> None:
    kind, now = _kind(), time.time()
    for i in range(3):
        backend.create(Record(kind, f"r{i}", state="busy", created_at=now, updated_at=now + i))
    page = backend.query(RecordQuery(kind, "busy", limit=1))
    assert page.cursor is not None and page.cursor.isascii() and "{" not in page.cursor
    with pytest.raises(ValueError, match="cursor"):
        backend.query(RecordQuery(kind, "busy", cursor="not-a-cursor"))


def test_a_kind_with_a_separator_is_refused(backend: Backend) -> None:
    with pytest.raises(ValueError, match="record kind"):
        backend.create(Record("job#1", "x"))


def test_the_store_needs_a_table_named_in_the_settings(world: World) -> None:
    with pytest.raises(SettingsError, match=r"aws\.table in test\.toml is required when the store provider is aws"):
        aws_config(world.settings(table=None))
