"""The plugin registry: discovery at cold start, the block list and the listing for ``jitr plugins``.

Order at start: read the block list (``JITR_DISABLE_PLUGINS``: comma-separated names, ``*`` for
every external plugin), load the ``jitr`` entry points, register the built-in defaults
(``trylast``), then ``check_pending()``. Discovery imports only the plugin modules themselves;
they import cloud SDKs lazily. The installed plugins the block list keeps out are kept in
``pm.disabled``, so that a provider nobody answers for is said to be disabled, not missing.

An installed plugin that fails (raises at import, cannot be registered, implements an unknown
hook) does not fail start-up: it is logged once with its name and error and kept in
``pm.broken``, so the functions that do not need it keep working. What needs it fails closed:
a provider hook nobody answers names it, and no startup script is rendered while one is broken.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version

import pluggy

from . import hookspecs
from .errors import PluginError

ENTRY_POINT_GROUP = "jitr"
log = logging.getLogger("jitr.plugins")

# Built-in plugins of core, registered like any other but after entry points (and trylast).
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("core-script", "jitr_core.runner_script"),
    ("embedded", "jitr_core.embedded.plugin"),
)
_BUILTIN_NAMES = frozenset(name for name, _ in DEFAULT_PLUGINS)


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One registered plugin: its name, the distribution that shipped it, and its hooks."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    builtin: bool
    error: str = ""  # why a broken plugin is not registered; empty for a healthy one


@dataclass(frozen=True, slots=True)
class BrokenPlugin:
    """An installed plugin that failed to load or register, and why."""

    name: str
    distribution: str
    version: str
    error: str

    def describe(self) -> str:
        origin = f"{self.distribution} {self.version}".strip() or "unknown distribution"
        return f"plugin {self.name!r} ({origin}) failed to load: {self.error}"


def blocked_names(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if environ is None else environ
    raw = env.get("JITR_DISABLE_PLUGINS", "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


class JitrPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which distribution shipped each plugin.

    The distribution's name and version are read from its metadata when first asked for (by
    ``jitr plugins``, ``jitr doctor``, a broken plugin's report), not at every cold start.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.origins: dict[str, Callable[[], tuple[str, str]]] = {}
        self.broken: dict[str, BrokenPlugin] = {}
        self.disabled: set[str] = set()  # installed plugins the block list kept out

    def distribution(self, name: str) -> tuple[str, str]:
        """Name and version of the distribution that shipped plugin ``name``; ``("", "")`` when unknown."""
        origin = self.origins.get(name)
        return origin() if origin is not None else ("", "")


def broken_plugins(pm: pluggy.PluginManager) -> tuple[BrokenPlugin, ...]:
    """The plugins that failed to load into ``pm`` (none for a plain pluggy manager)."""
    broken: dict[str, BrokenPlugin] = getattr(pm, "broken", {})
    return tuple(broken[name] for name in sorted(broken))


def describe_broken(pm: pluggy.PluginManager) -> str:
    """One sentence naming every broken plugin and its error; empty when there is none."""
    return "; ".join(b.describe() for b in broken_plugins(pm))


def disabled_plugins(pm: pluggy.PluginManager) -> frozenset[str]:
    """The installed plugins ``JITR_DISABLE_PLUGINS`` kept out of ``pm`` (none for a plain pluggy manager),
    so that an error can say to unblock a plugin rather than to install it."""
    return frozenset(getattr(pm, "disabled", ()))


def create_plugin_manager(
    *,
    environ: Mapping[str, str] | None = None,
    extra: Iterable[tuple[str, object]] = (),
    load_entry_points: bool = True,
) -> JitrPluginManager:
    """A ready plugin manager: entry points, then ``extra`` plugins, then core's defaults."""
    pm = JitrPluginManager()
    pm.add_hookspecs(hookspecs)
    blocked = blocked_names(environ)
    for name in blocked:
        if name != "*":
            pm.set_blocked(name)
    if load_entry_points:
        for ep in _entry_points():
            if "*" in blocked or pm.is_blocked(ep.name):
                pm.disabled.add(ep.name)
                continue
            origin = partial(_shipped, ep)
            try:
                if ep.name in _BUILTIN_NAMES:  # registered below: the name would clash at every start
                    raise PluginError(f"plugin {ep.name!r} is named like a built-in plugin; rename its entry point")
                _register(pm, ep.name, _load(ep), origin)
            except PluginError as exc:
                _mark_broken(pm, ep.name, origin(), exc)
    entry_point_names = set(pm.origins)
    for name, plugin in extra:
        if not _kept_out(pm, name):
            _register(pm, name, plugin, _unknown)
    for name, module in DEFAULT_PLUGINS:
        if not _kept_out(pm, name):
            _register(pm, name, importlib.import_module(module), _core)
    while True:
        try:
            pm.check_pending()
            return pm
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or repr(exc.plugin)
            error = PluginError(f"plugin {name!r} declares a hook jitr does not know: {exc}")
            if name not in entry_point_names:
                raise error from None
            pm.unregister(exc.plugin)
            _mark_broken(pm, name, pm.distribution(name), error)
            pm.origins.pop(name, None)


def _kept_out(pm: JitrPluginManager, name: str) -> bool:
    """Whether the block list names plugin ``name``; it is then remembered as disabled."""
    if pm.is_blocked(name):
        pm.disabled.add(name)
        return True
    return False


def _mark_broken(pm: JitrPluginManager, name: str, dist: tuple[str, str], exc: PluginError) -> None:
    cause = exc.__cause__
    error = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    pm.broken[name] = BrokenPlugin(name, dist[0], dist[1], error)
    log.error(
        "plugin failed to load; the functions that need it will fail, the others keep working",
        extra={"plugin": name, "distribution": dist[0], "version": dist[1], "error": error},
    )


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _load(ep: EntryPoint) -> object:
    try:
        return ep.load()
    except (Exception, SystemExit) as exc:  # any import failure (sys.exit too) must name the plugin
        dist = ep.dist.name if ep.dist else "unknown distribution"
        raise PluginError(f"plugin {ep.name!r} ({dist}, {ep.value}) failed to load: {exc!r}") from exc


def _register(pm: JitrPluginManager, name: str, plugin: object, origin: Callable[[], tuple[str, str]]) -> None:
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(f"plugin {name!r} could not be registered: {exc}") from None
    pm.origins[name] = origin


def _shipped(ep: EntryPoint) -> tuple[str, str]:
    return (ep.dist.name, ep.dist.version) if ep.dist else ("", "")


def _unknown() -> tuple[str, str]:
    return "", ""


def _core() -> tuple[str, str]:
    return "jitr-core", _dist_version("jitr-core")


def list_plugins(pm: JitrPluginManager) -> list[PluginInfo]:
    """Name, distribution, version and hooks of every registered plugin, defaults last."""
    builtin = _BUILTIN_NAMES
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist, version = pm.distribution(name)
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        infos.append(PluginInfo(name, dist, version, hooks, name in builtin))
    for broken in broken_plugins(pm):
        infos.append(PluginInfo(broken.name, broken.distribution, broken.version, (), False, broken.error))
    return sorted(infos, key=lambda i: (i.builtin, i.name))


def _dist_version(dist_name: str) -> str:
    try:
        return version(dist_name)
    except PackageNotFoundError:
        return ""
