"""The plugin registry: entry-point discovery, the block list, listings, broken plugins."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from jitr_core.backend import Backend
from jitr_core.errors import NoProviderError, PluginError
from jitr_core.hookspecs import hookimpl
from jitr_core.model import RecordQuery
from jitr_core.plugins import create_plugin_manager, list_plugins
from jitr_core.settings import Settings
from jitr_core.startup import Fragment
from jitr_core.testing.environment import require_tool


def _installer() -> list[str]:
    """pip where the venv has it, else uv (nox's uv-made venvs come without pip)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    return [require_tool("uv", "the venv has no pip; pip install uv"), "pip"]


def _install(args: list[str]) -> None:
    installer = _installer()
    target = ["--python", sys.executable] if installer[0] != sys.executable else []
    subprocess.run([*installer, *args[:1], *target, *args[1:]], check=True, capture_output=True)
    importlib.invalidate_caches()


def _write_distribution(root: Path, dist: str, module: str, body: str, entry: str) -> Path:
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text(textwrap.dedent(body))
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "{dist}"
            version = "1.2.3"
            dependencies = []

            [project.entry-points.jitr]
            {entry} = "{module}"

            [tool.hatch.build.targets.wheel]
            packages = ["{module}"]
            """
        )
    )
    return root


MIRROR_PLUGIN = """
from jitr_core.hookspecs import hookimpl
from jitr_core.startup import Fragment
from jitr_core.testing.environment import require_tool

@hookimpl
def jitr_render_startup_script(context):
    return Fragment("pre_run", "echo using-registry-mirror", source="mirror")
"""

POOL = {"name": "linux", "labels": ["self-hosted"], "machine_types": ["m"]}

BROKEN_PLUGIN = """
raise RuntimeError("cannot start: no licence file")
"""


@pytest.fixture(scope="module")
def third_party(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = _write_distribution(
        tmp_path_factory.mktemp("dist"), "jitr-mirror-test", "jitr_mirror_test", MIRROR_PLUGIN, "mirror"
    )
    _install(["install", "--no-deps", str(root)])
    yield "mirror"
    _install(
        ["uninstall", "-y", "jitr-mirror-test"]
        if _installer()[0] == sys.executable
        else ["uninstall", "jitr-mirror-test"]
    )


def settings() -> Settings:
    return Settings.from_mapping({"pools": [{"name": "linux", "labels": ["self-hosted"], "machine_types": ["m"]}]})


def test_an_installed_third_party_plugin_is_discovered_and_called(third_party: str) -> None:
    pm = create_plugin_manager(environ={})
    infos = {info.name: info for info in list_plugins(pm)}
    assert infos[third_party].distribution == "jitr-mirror-test"
    assert infos[third_party].version == "1.2.3"
    assert infos[third_party].hooks == ("jitr_render_startup_script",)
    from jitr_core.secret import Secret
    from jitr_core.startup import ScriptContext

    context = ScriptContext("r", settings().pools[0], "aws", Secret("eyJ4Ijoi"), "2.336.0", 3600)
    script = Backend(pm, settings()).render_startup_script(context)
    assert "echo using-registry-mirror" in script


def test_a_plugin_is_blocked_by_name(third_party: str) -> None:
    pm = create_plugin_manager(environ={"JITR_DISABLE_PLUGINS": f"something-else, {third_party}"})
    assert third_party not in {info.name for info in list_plugins(pm)}


def test_star_blocks_every_external_plugin_but_keeps_the_defaults(third_party: str) -> None:
    pm = create_plugin_manager(environ={"JITR_DISABLE_PLUGINS": "*"})
    names = {info.name for info in list_plugins(pm)}
    assert third_party not in names
    assert {"embedded", "core-script"} <= names


def _fake_distribution(site: Path, dist: str, entry: str, module: str, body: str) -> None:
    """An installed distribution shipping ``module`` with ``body`` as a ``jitr`` plugin (no installer needed)."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[jitr]\n{entry} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(body))


@pytest.fixture
def broken_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[logging.LogRecord]]:
    """A plugin that raises at import installed next to the real ones; yields the plugin log records."""
    _fake_distribution(tmp_path, "jitr-broken-test", "broken", "jitr_broken_test_plugin", BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("jitr.plugins")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    sys.modules.pop("jitr_broken_test_plugin", None)


def test_a_plugin_that_fails_to_import_is_listed_as_broken_and_the_others_load(
    broken_plugin: list[logging.LogRecord],
) -> None:
    pm = create_plugin_manager(environ={})

    infos = {info.name: info for info in list_plugins(pm)}
    assert infos["broken"].error == "RuntimeError: cannot start: no licence file"
    assert infos["broken"].distribution == "jitr-broken-test" and infos["broken"].hooks == ()
    assert {"embedded", "core-script"} <= {name for name, info in infos.items() if not info.error}
    (record,) = broken_plugin
    assert record.levelno == logging.ERROR and record.plugin == "broken"  # type: ignore[attr-defined]
    assert "no licence file" in record.error  # type: ignore[attr-defined]
    assert "broken" not in {
        i.name for i in list_plugins(create_plugin_manager(environ={"JITR_DISABLE_PLUGINS": "broken"}))
    }


@pytest.mark.parametrize(
    ("entry", "body", "error"),
    [
        ("embedded", "", "named like a built-in plugin"),  # a clash at every start otherwise
        ("quits", "import sys\nsys.exit('jitr-quits needs libfoo')\n", "SystemExit: jitr-quits needs libfoo"),
    ],
    ids=["builtin-name", "sys-exit"],
)
def test_a_plugin_that_cannot_be_registered_is_broken_and_the_start_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: str, body: str, error: str
) -> None:
    module = f"jitr_{entry}_test_plugin"
    _fake_distribution(tmp_path, f"jitr-{entry}-test", entry, module, body)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        pm = create_plugin_manager(environ={})
    finally:
        sys.modules.pop(module, None)
    assert error in pm.broken[entry].error
    assert pm.get_plugin("embedded") is importlib.import_module("jitr_core.embedded.plugin")


def test_a_broken_plugin_stops_startup_scripts_and_leaves_the_providers_working(
    broken_plugin: list[logging.LogRecord], tmp_path: Path
) -> None:
    from jitr_core.secret import Secret
    from jitr_core.startup import ScriptContext

    embedded = Settings.from_mapping(
        {"provider": "embedded", "embedded": {"state_dir": str(tmp_path / "state")}, "pools": [POOL]}
    )
    backend = Backend(create_plugin_manager(environ={}), embedded)

    assert backend.query(RecordQuery("runner", "busy")).records == ()
    context = ScriptContext("r", embedded.pools[0], "embedded", Secret("eyJ4Ijoi"), "2.336.0", 3600)
    with pytest.raises(PluginError, match=r"plugin 'broken' \(jitr-broken-test 1.0\) failed to load: RuntimeError"):
        backend.render_startup_script(context)
    nowhere = Backend(backend.pm, Settings.from_mapping({"provider": "nowhere", "pools": [POOL]}))
    with pytest.raises(NoProviderError, match=r"plugin 'broken' .* no licence file"):
        nowhere.query(RecordQuery("runner", "busy"))


def test_an_installed_plugin_declaring_an_unknown_hook_is_broken_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = """
    from jitr_core.hookspecs import hookimpl

    @hookimpl
    def jitr_launch_rocket():
        return None
    """
    _fake_distribution(tmp_path, "jitr-rocket-test", "rocket", "jitr_rocket_test_plugin", body)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        pm = create_plugin_manager(environ={})
    finally:
        sys.modules.pop("jitr_rocket_test_plugin", None)
    infos = {info.name: info for info in list_plugins(pm)}
    assert "jitr_launch_rocket" in infos["rocket"].error and infos["rocket"].hooks == ()
    assert pm.get_plugin("rocket") is None


class UnknownHook:
    @hookimpl
    def jitr_launch_rocket(self) -> None:
        """Not a jitr hook."""


def test_a_plugin_declaring_an_unknown_hook_fails_start_up_naming_it() -> None:
    with pytest.raises(PluginError, match="unknown-hook"):
        create_plugin_manager(environ={}, extra=[("unknown-hook", UnknownHook())], load_entry_points=False)


def test_defaults_are_listed_as_builtin_and_last() -> None:
    class Extra:
        @hookimpl
        def jitr_render_startup_script(self, context: object) -> None:
            return None

    infos = list_plugins(create_plugin_manager(environ={}, extra=[("extra", Extra())], load_entry_points=False))
    assert [i.name for i in infos][-2:] == ["core-script", "embedded"]
    assert all(i.builtin for i in infos[-2:]) and not infos[0].builtin


def test_no_provider_for_a_role_is_a_clear_error() -> None:
    pm = create_plugin_manager(environ={}, load_entry_points=False)
    s = Settings.from_mapping({"provider": "nimbus"})
    with pytest.raises(NoProviderError, match="no plugin provides 'store' as 'nimbus'"):
        Backend(pm, s).query(RecordQuery("runner", "launched"))


NIMBUS_PLUGIN = """
from jitr_core.hookspecs import hookimpl
from jitr_core.model import RecordPage

@hookimpl
def jitr_query_records(query, settings):
    return RecordPage(()) if settings.provider("store") == "nimbus" else None
"""


@pytest.fixture
def nimbus_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed plugin ``nimbus`` providing the store ``nimbus``; yields its name."""
    _fake_distribution(tmp_path, "jitr-nimbus-test", "nimbus", "jitr_nimbus_test_plugin", NIMBUS_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "nimbus"
    sys.modules.pop("jitr_nimbus_test_plugin", None)


@pytest.mark.parametrize("blocked", ["nimbus", "other, nimbus", "*"])
def test_a_provider_whose_installed_plugin_is_disabled_is_said_to_be_disabled(nimbus_plugin: str, blocked: str) -> None:
    s = Settings.from_mapping({"provider": "nimbus"})
    assert Backend(create_plugin_manager(environ={}), s).query(RecordQuery("runner", "busy")).records == ()

    pm = create_plugin_manager(environ={"JITR_DISABLE_PLUGINS": blocked})
    with pytest.raises(NoProviderError) as raised:
        Backend(pm, s).query(RecordQuery("runner", "busy"))
    message = str(raised.value)
    assert "the plugin for 'nimbus' is disabled by JITR_DISABLE_PLUGINS" in message and "install" not in message
    assert (raised.value.role, raised.value.provider, raised.value.hook) == ("store", "nimbus", "jitr_query_records")


def test_a_disabled_built_in_provider_is_said_to_be_disabled_by_every_provider_hook(tmp_path: Path) -> None:
    pm = create_plugin_manager(environ={"JITR_DISABLE_PLUGINS": "embedded"}, load_entry_points=False)
    s = Settings.from_mapping({"provider": "embedded", "embedded": {"state_dir": str(tmp_path / "state")}})
    disabled = "the plugin for 'embedded' is disabled by JITR_DISABLE_PLUGINS"
    with pytest.raises(NoProviderError, match=disabled):
        Backend(pm, s).list_vms()
    with pytest.raises(NoProviderError, match=disabled):
        Backend(pm, s).verify_vm_identity("embedded", {"token": "t"}, "")
    assert not (tmp_path / "state").exists()


def test_a_blocked_name_that_is_not_installed_still_asks_to_install_it() -> None:
    pm = create_plugin_manager(environ={"JITR_DISABLE_PLUGINS": "nimbus"}, load_entry_points=False)
    with pytest.raises(NoProviderError, match="install the plugin for 'nimbus' or set JITR_STORE_PROVIDER"):
        Backend(pm, Settings.from_mapping({"provider": "nimbus"})).query(RecordQuery("runner", "busy"))


def test_a_plugin_answers_before_the_trylast_defaults() -> None:
    class Loud:
        @hookimpl
        def jitr_render_startup_script(self, context: object) -> Fragment:
            return Fragment("post_run", "echo loud", source="loud")

    pm = create_plugin_manager(environ={}, extra=[("loud", Loud())], load_entry_points=False)
    impls = [impl.plugin_name for impl in pm.hook.jitr_render_startup_script.get_hookimpls()]
    assert impls.index("loud") > impls.index("core-script")  # pluggy calls the last first


def test_importing_core_imports_only_the_standard_library_and_pluggy() -> None:
    code = (
        "import sys; before = set(sys.modules); import jitr_core, jitr_core.plugins, jitr_core.webhook; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "import sys as s; std = s.stdlib_module_names; "
        "print(sorted(m for m in new if m not in std and m not in ('jitr_core', 'pluggy', '_distutils_hack')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_discovery_leaves_the_embedded_backend_unloaded_until_it_is_used() -> None:
    """A cloud function discovers the built-in embedded plugin too; SQLite and the local VMs load
    only when the embedded backend is asked for something."""
    probe = textwrap.dedent("""
        import sys
        from jitr_core.plugins import create_plugin_manager
        create_plugin_manager()
        backend = ("sqlite3", "jitr_core.embedded.instance", "jitr_core.embedded.vms")
        print(sorted(m for m in backend if m in sys.modules))
        from jitr_core.embedded import open_embedded
        print("jitr_core.embedded.instance" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stdout
