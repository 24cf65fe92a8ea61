"""The embedded backend: store, queue, secrets and local-process VMs on one machine.

Core's built-in default plugin (``jitr_core.embedded.plugin``, registered as ``embedded``): one
SQLite file in ``[embedded] state_dir`` holds the records, the queues and the VM registry, so
``jitr serve`` runs without any cloud and ``jitr status`` can read the same state from another
process. See ``docs/embedded.md``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..settings import Settings

if TYPE_CHECKING:
    from .config import EmbeddedConfig
    from .instance import Embedded, open_embedded

__all__ = ["Embedded", "EmbeddedConfig", "open_embedded", "wait_for_messages"]


def __getattr__(name: str) -> object:
    """The backend's classes, imported on first use: discovering the built-in plugin in a cloud
    function (which uses another provider) does not load SQLite and the local VMs."""
    if name in ("Embedded", "open_embedded"):
        from . import instance

        return getattr(instance, name)
    if name == "EmbeddedConfig":
        from .config import EmbeddedConfig

        return EmbeddedConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def wait_for_messages(queue: str, timeout_s: float, settings: Settings) -> bool:
    """Block a pull worker until ``queue`` may have a message (True) or ``timeout_s`` passes (False).

    With the embedded queue, an enqueue in this process wakes the worker at once; otherwise it
    waits for the next poll. With another queue provider it just sleeps one poll interval.
    """
    from .instance import open_embedded
    from .queue import POLL_S

    if settings.provider("queue") != "embedded":
        time.sleep(min(timeout_s, POLL_S))
        return True
    return open_embedded(settings).queue.wait(queue, timeout_s)
