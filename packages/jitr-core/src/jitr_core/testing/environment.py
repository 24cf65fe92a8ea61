"""What a test may assume about its machine: how long to wait, and which tools must be there.

A test waits on a condition with a deadline, never a fixed sleep. Deadlines are generous on
their own and multiplied by ``JITR_TEST_TIMEOUT_SCALE`` (default 1) so that a busy machine gets
more time without any test changing; a condition that holds early returns early.

A test that needs an external tool (shellcheck, uv, terraform, ...) asks for it with
:func:`require_tool`: it is skipped with the reason when the tool is missing, and fails instead
when ``JITR_REQUIRE_TOOLS=1`` (CI sets it and installs every tool), so nothing is hidden there.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

import pytest

T = TypeVar("T")


def timeout_scale() -> float:
    """``JITR_TEST_TIMEOUT_SCALE`` as a positive float (default 1); a malformed value is an error."""
    raw = os.environ.get("JITR_TEST_TIMEOUT_SCALE", "1")
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"JITR_TEST_TIMEOUT_SCALE must be a positive number, not {raw!r}") from None
    if not scale > 0:
        raise ValueError(f"JITR_TEST_TIMEOUT_SCALE must be a positive number, not {raw!r}")
    return scale


def deadline_s(seconds: float) -> float:
    """``seconds`` scaled for this machine."""
    return seconds * timeout_scale()


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float = 60.0,
    what: str = "condition",
    step_s: float = 0.05,
    detail: Callable[[], object] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Fails the test naming ``what`` (and ``detail()``, e.g. a log tail) after ``timeout_s``
    scaled by :func:`timeout_scale`.
    """
    limit = deadline_s(timeout_s)
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail else ""
            raise AssertionError(f"timed out after {limit:g} s waiting for {what}{extra}")
        time.sleep(step_s)


def tools_required() -> bool:
    return os.environ.get("JITR_REQUIRE_TOOLS") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip the test for want of something the machine lacks; fail instead under ``JITR_REQUIRE_TOOLS=1``."""
    if tools_required():
        pytest.fail(f"{reason}; JITR_REQUIRE_TOOLS=1 makes this a failure")
    pytest.skip(reason)


def require_tool(name: str, install_hint: str = "") -> str:
    """The path of command ``name``; :func:`unavailable` when it is missing."""
    path = shutil.which(name)
    if path:
        return path
    unavailable(f"{name} is not installed" + (f" ({install_hint})" if install_hint else ""))
