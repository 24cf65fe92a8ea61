"""The cyclic garbage collector, paused while a function's process builds what it keeps for its life.

A cold start makes tens of thousands of container objects that live as long as the process:
modules, classes, functions, the cloud clients' models, the app. The collector runs every 700
new ones and traverses the young (every tenth time the older too) to free almost none of them:
about a tenth of a webhook's cold start on Lambda (``benchmarks/cold_start.py``), a fifth to a
third of the imports on Cloud Run. So the collector is paused while they are made; then what is
alive is frozen (:func:`gc.freeze`: later collections leave it out) and the collector resumed:

- from the handler module's import (:func:`pause`) to the end of the process's first invocation
  or request (:func:`settle`), only where a platform started the process for a function
  (``AWS_LAMBDA_FUNCTION_NAME`` or Cloud Run's ``K_SERVICE`` set): a process that imports the
  handlers for another reason (tests, tools) keeps its collector. On Cloud Run,
  functions-framework imports ``main.py`` in gunicorn's arbiter and forks the worker: the
  arbiter settles right after the fork, the worker (which inherits the pause) after its first
  request, and shares the frozen objects' pages with the arbiter instead of copying them.
  Reference counting frees most garbage, collector or not; what the first invocation left in
  reference cycles (an exception and its traceback, say) stays frozen until the process ends.
- around a block (:func:`paused`): Cloud Run's background import of the Compute Engine client,
  which every request of that instance waits for.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

_PLATFORMS = ("AWS_LAMBDA_FUNCTION_NAME", "K_SERVICE")  # set by Lambda and by Cloud Run
_paused = False
_fork_hooked = False


def pause(environ: Mapping[str, str] = os.environ) -> bool:
    """Pause the collector in a Lambda container's or a Cloud Run instance's cold start; whether this
    call paused it. A process that forks (gunicorn's arbiter) settles right after each fork."""
    global _paused, _fork_hooked
    if not any(name in environ for name in _PLATFORMS) or not gc.isenabled():
        return False
    gc.disable()
    _paused = True
    if not _fork_hooked and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_parent=settle)
        _fork_hooked = True
    return True


def settle() -> None:
    """After each invocation or request: as the first one ends, however it ends, freeze what is alive and
    resume the collector, if :func:`pause` paused it (later calls cost a global's read)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


@contextmanager
def paused() -> Iterator[None]:
    """The block runs with the collector paused; then what is alive is frozen and the collector resumed
    (unless it was off already)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
