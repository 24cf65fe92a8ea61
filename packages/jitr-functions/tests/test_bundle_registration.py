"""``jitr bundle`` registers the bundled plugins as every cold start does: a plugin that imports but
that jitr's plugin manager marks broken (a hook jitr does not know, a parameter its hook does not
have) stops the build, named with the reason, as one that fails to import does.

The plugins are real distributions laid out as pip lays them out in a bundle; the bundle's
``jitr_core`` and ``pluggy`` are the ones installed here.
"""

from __future__ import annotations

from pathlib import Path

import jitr_core
import pluggy
import pytest
from jitr_core.errors import JitrError
from jitr_functions.bundle_plugins import verify_plugins
from test_bundle_plugins import _layout_plugin

REGISTRY = [Path(jitr_core.__file__).parent.parent, Path(pluggy.__file__).parent.parent]
HEALTHY = (
    "from jitr_core.hookspecs import hookimpl\n"
    "from jitr_core.startup import Fragment\n\n"
    "@hookimpl\ndef jitr_render_startup_script(context):\n    return Fragment('pre_run', 'echo mirror')\n"
)
IMPL = "from jitr_core.hookspecs import hookimpl\n\n@hookimpl\ndef {}:\n    pass\n"
MISSPELT = IMPL.format("jitr_render_startup_scripts(context)")
WRONG_PARAMETER = IMPL.format("jitr_render_startup_script(ctx)")


def test_healthy_plugins_are_registered_and_listed(tmp_path: Path) -> None:
    _layout_plugin(tmp_path, "jitr-mirror", "mirror", "jitr_mirror_registered", HEALTHY)
    assert verify_plugins([tmp_path, *REGISTRY]) == ("mirror",)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (MISSPELT, r"declares a hook jitr does not know: unknown hook 'jitr_render_startup_scripts'"),
        (WRONG_PARAMETER, r"could not be registered: .*Argument\(s\) \{'ctx'\} are declared in the hookimpl"),
    ],
    ids=["unknown-hook", "wrong-parameter"],
)
def test_a_plugin_every_cold_start_finds_broken_stops_the_build(tmp_path: Path, body: str, reason: str) -> None:
    _layout_plugin(tmp_path, "jitr-mirror", "mirror", "jitr_mirror_registered", HEALTHY)
    _layout_plugin(tmp_path, "jitr-cache", "cache", "jitr_cache_registered", body)
    expected = rf"no bundle is written: plugin 'cache' \(jitr_cache_registered: .*{reason}"
    with pytest.raises(JitrError, match=expected) as caught:
        verify_plugins([tmp_path, *REGISTRY])
    assert "'mirror'" not in str(caught.value)
    assert "--exclude-plugin NAME" in str(caught.value)


def test_a_plugin_named_like_a_built_in_stops_the_build(tmp_path: Path) -> None:
    _layout_plugin(tmp_path, "jitr-embedded2", "embedded", "jitr_embedded_named", "import json\n")
    with pytest.raises(JitrError, match=r"plugin 'embedded' .*named like a built-in plugin"):
        verify_plugins([tmp_path, *REGISTRY])


def test_plugins_installed_here_but_not_bundled_are_not_registered(tmp_path: Path) -> None:
    bundle, here = tmp_path / "bundle", tmp_path / "here"
    _layout_plugin(bundle, "jitr-mirror", "mirror", "jitr_mirror_registered", HEALTHY)
    _layout_plugin(here, "jitr-cache", "cache", "jitr_cache_left_out", MISSPELT)  # supplies imports only
    assert verify_plugins([bundle, here, *REGISTRY]) == ("mirror",)
