"""The embedded state (store and queue in one SQLite file): durability, other processes, indexes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from jitr_core.backend import Backend
from jitr_core.embedded.db import Database
from jitr_core.embedded.queue import Queue
from jitr_core.embedded.store import Store, select_sql
from jitr_core.errors import JitrError
from jitr_core.model import QueueMessage, Record, RecordQuery


def test_writes_survive_the_writer_being_killed_and_a_reopen(
    embedded_section: dict[str, Any], run_embedded_python: Callable[..., subprocess.Popen[str]]
) -> None:
    writer = run_embedded_python(
        """
        import os, signal, time
        from jitr_core.model import QueueMessage, Record
        now = time.time()
        data = {"text": "żółw ✓", "n": 2**53, "x": 0.1, "nested": {"list": [1, None, True]}}
        assert backend.create(Record("runner", "r1", state="busy", pool="p", created_at=now, updated_at=now, data=data))
        backend.enqueue("jobs", QueueMessage('{"v":1}', {"type": "job"}))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert writer.wait(30) == -9, writer.stderr.read() if writer.stderr else ""
    reopened = Database(Path(embedded_section["state_dir"]) / "jitr.sqlite3")
    record = Store(reopened).load("runner", "r1")
    assert record is not None and record.state == "busy"
    assert record.data == {"text": "żółw ✓", "n": 2**53, "x": 0.1, "nested": {"list": [1, None, True]}}
    (message,) = Queue(reopened, max_receive_count=3).receive("jobs", 10, 60)
    assert (message.body, message.attributes) == ('{"v":1}', {"type": "job"})


def test_two_processes_claiming_the_same_records_each_win_some_never_both(
    embedded_backend: Backend, run_embedded_python: Callable[..., subprocess.Popen[str]]
) -> None:
    backend = embedded_backend
    backend.load("job", "warm-up")  # the schema exists before the race
    rival = run_embedded_python(
        """
        import time
        from jitr_core.model import Record
        now = time.time()
        won = sum(backend.create(Record("job", str(i), state="queued", created_at=now, data={"by": "child"}))
                  for i in range(600))
        print(won)
        """
    )
    now = time.time()
    with ThreadPoolExecutor(4) as pool:
        mine = sum(
            pool.map(
                lambda i: backend.create(Record("job", str(i), state="queued", created_at=now, data={"by": "parent"})),
                reversed(range(600)),
            )
        )
    out, err = rival.communicate(timeout=60)
    assert rival.returncode == 0, err
    assert mine + int(out) == 600
    owners = [backend.load("job", str(i)) for i in range(600)]
    assert sum(1 for r in owners if r is not None and r.data["by"] == "parent") == mine


def test_expired_records_cannot_be_replaced_or_deleted_and_are_purged(embedded_backend: Backend) -> None:
    backend, now = embedded_backend, time.time()
    assert backend.create(Record("lease", "a", state="held", created_at=now, updated_at=now, expires_at=now - 1))
    assert backend.create(Record("lease", "b", state="held", created_at=now, updated_at=now, expires_at=now - 1))
    assert backend.create(Record("lease", "c", state="held", created_at=now, updated_at=now, expires_at=now + 60))
    assert not backend.replace(Record("lease", "a", state="held", version=2), 1)
    assert not backend.delete("lease", "b")
    assert backend.purge_expired(now) == 2
    assert backend.purge_expired(now) == 0
    assert backend.load("lease", "c") is not None


def test_a_page_query_is_an_index_search_without_sorting(embedded_backend: Backend) -> None:
    backend = embedded_backend
    page = backend.query(RecordQuery("runner", "busy", limit=1))  # opens the database
    db = Database(Path(str(backend.settings.section("embedded")["state_dir"])) / "jitr.sqlite3")
    cursor = "WzEuMCwgImsiXQ=="  # [1.0, "k"]
    for query in (
        RecordQuery("runner", "busy"),
        RecordQuery("runner", "busy", pool="linux", updated_before=5.0, cursor=cursor),
        RecordQuery("runner", "busy", updated_before=5.0, cursor=cursor),
    ):
        sql, params = select_sql(query, time.time())
        plan = " ".join(row[3] for row in db.read("EXPLAIN QUERY PLAN " + sql, params))
        assert "USING INDEX records_by" in plan and "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
    assert page.records == () and page.cursor is None


def test_bad_cursors_and_limits_are_refused(embedded_backend: Backend) -> None:
    with pytest.raises(JitrError, match="cursor"):
        embedded_backend.query(RecordQuery("runner", "busy", cursor="not a cursor"))
    with pytest.raises(JitrError, match="limit"):
        embedded_backend.query(RecordQuery("runner", "busy", limit=0))
    with pytest.raises(JitrError, match="delay"):
        embedded_backend.enqueue("jobs", QueueMessage("x"), delay_s=-1)
