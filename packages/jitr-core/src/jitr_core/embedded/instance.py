"""The opened embedded backend of a settings' ``[embedded]`` section, cached for the process.

Hooks run for every call, so opening must cost a dictionary lookup: the parsed section and the
database (schema created once per file per process) are kept. A forked child starts afresh, as
SQLite connections and locks must not cross a fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable
from dataclasses import dataclass

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
_databases: dict[str, Database] = {}
_lock = threading.Lock()


def open_embedded(settings: Settings) -> Embedded:
    """The embedded backend for ``settings``, opened (and its state directory created) on first use."""
    section = settings.section("embedded")
    key: Hashable = tuple(section.items())
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
        database = _databases.get(str(config.database))
        if database is None:
            prepare_state_dir(config.state_dir)
            database = _databases[str(config.database)] = Database(config.database)
        queue = Queue(database, config.max_receive_count)
        vms = LocalVMs(database, config)
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
