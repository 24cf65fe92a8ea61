"""Exact caps on DynamoDB: counts of runners in flight, moved in one transaction with the records.

An index read is eventually consistent, so counting runner records through ``by_state`` right
after a claim can miss claims made an instant before, and a burst could pass a cap. Instead the
table holds counter items (no ``kind_state``, so never in the index): ``counter#pool:<pool>``
per pool and ``counter#all`` for every pool, each with ``n`` (runners in flight: claimed,
launched, busy) and ``updated_at``.

- A claim is one ``TransactWriteItems``: the runner record (created if absent or expired) and
  an increment of both counters, each conditioned on being under its cap. It fails as a whole,
  naming what refused it.
- A runner record moving out of flight (finished, retired) or deleted while in flight is written
  in one transaction with the decrement, conditioned on its version and on its stored state
  still being in flight: a retried or duplicated write cannot decrement twice, and a write that
  loses a race decrements nothing. A record moving into flight any other way is counted alike.
- Scale-down repairs a counter that drifted from the records (a record deleted behind jitr's
  back): a counter that has not moved for :data:`SETTLE_S` is set to what the index counts, on
  the condition that it is still unchanged, so the index has caught up with every claim it counted.

Transactions that collide on a counter (``TransactionConflict``) are tried again after a short
random pause; botocore gives each call one ``ClientRequestToken``, so its own retries of a
transaction that went through do not apply it twice.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from jitr_core.model import IN_FLIGHT_RUNNER_STATES, Admission, Record, RecordQuery, Written
from jitr_core.settings import Settings

from . import dynamodb
from .clients import client
from .config import AwsConfig
from .faults import backend_error, error_code

RUNNER = "runner"
IN_FLIGHT = tuple(str(state) for state in IN_FLIGHT_RUNNER_STATES)
SETTLE_S = 10.0
CONFLICT_TRIES = 10

_CANCELLED = "TransactionCanceledException"
_CONDITION_FAILED = "ConditionalCheckFailed"
_CONFLICT = "TransactionConflict"
_ABSENT = "attribute_not_exists(#pk) OR #e <= :now"
_LIVE_AT_VERSION = "#v = :expected AND (attribute_not_exists(#e) OR #e > :now)"
_FLYING = "#s IN (:s0, :s1, :s2)"


def counter_key(pool: str | None) -> dict[str, Any]:
    """The key of pool ``pool``'s counter, or of the counter over all pools (``None``)."""
    name = "all" if pool is None else f"pool:{pool}"
    return {dynamodb.PARTITION_KEY: {"S": f"counter#{name}"}}


def claim(record: Record, pool_max: int, global_max: int, config: AwsConfig) -> Admission:
    """Create the claim ``record`` and count it, only while both counters are under their caps."""
    cancelled = _transact(
        config,
        [
            _put(record, config, _ABSENT),
            _bump(record.pool, 1, config, cap=pool_max),
            _bump(None, 1, config, cap=global_max),
        ],
        f"runner {record.key!r}",
    )
    if cancelled is None:
        return Admission(True)
    if cancelled[0]:
        return Admission(False, "exists")
    return Admission(False, "pool" if cancelled[1] else "global")


def put(record: Record, expected_version: int | None, config: AwsConfig) -> Written:
    """:func:`jitr_aws.dynamodb.put` for a runner record, moving the counters when it enters or leaves flight."""
    about = f"runner {record.key!r}"
    flying = record.state in IN_FLIGHT
    if expected_version is None:
        if not flying:
            return dynamodb.put(record, None, config)
        counted = [_put(record, config, _ABSENT), _bump(record.pool, 1, config), _bump(None, 1, config)]
        return Written(_transact(config, counted, about) is None)
    if flying and _single_put(record, config, f"{_LIVE_AT_VERSION} AND {_FLYING}", expected_version):
        return Written(True)  # in flight before and after: the counts stay
    was = _FLYING if not flying else f"NOT ({_FLYING})"
    delta = 1 if flying else -1
    moved = [
        _put(record, config, f"{_LIVE_AT_VERSION} AND {was}", expected_version),
        _bump(record.pool, delta, config),
        _bump(None, delta, config),
    ]
    if _transact(config, moved, about) is None:
        return Written(True)
    if flying:
        return Written(False)  # neither in flight nor out of it at that version: someone wrote first
    return dynamodb.put(record, expected_version, config)  # out of flight already: no count to move


def delete(key: str, expected_version: int | None, config: AwsConfig) -> Written:
    """:func:`jitr_aws.dynamodb.delete` for a runner record, uncounting it when it was in flight."""
    for _ in range(CONFLICT_TRIES):
        loaded = dynamodb.load(RUNNER, key, config).record
        if loaded is None or loaded.state not in IN_FLIGHT:
            return dynamodb.delete(RUNNER, key, expected_version, config)
        if expected_version is not None and loaded.version != expected_version:
            return Written(False)
        removal = {
            "Delete": {
                "TableName": config.table,
                "Key": {dynamodb.PARTITION_KEY: {"S": f"{RUNNER}#{key}"}},
                "ConditionExpression": f"#v = :expected AND {_FLYING}",
                "ExpressionAttributeNames": {"#v": "version", "#s": "state"},
                "ExpressionAttributeValues": {":expected": {"N": str(loaded.version)}, **_flying_values()},
            }
        }
        cancelled = _transact(
            config, [removal, _bump(loaded.pool, -1, config), _bump(None, -1, config)], f"runner {key!r}"
        )
        if cancelled is None:
            return Written(True)
    return Written(False)


def repair(settings: Settings, config: AwsConfig, now: float | None = None) -> int:
    """Set each quiet counter that differs from the in-flight runner records to their number.

    Pools are those in the settings and those of runners in flight. Returns the counters set.
    """
    now = time.time() if now is None else now
    ddb = client("dynamodb", config)
    pools = {pool.name for pool in settings.pools}
    seen: dict[str | None, tuple[int, str | None]] = {}

    def read(pool: str | None) -> None:
        try:
            item = ddb.get_item(TableName=config.table, Key=counter_key(pool), ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise backend_error("DynamoDB", "GetItem", exc, "a runner counter") from exc
        if item is None:
            seen[pool] = (0, None)
        else:
            seen[pool] = (int(item["n"]["N"]), item.get("updated_at", {}).get("N"))

    read(None)
    for pool in sorted(pools):
        read(pool)
    flying: Counter[str | None] = Counter()
    for state in IN_FLIGHT:
        cursor: str | None = None
        while True:
            page = dynamodb.query(RecordQuery(RUNNER, state, limit=500, cursor=cursor), config)
            for record in page.records:
                flying[record.pool] += 1
                flying[None] += 1
            cursor = page.cursor
            if cursor is None:
                break
    for unlisted in sorted(str(p) for p in set(flying) - set(seen)):
        read(unlisted)
    corrected = 0
    for scope, (count, updated_at) in seen.items():
        if count == flying[scope] or (updated_at is not None and now - float(updated_at) < SETTLE_S):
            continue
        if _reset(ddb, config, scope, count, flying[scope], updated_at):
            corrected += 1
    return corrected


def _reset(ddb: Any, config: AwsConfig, pool: str | None, count: int, actual: int, updated_at: str | None) -> bool:
    names = {"#n": "n", "#u": "updated_at"}
    values: dict[str, Any] = {":actual": {"N": str(actual)}, ":now": {"N": dynamodb._number(time.time())}}
    if updated_at is None:
        condition = "attribute_not_exists(#u)"
    else:
        condition = "#u = :seen AND #n = :count"
        values[":seen"] = {"N": updated_at}
        values[":count"] = {"N": str(count)}
    try:
        ddb.update_item(
            TableName=config.table,
            Key=counter_key(pool),
            UpdateExpression="SET #n = :actual, #u = :now",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False  # it moved meanwhile: the next pass looks again
        raise backend_error("DynamoDB", "UpdateItem", exc, "a runner counter") from exc
    return True


def _put(record: Record, config: AwsConfig, condition: str, expected_version: int | None = None) -> dict[str, Any]:
    names = {"#pk": dynamodb.PARTITION_KEY, "#e": dynamodb.TTL_ATTRIBUTE, "#v": "version", "#s": "state"}
    values: dict[str, Any] = {":now": {"N": dynamodb._number(time.time())}}
    if expected_version is not None:
        values[":expected"] = {"N": str(int(expected_version))}
    if _FLYING in condition:
        values.update(_flying_values())
    used = {k: v for k, v in names.items() if k in condition}
    return {
        "Put": {
            "TableName": config.table,
            "Item": dynamodb.to_item(record),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": used,
            "ExpressionAttributeValues": {k: v for k, v in values.items() if k in condition},
        }
    }


def _single_put(record: Record, config: AwsConfig, condition: str, expected_version: int) -> bool:
    params = _put(record, config, condition, expected_version)["Put"]
    try:
        client("dynamodb", config).put_item(**params)
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise backend_error("DynamoDB", "PutItem", exc, f"runner {record.key!r}") from exc
    return True


def _bump(pool: str | None, delta: int, config: AwsConfig, cap: int | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {
        ":zero": {"N": "0"},
        ":delta": {"N": str(delta)},
        ":now": {"N": dynamodb._number(time.time())},
    }
    update: dict[str, Any] = {
        "TableName": config.table,
        "Key": counter_key(pool),
        "UpdateExpression": "SET #n = if_not_exists(#n, :zero) + :delta, #u = :now",
        "ExpressionAttributeNames": {"#n": "n", "#u": "updated_at"},
        "ExpressionAttributeValues": values,
    }
    if cap is not None:  # a counter not written yet counts 0, under any cap but 0 (a paused pool)
        update["ConditionExpression"] = "attribute_not_exists(#n) OR #n < :cap" if cap > 0 else "#n < :cap"
        values[":cap"] = {"N": str(int(cap))}
    return {"Update": update}


def _flying_values() -> dict[str, Any]:
    return {f":s{i}": {"S": state} for i, state in enumerate(IN_FLIGHT)}


def _transact(config: AwsConfig, items: list[dict[str, Any]], about: str) -> list[bool] | None:
    """Apply ``items`` at once; None when done, else which items' conditions failed."""
    ddb = client("dynamodb", config)
    for attempt in range(CONFLICT_TRIES):
        try:
            ddb.transact_write_items(TransactItems=items)
            return None
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) != _CANCELLED:
                raise backend_error("DynamoDB", "TransactWriteItems", exc, about) from exc
            reasons = exc.response.get("CancellationReasons", []) if isinstance(exc, ClientError) else []
            codes = [str(r.get("Code", "None")) for r in reasons]
            if _CONDITION_FAILED in codes:
                return [code == _CONDITION_FAILED for code in codes]
            if _CONFLICT not in codes:
                raise backend_error("DynamoDB", "TransactWriteItems", exc, about) from exc
        time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    raise backend_error("DynamoDB", "TransactWriteItems", RuntimeError("the counters stayed contended"), about)
