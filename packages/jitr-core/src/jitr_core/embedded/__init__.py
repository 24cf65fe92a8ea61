"""The embedded backend: store, queue, secrets and local-process VMs on one machine.

Core's built-in default plugin (``jitr_core.embedded.plugin``, registered as ``embedded``): one
SQLite file in ``[embedded] state_dir`` holds the records, the queues and the VM registry, so
``jitr serve`` runs without any cloud and ``jitr status`` can read the same state from another
process. See ``docs/embedded.md``.
"""

from __future__ import annotations

import time

from ..settings import Settings
from .config import EmbeddedConfig
from .instance import Embedded, open_embedded
from .queue import POLL_S

__all__ = ["Embedded", "EmbeddedConfig", "open_embedded", "wait_for_messages"]


def wait_for_messages(queue: str, timeout_s: float, settings: Settings) -> bool:
    """Block a pull worker until ``queue`` may have a message (True) or ``timeout_s`` passes (False).

    With the embedded queue, an enqueue in this process wakes the worker at once; otherwise it
    waits for the next poll. With another queue provider it just sleeps one poll interval.
    """
    if settings.provider("queue") != "embedded":
        time.sleep(min(timeout_s, POLL_S))
        return True
    return open_embedded(settings).queue.wait(queue, timeout_s)
