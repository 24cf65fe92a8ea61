"""The emulators one test run's processes share: the first process starts them, the others use
them, and the first stops them once every other one has left, leaving no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jitr_core.testing.environment import deadline_s, wait_until
from jitr_gcp.testing import emulators, shared

USER = """
import json, sys
from pathlib import Path
from jitr_gcp.testing import shared
with shared.running(Path(sys.argv[1])) as running:
    print(json.dumps({name: e.port for name, e in running.items()}), flush=True)
    sys.stdin.readline()
"""


def inside(thread: threading.Thread, function: Callable[..., Any]) -> bool:
    """Whether ``thread`` is running ``function`` (anywhere on its stack)."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code is function.__code__:
            return True
        frame = frame.f_back
    return False


def test_a_second_process_uses_the_emulators_of_the_first_which_stops_them_after_it(tmp_path: Path) -> None:
    for name in shared.NAMES:
        try:
            emulators.find(name)
        except emulators.EmulatorUnavailable as exc:
            pytest.skip(str(exc))
    main = threading.current_thread()
    with shared.running(tmp_path) as mine:
        groups = [e.process.pid for e in mine.values() if isinstance(e, emulators.Emulator) and e.process]
        user = subprocess.Popen(
            [sys.executable, "-c", USER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert user.stdout is not None and user.stdin is not None
        theirs = json.loads(user.stdout.readline())
        assert theirs == {name: e.port for name, e in mine.items() if isinstance(e, emulators.Emulator)}
        state = json.loads((tmp_path / shared.STATE).read_text())
        assert (state["owner"], state["users"]) == (os.getpid(), [os.getpid(), user.pid])

        def let_the_user_leave() -> None:
            """Once the first process waits for it to leave: its emulators still answer, then it leaves."""
            try:
                wait_until(lambda: inside(main, shared._leave), 60, "the first process to begin leaving")
                answering.extend(emulators._answers(port) for port in theirs.values())
            finally:
                user.stdin.write("\n")  # type: ignore[union-attr]
                user.stdin.flush()  # type: ignore[union-attr]

        answering: list[bool] = []
        helper = threading.Thread(target=let_the_user_leave)
        helper.start()
    helper.join()

    assert answering == [True, True]
    assert user.wait(timeout=deadline_s(60)) == 0
    assert not (tmp_path / shared.STATE).exists()
    assert [emulators.group_members(group) for group in groups] == [[], []]
