"""The state store: records in one SQLite table, written conditionally, queried through indexes.

Every condition is part of one SQL statement, so concurrent writers in any process cannot both
win. An expired record counts as absent everywhere, before any purge removes it.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from ..errors import JitrError
from ..model import Record, RecordPage, RecordQuery
from .db import Database

_CREATE = """INSERT INTO records (kind, key, state, pool, version, created_at, updated_at, expires_at, data)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (kind, key) DO UPDATE SET state = excluded.state, pool = excluded.pool, version = excluded.version,
    created_at = excluded.created_at, updated_at = excluded.updated_at, expires_at = excluded.expires_at,
    data = excluded.data
WHERE records.expires_at IS NOT NULL AND records.expires_at <= ?"""
_REPLACE = """UPDATE records SET state = ?, pool = ?, version = ?, created_at = ?, updated_at = ?, expires_at = ?,
    data = ? WHERE kind = ? AND key = ? AND version = ? AND (expires_at IS NULL OR expires_at > ?)"""
_LOAD = """SELECT kind, key, state, pool, version, created_at, updated_at, expires_at, data FROM records
WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)"""
_DELETE = "DELETE FROM records WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)"
_DELETE_AT = "DELETE FROM records WHERE kind = ? AND key = ? AND version = ? AND (expires_at IS NULL OR expires_at > ?)"
_PURGE = "DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?"


class Store:
    """Create-if-absent, replace-at-version, indexed pages; see ``jitr_store_runner``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, record: Record) -> bool:
        """Insert ``record`` unless a live record has its kind and key (an expired one is taken over)."""
        cursor = self._db.write(_CREATE, (*_row(record), time.time()))
        return cursor.rowcount == 1

    def replace(self, record: Record, expected_version: int) -> bool:
        kind, key, *values = _row(record)
        cursor = self._db.write(_REPLACE, (*values, kind, key, expected_version, time.time()))
        return cursor.rowcount == 1

    def load(self, kind: str, key: str) -> Record | None:
        rows = self._db.read(_LOAD, (kind, key, time.time()))
        return _record(rows[0]) if rows else None

    def delete(self, kind: str, key: str, expected_version: int | None) -> bool:
        if expected_version is None:
            cursor = self._db.write(_DELETE, (kind, key, time.time()))
        else:
            cursor = self._db.write(_DELETE_AT, (kind, key, expected_version, time.time()))
        return cursor.rowcount == 1

    def query(self, query: RecordQuery) -> RecordPage:
        """One page, oldest ``updated_at`` first (ties by key), resumed after the cursor's position."""
        if query.limit < 1:
            raise JitrError(f"a record query's limit must be at least 1, found {query.limit}")
        sql, params = select_sql(query, time.time())
        rows = self._db.read(sql, params)
        records = tuple(_record(row) for row in rows[: query.limit])
        if len(rows) <= query.limit:
            return RecordPage(records)
        last = records[-1]
        return RecordPage(records, _encode_cursor(last.updated_at, last.key))

    def purge_expired(self, now: float) -> int:
        return self._db.write(_PURGE, (now,)).rowcount


def select_sql(query: RecordQuery, now: float) -> tuple[str, list[Any]]:
    """The statement for one page (one row past the limit tells whether another page follows)."""
    where = "kind = ? AND state = ?"
    params: list[Any] = [query.kind, query.state]
    if query.pool is not None:
        where += " AND pool = ?"
        params.append(query.pool)
    if query.updated_before is not None:
        where += " AND updated_at < ?"
        params.append(query.updated_before)
    if query.cursor is not None:
        where += " AND (updated_at, key) > (?, ?)"
        params.extend(_decode_cursor(query.cursor))
    params += [now, query.limit + 1]
    sql = (
        "SELECT kind, key, state, pool, version, created_at, updated_at, expires_at, data FROM records "  # noqa: S608
        f"WHERE {where} AND (expires_at IS NULL OR expires_at > ?) ORDER BY updated_at, key LIMIT ?"
    )
    return sql, params


def _row(record: Record) -> tuple[Any, ...]:
    data = json.dumps(dict(record.data), separators=(",", ":"))
    return (
        record.kind,
        record.key,
        record.state,
        record.pool,
        record.version,
        record.created_at,
        record.updated_at,
        record.expires_at,
        data,
    )


def _record(row: tuple[Any, ...]) -> Record:
    kind, key, state, pool, version, created_at, updated_at, expires_at, data = row
    return Record(kind, key, state, pool, version, created_at, updated_at, expires_at, json.loads(data))


def _encode_cursor(updated_at: float, key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([updated_at, key]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        updated_at, key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, TypeError):
        raise JitrError("the record query cursor is not one this store issued") from None
    if not isinstance(updated_at, (int, float)) or not isinstance(key, str):
        raise JitrError("the record query cursor is not one this store issued")
    return float(updated_at), key
