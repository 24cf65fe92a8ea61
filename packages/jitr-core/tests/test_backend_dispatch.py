"""The backend's enqueue hook is called as pluggy calls it, whatever plugins come, go or watch."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest
from jitr_core.backend import Backend, FirstAnswer
from jitr_core.errors import NoProviderError, PluginError
from jitr_core.hookspecs import hookimpl
from jitr_core.model import QueueMessage
from jitr_core.plugins import create_plugin_manager
from jitr_core.settings import Settings

MESSAGE = QueueMessage('{"v":1}', {"type": "job"})


class Provider:
    """A queue provider answering for its own provider name only, as every provider does."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    @hookimpl
    def jitr_enqueue(self, queue: str, message: QueueMessage, delay_s: int, settings: Settings) -> str | None:
        self.calls += 1
        if settings.provider("queue") != self.name:
            return None
        return f"{self.name}:{queue}:{delay_s}"


class Early(Provider):
    @hookimpl(tryfirst=True)
    def jitr_enqueue(self, queue: str, message: QueueMessage, delay_s: int, settings: Settings) -> str | None:
        return super().jitr_enqueue(queue, message, delay_s, settings)


class Partial:
    """An implementation taking only some of the hook's arguments (pluggy passes it those)."""

    @hookimpl(tryfirst=True)
    def jitr_enqueue(self, queue: str) -> str:
        return f"partial:{queue}"


class Wrapper:
    """A new-style wrapper: it sees, and may change, the answer."""

    @hookimpl(wrapper=True)
    def jitr_enqueue(self, queue: str) -> Generator[None, str, str]:
        answer = yield
        return f"wrapped({answer})"


class Failing:
    @hookimpl(tryfirst=True)
    def jitr_enqueue(self, queue: str, message: QueueMessage, delay_s: int, settings: Settings) -> str:
        raise PluginError("the queue is on fire")


def backend(tmp_path: Path, provider: str, *plugins: tuple[str, object]) -> Backend:
    settings = Settings.from_mapping({"provider": provider, "embedded": {"state_dir": str(tmp_path / "state")}})
    return Backend(create_plugin_manager(load_entry_points=False, environ={}, extra=plugins), settings)


def test_the_first_answer_wins_and_providers_answering_none_are_passed(tmp_path: Path) -> None:
    nimbus, cirrus = Provider("nimbus"), Provider("cirrus")
    b = backend(tmp_path, "nimbus", ("nimbus", nimbus), ("cirrus", cirrus))  # cirrus, registered last, is asked first

    assert b.enqueue("jobs", MESSAGE, 5) == "nimbus:jobs:5"
    assert (cirrus.calls, nimbus.calls) == (1, 1)
    assert b.pm.hook.jitr_enqueue(queue="jobs", message=MESSAGE, delay_s=5, settings=b.settings) == "nimbus:jobs:5"


def test_a_plugin_registered_or_unregistered_later_is_called_from_the_next_call_on(tmp_path: Path) -> None:
    b = backend(tmp_path, "embedded")
    assert b.enqueue("jobs", MESSAGE)  # the embedded queue's message id
    early = Early("embedded")
    b.pm.register(early, "early")

    assert b.enqueue("jobs", MESSAGE) == "embedded:jobs:0" and early.calls == 1

    b.pm.unregister(early)
    assert b.enqueue("jobs", MESSAGE) != "embedded:jobs:0" and early.calls == 1


def test_no_answer_names_the_role(tmp_path: Path) -> None:
    with pytest.raises(NoProviderError, match="no plugin provides 'queue' as 'nimbus'"):
        backend(tmp_path, "nimbus", ("cirrus", Provider("cirrus"))).enqueue("jobs", MESSAGE)


def test_an_exception_of_an_implementation_is_raised_as_it_is(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="on fire"):
        backend(tmp_path, "embedded", ("failing", Failing())).enqueue("jobs", MESSAGE)


def test_wrappers_and_partial_implementations_are_called_as_pluggy_calls_them(tmp_path: Path) -> None:
    b = backend(tmp_path, "embedded", ("partial", Partial()))
    assert b.enqueue("jobs", MESSAGE) == "partial:jobs"

    b.pm.register(Wrapper(), "wrapper")
    assert b.enqueue("lifecycle", MESSAGE) == "wrapped(partial:lifecycle)"


def test_monitored_calls_are_seen_by_the_monitor(tmp_path: Path) -> None:
    b = backend(tmp_path, "nimbus", ("nimbus", Provider("nimbus")))
    b.enqueue("jobs", MESSAGE)
    seen: list[str] = []
    undo = b.pm.add_hookcall_monitoring(lambda name, impls, kwargs: seen.append(name), lambda *a: None)
    try:
        assert b.enqueue("jobs", MESSAGE) == "nimbus:jobs:0"
    finally:
        undo()
    b.enqueue("jobs", MESSAGE)
    assert seen == ["jitr_enqueue"]


def test_only_a_firstresult_hook_is_taken() -> None:
    pm = create_plugin_manager(load_entry_points=False, environ={})
    with pytest.raises(PluginError, match="jitr_render_startup_script is not a firstresult hook"):
        FirstAnswer(pm, pm.hook.jitr_render_startup_script)
