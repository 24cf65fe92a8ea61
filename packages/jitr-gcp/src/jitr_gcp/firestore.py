"""The state store on Firestore (Native mode): one collection, one document per record.

A document's id is ``<kind>#<key>`` (``%``, ``/`` and ``#`` escaped), so a claim is a plain
``create()``. Conditional writes read the document and write with a precondition on its
``update_time``: two writers at one version cannot both succeed, and no transaction (with its
lock contention) is needed; a write Firestore aborts for contention anyway (another writer held
the document) did not happen and is tried again. ``expires_at`` is kept twice: as a number that
loads and queries compare, and as the Timestamp ``expire_time`` that a Firestore TTL policy
deletes by, some time after expiry; until then expired documents are filtered out here. Queries
use the composite indexes in ``firestore.indexes.json``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from jitr_core.errors import BackendError
from jitr_core.model import Loaded, Record, RecordPage, RecordQuery, Written

from .clients import bounded, cached_client
from .config import GcpConfig

if TYPE_CHECKING:
    from google.cloud import firestore

TTL_FIELD = "expire_time"
WRITE_ATTEMPTS = 4  # tries of one write that Firestore aborts for contention

log = logging.getLogger("jitr.gcp.firestore")
T = TypeVar("T")


def document_id(kind: str, key: str) -> str:
    """``<kind>#<key>`` with the characters Firestore ids cannot hold (``/``) and our separator escaped."""
    return f"{_escape(kind, '#')}#{_escape(key, '')}"


def _escape(text: str, extra: str) -> str:
    text = text.replace("%", "%25").replace("/", "%2F")
    return text.replace("#", "%23") if extra else text


def _client(cfg: GcpConfig) -> firestore.Client:
    def build() -> firestore.Client:
        from google.cloud import firestore

        return firestore.Client(project=cfg.project, database=cfg.firestore_database)

    key = ("firestore", cfg.project, cfg.firestore_database, os.environ.get("FIRESTORE_EMULATOR_HOST", ""))
    return cached_client(key, build)


def _collection(cfg: GcpConfig) -> firestore.CollectionReference:
    return _client(cfg).collection(cfg.firestore_collection)


def _plain(value: Any) -> Any:
    """Mappings and sequences of any type as the dicts and lists Firestore encodes."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _fields(record: Record, replacing: bool) -> dict[str, Any]:
    from google.cloud import firestore

    fields: dict[str, Any] = {
        "kind": record.kind,
        "key": record.key,
        "state": record.state,
        "pool": record.pool,
        "version": record.version,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "expires_at": record.expires_at,
        "data": _plain(record.data),
    }
    if record.expires_at is not None:
        fields[TTL_FIELD] = datetime.fromtimestamp(record.expires_at, UTC)
    elif replacing:
        fields[TTL_FIELD] = firestore.DELETE_FIELD
    return fields


def _record(values: Mapping[str, Any]) -> Record:
    return Record(
        kind=values["kind"],
        key=values["key"],
        state=values.get("state", ""),
        pool=values.get("pool", ""),
        version=values.get("version", 1),
        created_at=values.get("created_at", 0.0),
        updated_at=values.get("updated_at", 0.0),
        expires_at=values.get("expires_at"),
        data=values.get("data") or {},
    )


def _expired(values: Mapping[str, Any] | None, now: float) -> bool:
    expires_at = values.get("expires_at") if values else None
    return expires_at is not None and expires_at <= now


def store(record: Record, expected_version: int | None, cfg: GcpConfig) -> Written:
    """Create (claim) or replace a record conditionally; see ``jitr_store_runner``."""
    from google.api_core import exceptions

    ref = _collection(cfg).document(document_id(record.kind, record.key))
    try:
        if expected_version is None:
            return Written(_create(ref, record, cfg))
        snapshot = ref.get(**bounded(cfg.operation_timeout_s))
        values = snapshot.to_dict() if snapshot.exists else None
        if values is None or _expired(values, time.time()) or values.get("version") != expected_version:
            return Written(False)
        return Written(_replace(ref, snapshot, record, cfg))
    except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
        raise BackendError(f"Firestore write of {record.kind} {record.key!r} failed: {exc.message}") from None


def _uncontended(write: Callable[[], T], ref: firestore.DocumentReference) -> T:
    """Run one document write, again after a short pause while Firestore aborts it for contention.

    ``ABORTED`` on a write outside a transaction means another writer held the document's lock
    and this write was not applied, so trying it again (with its precondition) is safe.
    """
    from google.api_core import exceptions

    for attempt in range(1, WRITE_ATTEMPTS):
        try:
            return write()
        except exceptions.Aborted as exc:
            reason = {"document": ref.id, "reason": exc.message}
            log.info("firestore write aborted for contention; trying again", extra=reason)
            time.sleep(random.uniform(0.05, 0.15) * 2**attempt)
    return write()


def _create(ref: firestore.DocumentReference, record: Record, cfg: GcpConfig) -> bool:
    """Create-if-absent; an expired document counts as absent and is taken over."""
    from google.api_core import exceptions

    for _ in range(3):  # a document can vanish (TTL, delete) between the two calls
        try:
            _uncontended(lambda: ref.create(_fields(record, replacing=False), **bounded(cfg.operation_timeout_s)), ref)
            return True
        except exceptions.AlreadyExists:
            snapshot = ref.get(**bounded(cfg.operation_timeout_s))
        if snapshot.exists:
            if not _expired(snapshot.to_dict(), time.time()):
                return False
            return _replace(ref, snapshot, record, cfg)
    return False


def _replace(ref: firestore.DocumentReference, snapshot: Any, record: Record, cfg: GcpConfig) -> bool:
    """Overwrite every field, only if the document was not written since ``snapshot``."""
    from google.api_core import exceptions

    try:
        precondition = _client(cfg).write_option(last_update_time=snapshot.update_time)
        update = _fields(record, replacing=True)
        _uncontended(lambda: ref.update(update, option=precondition, **bounded(cfg.operation_timeout_s)), ref)
    except (exceptions.FailedPrecondition, exceptions.NotFound):
        return False
    return True


def load(kind: str, key: str, cfg: GcpConfig) -> Loaded:
    """One record, or ``Loaded(None)`` when absent or expired."""
    from google.api_core import exceptions

    try:
        snapshot = _collection(cfg).document(document_id(kind, key)).get(**bounded(cfg.operation_timeout_s))
    except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
        raise BackendError(f"Firestore read of {kind} {key!r} failed: {exc.message}") from None
    values = snapshot.to_dict() if snapshot.exists else None
    if values is None or _expired(values, time.time()):
        return Loaded(None)
    return Loaded(_record(values))


def query(q: RecordQuery, cfg: GcpConfig) -> RecordPage:
    """One page, oldest ``updated_at`` first; expired records are dropped from the page, not counted."""
    from google.api_core import exceptions
    from google.cloud.firestore import FieldFilter
    from google.cloud.firestore_v1.field_path import FieldPath

    collection = _collection(cfg)
    query = collection.where(filter=FieldFilter("kind", "==", q.kind)).where(filter=FieldFilter("state", "==", q.state))
    if q.pool is not None:
        query = query.where(filter=FieldFilter("pool", "==", q.pool))
    if q.updated_before is not None:
        query = query.where(filter=FieldFilter("updated_at", "<", q.updated_before))
    limit = max(1, q.limit)
    query = query.order_by("updated_at").order_by(FieldPath.document_id()).limit(limit)
    if q.cursor:
        updated_at, doc_id = _decode_cursor(q.cursor)
        query = query.start_after({"updated_at": updated_at, FieldPath.document_id(): collection.document(doc_id)})
    try:
        snapshots = list(query.stream(**bounded(cfg.operation_timeout_s)))
    except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
        raise BackendError(f"Firestore query for {q.kind} in state {q.state!r} failed: {exc.message}") from None
    now = time.time()
    records = tuple(_record(v) for v in (s.to_dict() for s in snapshots) if v and not _expired(v, now))
    cursor = None
    if len(snapshots) == limit:
        last = snapshots[-1]
        cursor = _encode_cursor(last.get("updated_at"), last.id)
    return RecordPage(records, cursor)


def _encode_cursor(updated_at: float, doc_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([updated_at, doc_id]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        updated_at, doc_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if isinstance(updated_at, (int, float)) and isinstance(doc_id, str):
            return updated_at, doc_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise BackendError(f"not a cursor this store returned: {cursor[:40]!r}")


def delete(kind: str, key: str, expected_version: int | None, cfg: GcpConfig) -> Written:
    """Delete a record; at ``expected_version`` only, when given."""
    from google.api_core import exceptions

    ref = _collection(cfg).document(document_id(kind, key))
    try:
        if expected_version is None:
            _uncontended(lambda: ref.delete(**bounded(cfg.operation_timeout_s)), ref)
            return Written(True)
        snapshot = ref.get(**bounded(cfg.operation_timeout_s))
        values = snapshot.to_dict() if snapshot.exists else None
        if values is None or _expired(values, time.time()) or values.get("version") != expected_version:
            return Written(False)
        try:
            precondition = _client(cfg).write_option(last_update_time=snapshot.update_time)
            _uncontended(lambda: ref.delete(option=precondition, **bounded(cfg.operation_timeout_s)), ref)
        except (exceptions.FailedPrecondition, exceptions.NotFound):
            return Written(False)
        return Written(True)
    except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
        raise BackendError(f"Firestore delete of {kind} {key!r} failed: {exc.message}") from None
