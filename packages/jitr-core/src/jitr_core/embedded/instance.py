"""The opened embedded backend of a settings' ``[embedded]`` section, cached for the process.

Hooks run for every call, so opening must cost a dictionary lookup: the parsed section and the
database (schema created once per file per process) are kept. A forked child starts afresh, as
SQLite connections and locks must not cross a fork.

Within :func:`read_only` (``jitr status``, ``jitr doctor``) the state is opened to be looked at:
nothing is created where there is none yet, and nothing is changed (no VM refresh).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from ..errors import NoStateError
from ..settings import Settings
from .config import EmbeddedConfig, load_config, prepare_state_dir
from .db import Database
from .queue import Queue
from .store import Store
from .vms import LocalVMs


@dataclass(frozen=True, slots=True)
class Embedded:
    """The store, queue and VMs of one state directory, under one configuration."""

    config: EmbeddedConfig
    store: Store
    queue: Queue
    vms: LocalVMs


_opened: dict[Hashable, Embedded] = {}
_databases: dict[tuple[str, bool], Database] = {}
_lock = threading.Lock()
_read_only: ContextVar[bool] = ContextVar("jitr_embedded_read_only", default=False)


@contextmanager
def read_only() -> Iterator[None]:
    """Open the embedded state read-only within: a command that only looks creates no state and
    changes none (a VM refresh may stop VMs and forget old ones); where there is no database yet,
    each call raises NoStateError."""
    token = _read_only.set(True)
    try:
        yield
    finally:
        _read_only.reset(token)


def open_embedded(settings: Settings) -> Embedded:
    """The embedded backend for ``settings``, opened (and its state directory created) on first use;
    within :func:`read_only`, opened read-only instead."""
    reading = _read_only.get()
    section = settings.section("embedded")
    key: Hashable = (tuple(section.items()), reading)
    if "state_dir" not in section:  # the default depends on the environment
        key = (key, os.environ.get("XDG_STATE_HOME"), os.environ.get("HOME"))
    try:
        return _opened[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable value: load_config explains what is wrong with it
        key = None
    config = load_config(section, os.environ)
    with _lock:
        database = _databases.get((str(config.database), reading))
        if database is None:
            if not reading:
                prepare_state_dir(config.state_dir)
            elif not config.database.is_file():
                raise NoStateError(
                    f"no state at {config.database}: nothing has run with these settings yet (`jitr serve` creates it)"
                )
            database = _databases[(str(config.database), reading)] = Database(config.database, read_only=reading)
        queue = Queue(database, config.max_receive_count)
        vms = LocalVMs(database, config)
        if not reading:
            vms.refresh()  # what a crashed process left: exits and abandoned launches
        embedded = Embedded(config, Store(database), queue, vms)
        if key is not None:
            _opened[key] = embedded
    return embedded


def _forget() -> None:
    global _lock
    _opened.clear()
    _databases.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget)
