"""Import the Compute Engine client in the background on instances whose function will call it.

``google.cloud.compute_v1`` takes seconds and ~160 MB to import. Started in a thread when the
worker starts, the import runs while the worker would otherwise wait for its first request.

Only the targets that call Compute Engine (scaleup, lifecycle, scaledown) start it, as Cloud Run
names them in ``FUNCTION_TARGET``; the webhook never imports it. functions-framework imports
``main.py`` in gunicorn's arbiter and forks the worker that serves requests: a thread started
before the fork would not run in the worker and could leave it an import lock held by no one.
So the thread starts in the worker, right after the fork, or on the first request where no fork
happened (functions-framework ``--debug``, tests calling ``create_app``).

A request waits for the import to finish (:func:`wait`) before its own work, which it does not
overlap: CPython's imports are not safe in two threads at once. A thread importing a package
whose ``__init__`` imports a submodule and another importing that submodule directly take the
two module locks in opposite orders; the import system then raises ``_DeadlockError`` in one of
them or hands it a partly initialised module (python/cpython#83065). The request path imports
from the same packages (``google.api_core``, ``google.auth``, ``requests``, ...), so a first
request running beside the import could fail at once (a dead-lettering answered 503 that way).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Mapping

from .. import coldstart

log = logging.getLogger("jitr.gcp.functions")

MODULE = "google.cloud.compute_v1"
TARGETS = frozenset({"scaleup", "lifecycle", "scaledown"})

_lock = threading.Lock()
_thread: threading.Thread | None = None
_pid = 0  # the process _thread was started in (a forked child starts its own)
_installed = False


def install(environ: Mapping[str, str] = os.environ) -> bool:
    """At ``main.py``'s import: arrange the background import if ``FUNCTION_TARGET`` calls Compute Engine."""
    global _installed
    if environ.get("FUNCTION_TARGET", "") not in TARGETS:
        return False
    if not _installed:
        _installed = True
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=start)
    return True


def start() -> threading.Thread | None:
    """Start the background import once per process (no-op unless :func:`install` chose this instance)."""
    global _thread, _pid
    if not _installed:
        return None
    with _lock:
        if _thread is None or _pid != os.getpid():
            _thread = threading.Thread(target=_import, name="jitr-preimport-compute", daemon=True)
            _pid = os.getpid()
            _thread.start()
        return _thread


def wait() -> None:
    """Block until this process's background import, if one was started, has finished."""
    running = thread()
    if running is not None and running is not threading.current_thread():
        running.join()


def thread() -> threading.Thread | None:
    """The background import's thread in this process, if one was started."""
    return _thread if _pid == os.getpid() else None


def _import() -> None:
    try:
        with coldstart.paused():  # ~a third of the import's time goes to collecting what it keeps
            importlib.import_module(MODULE)
    except Exception:  # the first real use imports it again and reports the error in context
        log.warning("importing %s in the background failed", MODULE, exc_info=True)
