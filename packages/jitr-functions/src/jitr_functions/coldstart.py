"""The cyclic garbage collector, paused while a function's process builds what it keeps for its life.

A cold start makes tens of thousands of container objects that live as long as the process:
modules, classes, functions, boto3's service models, the app. The collector runs every 700 new
ones and traverses the young (every tenth time the older too) to free almost none of them:
about a tenth of a webhook's cold start on Lambda (``benchmarks/cold_start.py``), a quarter to a
third of importing the Compute Engine client on Cloud Run. So the collector is paused while they
are made; then what is alive is frozen (:func:`gc.freeze`: later collections leave it out) and
the collector resumed:

- on Lambda, from the handler module's import (:func:`pause`) to the first invocation's end
  (:func:`settle`), only where ``AWS_LAMBDA_FUNCTION_NAME`` is set: a process that imports the
  handlers for another reason (tests, tools) keeps its collector. Reference counting frees
  most garbage, collector or not; what the first invocation left in reference cycles (an
  exception and its traceback, say) stays frozen until the process ends.
- on Cloud Run, around ``main.py``'s import of the targets (in gunicorn's arbiter, before the
  fork: the worker then shares the frozen objects' pages instead of copying them) and around the
  background import of the Compute Engine client, which every request of that instance waits
  for (:func:`paused`).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

_paused = False


def pause(environ: Mapping[str, str] = os.environ) -> bool:
    """Pause the collector in a Lambda container's cold start; whether this call paused it."""
    global _paused
    if "AWS_LAMBDA_FUNCTION_NAME" not in environ or not gc.isenabled():
        return False
    gc.disable()
    _paused = True
    return True


def settle() -> None:
    """After each invocation: as the first one ends, however it ends, freeze what is alive and resume the
    collector, if :func:`pause` paused it (later calls cost a global's read)."""
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
