"""The one SQLite file of a state directory, shared by the store, the queue and the VM registry.

Each thread gets its own connection (sqlite3 connections must not be shared between threads);
WAL lets readers in any process (``jitr status``) work while ``jitr serve`` writes, and
``synchronous=NORMAL`` keeps commits cheap: a commit survives a process crash, and at worst the
last commits roll back on a power loss. Writers of one process take a lock before SQLite's so
they queue in-process instead of sleeping in SQLite's busy handler; other processes wait on the
busy timeout.

A reader that must change nothing (``jitr status``, ``jitr doctor``) opens the file read-only
(``mode=ro``): SQLite then refuses every write, and no schema is created.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from ..errors import BackendError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS records (
        kind TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, pool TEXT NOT NULL,
        version INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, expires_at REAL,
        data TEXT NOT NULL, PRIMARY KEY (kind, key))""",
    "CREATE INDEX IF NOT EXISTS records_by_state ON records (kind, state, updated_at, key)",
    "CREATE INDEX IF NOT EXISTS records_by_pool ON records (kind, state, pool, updated_at, key)",
    "CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, body TEXT NOT NULL,
        attributes TEXT NOT NULL, visible_at REAL NOT NULL, receive_count INTEGER NOT NULL,
        enqueued_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS messages_by_visibility ON messages (queue, visible_at)",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY, message_id INTEGER, queue TEXT NOT NULL, body TEXT NOT NULL,
        attributes TEXT NOT NULL, receive_count INTEGER NOT NULL, enqueued_at REAL NOT NULL, dead_at REAL NOT NULL,
        reason TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS dead_letters_by_queue ON dead_letters (queue, id)",
    "CREATE INDEX IF NOT EXISTS dead_letters_by_age ON dead_letters (dead_at)",
    """CREATE TABLE IF NOT EXISTS vms (
        vm_id TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, runner_name TEXT NOT NULL, pool TEXT NOT NULL,
        dir TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL, max_lifetime_s INTEGER NOT NULL,
        pid INTEGER, start_time TEXT, ended_at REAL, end_reason TEXT)""",
    "CREATE INDEX IF NOT EXISTS vms_by_state ON vms (state, ended_at)",
    # the SHA-256 of each running local VM's identity token (see identity.py), never the token
    "CREATE TABLE IF NOT EXISTS vm_tokens (vm_id TEXT PRIMARY KEY, digest TEXT NOT NULL, issued_at REAL NOT NULL)",
)


class Database:
    """Connections, the write lock and in-process change signals for one database file."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._enqueued: dict[str, _Signal] = {}
        if read_only:
            self._check_schema()
        else:
            self._create_schema()

    def _connect(self) -> sqlite3.Connection:
        target, uri = (f"{self.path.as_uri()}?mode=ro", True) if self.read_only else (str(self.path), False)
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, cached_statements=256, uri=uri)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _check_schema(self) -> None:
        """Refuse, as a writer would, a file of a newer schema; a read-only reader creates none."""
        try:
            found = self.connection().execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open the embedded database {self.path}: {exc}") from exc
        if found > SCHEMA_VERSION:
            raise _newer_schema(self.path, found)

    def _create_schema(self) -> None:
        try:
            with closing(self._connect()) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN IMMEDIATE")
                found = conn.execute("PRAGMA user_version").fetchone()[0]
                if found > SCHEMA_VERSION:
                    conn.execute("ROLLBACK")
                    raise _newer_schema(self.path, found)
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open the embedded database {self.path}: {exc}") from exc

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit: every statement outside ``transaction`` commits)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.connection().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise self._failed(exc) from exc

    def write(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement as its own transaction."""
        with self._write_lock:
            try:
                return self.connection().execute(sql, params)
            except sqlite3.OperationalError as exc:
                raise self._failed(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front, so it never fails midway."""
        conn = self.connection()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise self._failed(exc) from exc

    def _failed(self, exc: sqlite3.OperationalError) -> BackendError:
        """Busy past the timeout, disk full, I/O errors: worth a retry later."""
        return BackendError(f"embedded database {self.path} failed: {exc}")

    def _signal(self, queue: str) -> _Signal:
        return self._enqueued.get(queue) or self._enqueued.setdefault(queue, _Signal())

    def notify_enqueued(self, queue: str) -> None:
        """Wake one waiter on ``queue``: one message needs one worker, not the whole pool."""
        signal = self._signal(queue)
        with signal.changed:
            signal.count += 1
            signal.changed.notify()

    def enqueue_count(self, queue: str) -> int:
        """How many enqueues this process has made to ``queue``; pass it to :meth:`wait_enqueued`."""
        return self._signal(queue).count

    def wait_enqueued(self, queue: str, seen: int, timeout_s: float) -> None:
        """Sleep until this process enqueues to ``queue`` past ``seen`` or ``timeout_s`` passes."""
        signal = self._signal(queue)
        with signal.changed:
            signal.changed.wait_for(lambda: signal.count != seen, timeout_s)


def _newer_schema(path: Path, found: int) -> BackendError:
    return BackendError(f"{path} has schema version {found}; this jitr knows up to {SCHEMA_VERSION} (upgrade jitr)")


class _Signal:
    """Enqueues to one queue in this process: a counter and the condition its waiters sleep on."""

    __slots__ = ("changed", "count")

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.count = 0
