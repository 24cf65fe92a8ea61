"""A plugin whose ``jitr_render_startup_script`` answers something other than a Fragment, a sequence
of Fragments or None stops the render with a PluginError naming it and the type it returned."""

from __future__ import annotations

import pytest
from jitr_core.backend import Backend
from jitr_core.errors import PluginError
from jitr_core.hookspecs import hookimpl
from jitr_core.plugins import create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Pool, Settings
from jitr_core.startup import Fragment, ScriptContext

SECRET_TEXT = "echo token-ghp_0123456789"


class Answers:
    """A startup-script plugin answering ``answer`` as it is."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    @hookimpl
    def jitr_render_startup_script(self, context: ScriptContext) -> object:
        return self.answer


def context() -> ScriptContext:
    pool = Pool("linux", frozenset({"self-hosted"}), ("m",))
    return ScriptContext("jitr-linux-1-1", pool, "aws", Secret("eyJ9"), "2.336.0", 3600)


def render(*plugins: tuple[str, object]) -> str:
    pm = create_plugin_manager(environ={}, extra=plugins, load_entry_points=False)
    return Backend(pm, Settings.from_mapping({})).render_startup_script(context())


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        (SECRET_TEXT, "a str"),
        (SECRET_TEXT.encode(), "a bytes"),
        ({"phase": "pre_run", "body": SECRET_TEXT}, "a dict"),
        (iter([Fragment("pre_run", SECRET_TEXT)]), "a list_iterator"),
        ([Fragment("pre_run", "echo one"), SECRET_TEXT], "a list whose item 1 is a str"),
        ((Fragment("pre_run", "echo one"), None), "a tuple whose item 1 is a NoneType"),
    ],
)
def test_a_wrong_answer_names_the_plugin_and_its_type_not_its_text(answer: object, found: str) -> None:
    with pytest.raises(PluginError) as caught:
        render(("healthy", Answers(Fragment("pre_run", "echo healthy"))), ("motd", Answers(answer)))
    assert str(caught.value) == (
        f"plugin 'motd' returned {found} from jitr_render_startup_script; "
        "expected a Fragment, a sequence of Fragments or None"
    )
    assert "ghp_" not in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [
        Fragment("pre_run", "echo motd"),
        [Fragment("pre_run", "echo motd")],
        (Fragment("pre_run", "echo motd"), Fragment("post_run", "echo bye")),
    ],
)
def test_a_fragment_or_a_sequence_of_fragments_is_rendered(answer: object) -> None:
    script = render(("motd", Answers(answer)), ("nothing", Answers(None)), ("empty", Answers([])))
    assert "echo motd" in script.splitlines()


def test_an_exception_of_a_plugin_is_raised_as_it_is() -> None:
    class Refuses:
        @hookimpl
        def jitr_render_startup_script(self, context: ScriptContext) -> None:
            raise PluginError("pools[linux].options.docker_mirror must be an http(s) URL")

    with pytest.raises(PluginError, match=r"^pools\[linux\]\.options\.docker_mirror must be"):
        render(("mirror", Refuses()))
