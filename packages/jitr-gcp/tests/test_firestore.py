"""Firestore specifics beyond the contract, on the emulator: document layout, TTL field, cursors,
the deployable index file, and errors."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from importlib.resources import files

import pytest
from google.cloud import firestore
from jitr_core.backend import Backend
from jitr_core.errors import BackendError
from jitr_core.model import Record, RecordQuery
from jitr_core.testing.environment import deadline_s
from jitr_gcp.firestore import TTL_FIELD, document_id
from jitr_gcp.testing.backend import PROJECT, gcp_backend, gcp_settings
from jitr_gcp.testing.emulators import free_port


def raw(kind: str, key: str) -> dict[str, object]:
    snapshot = firestore.Client(project=PROJECT).collection("jitr").document(document_id(kind, key)).get()
    values = snapshot.to_dict()
    assert values is not None
    return values


def test_document_ids_escape_what_firestore_and_the_separator_need() -> None:
    assert document_id("runner", "jitr-linux-1-1") == "runner#jitr-linux-1-1"
    assert document_id("job", "octo/hello#1") == "job#octo%2Fhello#1"
    assert document_id("a#b", "c") != document_id("a", "b#c")
    assert document_id("k", "50%/x") == "k#50%25%2Fx"


def test_a_record_is_one_document_with_a_ttl_timestamp(store_backend: Backend, firestore_emulator: object) -> None:
    kind, now = "t" + uuid.uuid4().hex[:10], time.time()
    record = Record(
        kind,
        "o/r",
        state="finished",
        pool="p",
        created_at=now,
        updated_at=now,
        expires_at=now + 60,
        data={"ratio": 0.25, "none": None, "deep": {"list": [1, {"x": "y"}]}},
    )
    assert store_backend.create(record)
    values = raw(kind, "o/r")
    assert {k: values[k] for k in ("kind", "key", "state", "pool", "version")} == {
        "kind": kind,
        "key": "o/r",
        "state": "finished",
        "pool": "p",
        "version": 1,
    }
    assert values["expires_at"] == record.expires_at
    assert isinstance(values[TTL_FIELD], datetime)
    assert abs(values[TTL_FIELD].timestamp() - (now + 60)) < 0.001  # type: ignore[attr-defined]
    # replacing with no expiry removes the TTL field, so the TTL policy keeps the document
    assert store_backend.replace(replace(record, version=2, expires_at=None, data={}), 1)
    values = raw(kind, "o/r")
    assert TTL_FIELD not in values and values["expires_at"] is None and values["data"] == {}


def test_pages_stay_complete_when_records_share_a_timestamp(store_backend: Backend) -> None:
    kind, now = "t" + uuid.uuid4().hex[:10], time.time()
    for i in range(7):
        assert store_backend.create(Record(kind, f"r{i}", state="launched", created_at=now, updated_at=now))
    keys = [r.key for r in store_backend.query_all(RecordQuery(kind, "launched", limit=3))]
    assert sorted(keys) == [f"r{i}" for i in range(7)]


def test_expired_records_do_not_end_pagination_early(store_backend: Backend) -> None:
    kind, now = "t" + uuid.uuid4().hex[:10], time.time()
    for i in range(6):
        expires = now - 10 if i < 4 else None
        assert store_backend.create(
            Record(kind, f"r{i}", state="finished", created_at=now + i, updated_at=now + i, expires_at=expires)
        )
    first = store_backend.query(RecordQuery(kind, "finished", limit=2))
    assert first.records == () and first.cursor is not None
    assert [r.key for r in store_backend.query_all(RecordQuery(kind, "finished", limit=2))] == ["r4", "r5"]


def test_an_expired_record_is_taken_over_by_exactly_one_claimant(store_backend: Backend) -> None:
    kind, now = "t" + uuid.uuid4().hex[:10], time.time()
    assert store_backend.create(Record(kind, "lease", state="held", created_at=now, updated_at=now, expires_at=now - 1))
    barrier = threading.Barrier(12)

    def claim(i: int) -> bool:
        barrier.wait()
        return store_backend.create(
            Record(kind, "lease", state="held", created_at=now, updated_at=now, expires_at=now + 60, data={"i": i})
        )

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(claim, range(12)))
    assert results.count(True) == 1
    held = store_backend.load(kind, "lease")
    assert held is not None and held.data == {"i": results.index(True)}


def test_a_write_aborted_for_contention_is_tried_again(store_backend: Backend) -> None:
    """A transaction holding the document makes the emulator abort the write ("Transaction lock
    timeout"), as Firestore does under contention; the write goes through once the lock is free."""
    kind, now = "t" + uuid.uuid4().hex[:10], time.time()
    record = Record(kind, "r", state="queued", created_at=now, updated_at=now)
    assert store_backend.create(record)
    aborted = threading.Event()

    class Aborts(logging.Handler):
        def emit(self, entry: logging.LogRecord) -> None:
            if "aborted for contention" in entry.getMessage():
                aborted.set()

    client = firestore.Client(project=PROJECT)
    ref = client.collection("jitr").document(document_id(kind, "r"))
    holding = threading.Event()

    @firestore.transactional
    def hold(transaction: firestore.Transaction) -> None:
        ref.get(transaction=transaction)
        holding.set()
        aborted.wait(deadline_s(60))  # the lock is held until the write was turned away once

    holder = threading.Thread(target=hold, args=(client.transaction(),))
    logger, handler = logging.getLogger("jitr.gcp.firestore"), Aborts()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        holder.start()
        assert holding.wait(deadline_s(60))
        assert store_backend.replace(replace(record, version=2, state="running"), 1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        aborted.set()
        holder.join()
    assert store_backend.load(kind, "r") == replace(record, version=2, state="running")


def test_a_foreign_cursor_is_refused(store_backend: Backend) -> None:
    with pytest.raises(BackendError, match="not a cursor"):
        store_backend.query(RecordQuery("job", "queued", cursor="garbage!"))


def test_data_firestore_cannot_hold_is_a_backend_error(store_backend: Backend) -> None:
    kind = "t" + uuid.uuid4().hex[:10]
    with pytest.raises(BackendError, match="Firestore write"):
        store_backend.create(Record(kind, "r", data={"matrix": [[1, 2], [3, 4]]}))


def test_purge_leaves_expiry_to_the_ttl_policy(store_backend: Backend) -> None:
    assert store_backend.purge_expired(time.time()) == 0


def test_the_index_file_covers_every_query_shape() -> None:
    spec = json.loads(files("jitr_gcp").joinpath("firestore.indexes.json").read_text())
    shapes = {tuple(f["fieldPath"] for f in index["fields"]) for index in spec["indexes"]}
    assert shapes == {("kind", "state", "updated_at"), ("kind", "state", "pool", "updated_at")}
    assert all(i["collectionGroup"] == "jitr" and i["queryScope"] == "COLLECTION" for i in spec["indexes"])
    overrides = {o["fieldPath"]: o for o in spec["fieldOverrides"]}
    assert overrides[TTL_FIELD]["ttl"] is True and overrides[TTL_FIELD]["indexes"] == []
    assert overrides["data"]["indexes"] == []


def test_hooks_stay_silent_for_another_provider() -> None:
    settings = gcp_settings()
    other = replace(settings, providers={**settings.providers, "store": "embedded"})
    hook = gcp_backend(other).pm.hook
    assert hook.jitr_store_runner(record=Record("k", "k"), expected_version=None, settings=other) is None
    assert hook.jitr_load_record(kind="k", key="k", settings=other) is None
    assert hook.jitr_query_records(query=RecordQuery("k", "s"), settings=other) is None
    assert hook.jitr_delete_record(kind="k", key="k", expected_version=None, settings=other) is None
    assert hook.jitr_purge_expired(now=0.0, settings=other) is None


def test_an_unreachable_firestore_is_a_backend_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Firestore answering UNAVAILABLE (here: nothing listens): each call is retried for
    ``operation_timeout_s``, then a BackendError, the store's one error (the client's own retry
    gives up after one to five minutes with a RetryError)."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    backend = gcp_backend(gcp_settings({"operation_timeout_s": 5}))
    calls = {
        "read": lambda: backend.load("runner", "jitr-linux-1-1"),
        "query": lambda: backend.query(RecordQuery("runner", "claimed")),
        "write": lambda: backend.create(Record("runner", "jitr-linux-1-1", state="claimed")),
    }
    for what, call in calls.items():
        with pytest.raises(BackendError, match=f"Firestore {what}"):
            call()
