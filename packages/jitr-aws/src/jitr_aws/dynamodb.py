"""The state store on one DynamoDB table: conditional writes, one index for the periodic queries, TTL.

Layout (see :func:`table_definition`, mirrored by the infrastructure code):

- partition key ``pk`` = ``"<kind>#<key>"``; attributes ``kind``, ``key``, ``state``, ``pool``,
  ``version``, ``created_at``, ``updated_at``, ``expires_at`` (the TTL attribute, epoch seconds)
  and ``data`` (the record's data as a JSON string, so floats, None and nesting round-trip exactly);
- global secondary index ``by_state``: partition ``kind_state`` = ``"<kind>#<state>"``, sort
  ``updated_at``, all attributes projected. Queries read only the records of one kind in one state,
  so their cost follows in-flight work, never history. Nothing here scans the table.

DynamoDB deletes expired items on its own, some time after ``expires_at``; until then reads filter
them out, and a create may claim an expired record again.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from jitr_core.errors import SettingsError
from jitr_core.model import Loaded, Record, RecordPage, RecordQuery, Written
from jitr_core.settings import Settings

from .clients import client
from .config import AwsConfig, aws_config
from .faults import backend_error, error_code

PARTITION_KEY = "pk"
INDEX_NAME = "by_state"
INDEX_PARTITION_KEY = "kind_state"
INDEX_SORT_KEY = "updated_at"
TTL_ATTRIBUTE = "expires_at"

_KIND = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CONDITION_FAILED = "ConditionalCheckFailedException"
_NOT_EXPIRED = "(attribute_not_exists(#e) OR #e > :now)"


def table_definition(table_name: str) -> dict[str, Any]:
    """The ``CreateTable`` request for jitr's table: on-demand billing, key ``pk``, index ``by_state``."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": INDEX_PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": INDEX_SORT_KEY, "AttributeType": "N"},
        ],
        "KeySchema": [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": INDEX_NAME,
                "KeySchema": [
                    {"AttributeName": INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


def ttl_specification() -> dict[str, Any]:
    """The ``UpdateTimeToLive`` specification: DynamoDB drops items once ``expires_at`` has passed."""
    return {"Enabled": True, "AttributeName": TTL_ATTRIBUTE}


def create_table(settings: Settings) -> None:
    """Create the configured table with its index and TTL, and wait until it is active."""
    config = aws_config(settings)
    if not config.table:
        raise SettingsError("JITR_AWS_TABLE (aws.table) must name the table to create")
    ddb = client("dynamodb", config)
    ddb.create_table(**table_definition(config.table))
    ddb.get_waiter("table_exists").wait(TableName=config.table)
    ddb.update_time_to_live(TableName=config.table, TimeToLiveSpecification=ttl_specification())


def put(record: Record, expected_version: int | None, config: AwsConfig) -> Written:
    """Create if absent or expired (``expected_version`` None), else replace at ``expected_version``."""
    names = {"#e": TTL_ATTRIBUTE}
    values = {":now": {"N": _number(time.time())}}
    if expected_version is None:
        names["#pk"] = PARTITION_KEY
        condition = "attribute_not_exists(#pk) OR #e <= :now"
    else:
        names["#v"] = "version"
        values[":expected"] = {"N": str(int(expected_version))}
        condition = f"#v = :expected AND {_NOT_EXPIRED}"
    try:
        client("dynamodb", config).put_item(
            TableName=config.table,
            Item=to_item(record),
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) == _CONDITION_FAILED:
            return Written(False)
        raise backend_error("DynamoDB", "PutItem", exc, f"{record.kind} {record.key!r}") from exc
    return Written(True)


def load(kind: str, key: str, config: AwsConfig) -> Loaded:
    """Read one record with a strongly consistent read; expired records read as absent."""
    try:
        answer = client("dynamodb", config).get_item(TableName=config.table, Key=_key(kind, key), ConsistentRead=True)
    except (ClientError, BotoCoreError) as exc:
        raise backend_error("DynamoDB", "GetItem", exc, f"{kind} {key!r}") from exc
    item = answer.get("Item")
    if item is None or _expired(item, time.time()):
        return Loaded(None)
    return Loaded(from_item(item))


def query(request: RecordQuery, config: AwsConfig) -> RecordPage:
    """One page from the ``by_state`` index, oldest ``updated_at`` first.

    Expired records and other pools are filtered out after DynamoDB has counted them against
    ``Limit``, so the index is read again from where it stopped until the page is full or the
    matches run out.
    """
    if request.limit < 1:
        raise ValueError(f"a query's limit must be at least 1, found {request.limit}")
    names = {"#ks": INDEX_PARTITION_KEY, "#e": TTL_ATTRIBUTE}
    values: dict[str, Any] = {
        ":ks": {"S": f"{_checked_kind(request.kind)}#{request.state}"},
        ":now": {"N": _number(time.time())},
    }
    key_condition = "#ks = :ks"
    if request.updated_before is not None:
        names["#u"] = INDEX_SORT_KEY
        values[":before"] = {"N": _number(request.updated_before)}
        key_condition += " AND #u < :before"
    filter_expression = _NOT_EXPIRED
    if request.pool is not None:
        names["#p"] = "pool"
        values[":pool"] = {"S": request.pool}
        filter_expression += " AND #p = :pool"
    start = decode_cursor(request.cursor) if request.cursor else None
    records: list[Record] = []
    ddb = client("dynamodb", config)
    while True:
        params: dict[str, Any] = {
            "TableName": config.table,
            "IndexName": INDEX_NAME,
            "KeyConditionExpression": key_condition,
            "FilterExpression": filter_expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": True,
            "Limit": request.limit - len(records),
        }
        if start is not None:
            params["ExclusiveStartKey"] = start
        try:
            answer = ddb.query(**params)
        except (ClientError, BotoCoreError) as exc:
            raise backend_error("DynamoDB", "Query", exc, f"{request.kind} records in state {request.state!r}") from exc
        records.extend(from_item(item) for item in answer.get("Items", []))
        start = answer.get("LastEvaluatedKey")
        if start is None or len(records) >= request.limit:
            break
    return RecordPage(tuple(records), encode_cursor(start) if start is not None else None)


def delete(kind: str, key: str, expected_version: int | None, config: AwsConfig) -> Written:
    """Delete a record; with ``expected_version``, only while the stored version equals it."""
    params: dict[str, Any] = {"TableName": config.table, "Key": _key(kind, key)}
    if expected_version is not None:
        params["ConditionExpression"] = "#v = :expected"
        params["ExpressionAttributeNames"] = {"#v": "version"}
        params["ExpressionAttributeValues"] = {":expected": {"N": str(int(expected_version))}}
    try:
        client("dynamodb", config).delete_item(**params)
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) == _CONDITION_FAILED:
            return Written(False)
        raise backend_error("DynamoDB", "DeleteItem", exc, f"{kind} {key!r}") from exc
    return Written(True)


def to_item(record: Record) -> dict[str, Any]:
    """The DynamoDB item (low-level attribute values) for ``record``."""
    kind = _checked_kind(record.kind)
    item: dict[str, Any] = {
        PARTITION_KEY: {"S": f"{kind}#{record.key}"},
        "kind": {"S": kind},
        "key": {"S": record.key},
        "state": {"S": record.state},
        "pool": {"S": record.pool},
        INDEX_PARTITION_KEY: {"S": f"{kind}#{record.state}"},
        "version": {"N": str(int(record.version))},
        "created_at": {"N": _number(record.created_at)},
        "updated_at": {"N": _number(record.updated_at)},
        "data": {"S": json.dumps(record.data, separators=(",", ":"), allow_nan=False, default=_plain)},
    }
    if record.expires_at is not None:
        item[TTL_ATTRIBUTE] = {"N": _number(record.expires_at)}
    return item


def from_item(item: Mapping[str, Any]) -> Record:
    expires = item.get(TTL_ATTRIBUTE)
    return Record(
        kind=item["kind"]["S"],
        key=item["key"]["S"],
        state=item["state"]["S"],
        pool=item["pool"]["S"],
        version=int(item["version"]["N"]),
        created_at=float(item["created_at"]["N"]),
        updated_at=float(item["updated_at"]["N"]),
        expires_at=float(expires["N"]) if expires is not None else None,
        data=json.loads(item["data"]["S"]),
    )


def encode_cursor(last_key: Mapping[str, Any]) -> str:
    """An opaque, URL-safe cursor holding DynamoDB's ``LastEvaluatedKey``."""
    text = json.dumps(last_key, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        key = None
    valid = (
        isinstance(key, dict)
        and key
        and all(
            isinstance(v, dict) and len(v) == 1 and set(v) <= {"S", "N"} and all(isinstance(x, str) for x in v.values())
            for v in key.values()
        )
    )
    if not valid:
        raise ValueError("the query cursor was not issued by this store")
    return dict(key)


def _key(kind: str, key: str) -> dict[str, Any]:
    return {PARTITION_KEY: {"S": f"{_checked_kind(kind)}#{key}"}}


def _checked_kind(kind: str) -> str:
    """Kinds are identifiers: a ``#`` in a kind would make ``pk`` ambiguous."""
    if not _KIND.match(kind):
        raise ValueError(f"record kind must match {_KIND.pattern}, found {kind!r}")
    return kind


def _expired(item: Mapping[str, Any], now: float) -> bool:
    expires = item.get(TTL_ATTRIBUTE)
    return expires is not None and float(expires["N"]) <= now


def _number(value: float) -> str:
    """A DynamoDB number that reads back as the same float (plain digits, no exponent)."""
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"cannot store {value!r} as a DynamoDB number")
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    return format(Decimal(text), "f") if "e" in text else text


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"record data must be JSON: {type(value).__name__} is not")
