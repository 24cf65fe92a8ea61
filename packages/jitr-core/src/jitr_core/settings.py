"""Settings: one validated object built from ``JITR_*`` environment variables or a TOML file.

Both sources go through the same reader, so a bad value fails the same way and the error names
the variable (``JITR_MAX_RUNNERS``) or the key (``pools[2].max_runners`` in ``jitr.toml``).
Provider plugins read their own section (``[aws]`` / ``JITR_AWS_*``) through
:meth:`Settings.section`.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SettingsError

ROLES = ("vm", "queue", "store", "secrets")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # time.struct_time.tm_wday order
MAX_WARM_WINDOWS = 16
WARM_HOLD_MAX_S = 25  # under the broker function's timeout (29 s on API Gateway, 30 s on Lambda)
ARCHES = ("x64", "arm64")
_POOL_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+/-]{0,99}$")
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@=+-]{0,254}$")
_HANDOFF = re.compile(r"^(metadata|broker)$")
# The broker's URL enters startup scripts (quoted): an http(s) URL without spaces or quotes.
_BROKER_URL = re.compile(r"^(https?://[A-Za-z0-9._~:/?#@!$&()*+,;=%-]{1,2000})?$")
_AUDIENCE = re.compile(r"^[A-Za-z0-9._~:/?#@!$&()*+,;=%-]{1,2000}$")
# A machine type a job's label may choose: lower case, no path or shell characters, no "..".
MACHINE_TYPE = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9._-]{0,63}\Z")
# A pattern of accepted machine-type labels: the type grammar plus the wildcards * and ?, starting
# with a literal character so that no pattern accepts every label.
_TYPE_PATTERN = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9._*?-]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class MachineSize:
    """A machine type a ``cpu=N``/``ram=N`` label may resolve to, with its vCPUs and memory (GiB)."""

    machine_type: str
    cpu: int
    ram_gib: int


@dataclass(frozen=True, slots=True)
class WarmWindow:
    """Hours (UTC, ``start_hour`` ≤ hour < ``end_hour``) of some weekdays when a pool keeps ``count`` warm VMs."""

    days: frozenset[str]
    start_hour: int
    end_hour: int
    count: int

    def covers(self, weekday: str, hour: int) -> bool:
        return weekday in self.days and self.start_hour <= hour < self.end_hour


@dataclass(frozen=True, slots=True)
class Pool:
    """A class of runners: which jobs it serves (labels) and what VM each gets."""

    name: str
    labels: frozenset[str]
    machine_types: tuple[str, ...]
    image: str = ""
    spot: bool = True
    on_demand_fallback: bool = True
    disk_gb: int = 30
    placements: tuple[str, ...] = ()
    max_runners: int = 10
    runner_group: str = "Default"
    org_scope: bool = False
    priority: int = 0
    allow_public: bool = False
    arch: str = "x64"
    max_lifetime_s: int = 8 * 3600
    options: Mapping[str, Any] = field(default_factory=dict)
    # how a VM gets its JIT config: "broker" (pulled with its identity) or "metadata" (in the
    # script); the settings loader makes "broker" the default wherever there is a broker URL
    handoff: str = "metadata"
    machine_type_labels: tuple[str, ...] = ()
    machine_sizes: tuple[MachineSize, ...] = ()
    rerun_on_interruption: bool = False  # re-run a job GitHub failed because its spot VM was reclaimed
    warm: int = 0  # booted VMs waiting at the broker for a job (outside any window); broker pools only
    warm_windows: tuple[WarmWindow, ...] = ()  # first matching window's count replaces ``warm``
    warm_max_idle_s: int = 3600  # a warm VM waiting longer is retired (and replaced while wanted)

    @property
    def keeps_warm(self) -> bool:
        """Whether the pool ever keeps warm VMs (some count above 0)."""
        return self.warm > 0 or any(w.count > 0 for w in self.warm_windows)

    def warm_wanted(self, now: float) -> int:
        """Warm VMs wanted at ``now`` (epoch seconds): the first window covering it, else ``warm``."""
        moment = time.gmtime(now)
        weekday, hour = WEEKDAYS[moment.tm_wday], moment.tm_hour
        return next((w.count for w in self.warm_windows if w.covers(weekday, hour)), self.warm)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the services need, validated once at cold start."""

    pools: tuple[Pool, ...]
    providers: Mapping[str, str]
    max_runners: int = 100
    allowed_owners: frozenset[str] = frozenset()
    allowed_repos: frozenset[str] = frozenset()
    github_app_id: str = ""
    github_api_url: str = "https://api.github.com"
    runner_version: str = "2.336.0"
    boot_timeout_s: int = 600
    ghost_grace_s: int = 300
    stuck_after_s: int = 900
    claim_timeout_s: int = 120
    cap_wait_s: int = 15
    rebalance_grace_s: int = 60
    redelivery_interval_s: int = 60
    finished_ttl_s: int = 7 * 86400
    max_body_bytes: int = 1024 * 1024
    broker_url: str = ""
    broker_audience: str = ""
    warm_hold_s: int = 20  # how long the broker holds a warm VM's call waiting for a job
    log_level: str = "INFO"
    secrets: Mapping[str, str] = field(default_factory=dict)
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = "defaults"
    names: _Names = field(default_factory=lambda: _TomlNames("defaults"), compare=False, repr=False)

    def provider(self, role: str) -> str:
        """The provider name chosen for ``role`` (vm, queue, store, secrets)."""
        return self.providers[role]

    def section(self, name: str) -> Mapping[str, Any]:
        """A plugin's own settings: ``[name]`` in TOML, or ``JITR_NAME_*`` variables (keys lower-cased)."""
        return self.sections.get(name, {})

    def setting_name(self, *path: str | int) -> str:
        """The name the user typed for a setting, for error messages.

        ``setting_name("aws", "region")`` is ``JITR_AWS_REGION`` when it came from the
        environment and ``aws.region in jitr.toml`` when it came from that file;
        ``setting_name("pools", 2, "options", "key")`` names a pool's option either way.
        """
        return self.names.name(*path)

    def warm_deadline_s(self, pool: Pool) -> int:
        """How long a warm VM of ``pool`` asks the broker: its boot, its idle time and one held call.

        Also the oldest launch-time identity proof (an EC2 document's pendingTime) it may present.
        """
        return self.boot_timeout_s + pool.warm_max_idle_s + self.warm_hold_s

    def pool(self, name: str) -> Pool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise SettingsError(f"unknown pool {name!r}; configured pools: {[p.name for p in self.pools]}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, default_broker_url: str = "") -> Settings:
        """Build settings from ``JITR_*`` variables; a ``JITR_CONFIG`` file is read first if set.

        ``default_broker_url`` is the broker this process serves (``jitr serve``), used when the
        settings name none; see :func:`_build`.
        """
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        file = env.get("JITR_CONFIG")
        if file:
            data = _read_toml(Path(file))
        from_env = _merge_env(data, env)
        names: _Names = _MixedNames(file, from_env) if file else _EnvNames()
        return _build(data, names, source="environment", default_broker_url=default_broker_url)

    @classmethod
    def from_toml(cls, path: str | Path, default_broker_url: str = "") -> Settings:
        """Build settings from a TOML file (the ``jitr serve`` form)."""
        return _build(_read_toml(Path(path)), _TomlNames(str(path)), str(path), default_broker_url)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "mapping", default_broker_url: str = "") -> Settings:
        return _build(dict(data), _TomlNames(source), source, default_broker_url)


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # here: settings from the environment (every function) parse no TOML

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"settings file {path} is not UTF-8 text") from None
    except OSError as exc:  # a directory, no permission
        raise SettingsError(f"settings file {path} cannot be read: {exc.strerror or type(exc).__name__}") from None


# Top-level keys that a JITR_<KEY> variable sets, with the parser for its text form.
_SCALARS = (
    "provider",
    "max_runners",
    "allowed_owners",
    "allowed_repos",
    "runner_version",
    "boot_timeout_s",
    "ghost_grace_s",
    "stuck_after_s",
    "claim_timeout_s",
    "cap_wait_s",
    "rebalance_grace_s",
    "redelivery_interval_s",
    "delivery_ttl_s",  # no longer used: accepted with a warning (see _RETIRED)
    "finished_ttl_s",
    "max_body_bytes",
    "broker_url",
    "broker_audience",
    "warm_hold_s",
    "log_level",
    "vm_provider",
    "queue_provider",
    "store_provider",
    "secrets_provider",
)
# Variables that hold secret values (read through the secrets provider) or steer the tooling.
_NOT_SETTINGS = frozenset(
    {
        "JITR_CONFIG",
        "JITR_WEBHOOK_SECRET",
        "JITR_GITHUB_APP_PRIVATE_KEY",
        "JITR_DISABLE_PLUGINS",
        "JITR_REQUIRE_EMULATORS",
        "JITR_REQUIRE_TOOLS",
    }
)
_GITHUB_KEYS = ("api_url", "app_id")
# Settings that no longer do anything, accepted with a warning saying why, so a deployment that
# still sets one keeps starting.
_RETIRED = {
    "delivery_ttl_s": "the webhook keeps no delivery records any more (a duplicate delivery is harmless)",
}
# A JITR_<WORD>_... variable whose first word starts a core setting is a misspelt core setting,
# never a plugin's section (JITR_MAX_RUNNER is not the setting "runner" of a plugin "max").
_CORE_WORDS = frozenset(key.split("_", 1)[0] for key in _SCALARS) - {"secrets"}
_PROVIDER_KEYS = ("provider", "vm_provider", "queue_provider", "store_provider", "secrets_provider")


def _merge_env(data: dict[str, Any], env: Mapping[str, str]) -> set[tuple[str, ...]]:
    """Fold ``JITR_*`` variables into ``data``; returns the key paths they set."""
    paths: set[tuple[str, ...]] = set()
    hyphenated = _hyphenated_providers(data, env)
    for name, value in env.items():
        if not name.startswith("JITR_") or name in _NOT_SETTINGS:
            continue
        key = name[5:].lower()
        section = next((s for s in hyphenated if key.startswith(s.replace("-", "_") + "_")), None)
        if key in _SCALARS:
            data[key] = value
            paths.add((key,))
        elif section is not None:  # JITR_MY_VMS_ENDPOINT: provider my-vms's endpoint (a variable takes no "-")
            sub = key[len(section) + 1 :]
            target = data.setdefault(section, {})
            if isinstance(target, dict):
                target[sub] = value
            paths.add((section, sub))
        elif key == "pools":
            data["pools"] = _EnvJson(name, value)
            paths.add((key,))
        elif "_" in key and key.split("_", 1)[0] not in _CORE_WORDS:
            section, sub = key.split("_", 1)
            if section == "github" and sub not in _GITHUB_KEYS:
                raise SettingsError(_unknown(name, [f"JITR_GITHUB_{k.upper()}" for k in _GITHUB_KEYS]))
            target = data.setdefault(section, {})
            if isinstance(target, dict):
                target[sub] = value
            paths.add((section, sub))
        else:
            raise SettingsError(_unknown(name, [f"JITR_{k.upper()}" for k in (*_SCALARS, "pools")]))
    return paths


def _hyphenated_providers(data: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The providers chosen whose names hold a "-", longest first (the likelier match of a prefix)."""
    chosen = [data.get(key) for key in _PROVIDER_KEYS] + [env.get(f"JITR_{key.upper()}") for key in _PROVIDER_KEYS]
    return sorted({name for name in chosen if isinstance(name, str) and "-" in name}, key=len, reverse=True)


def _unknown(name: str, known: list[str]) -> str:
    import difflib  # here: only a misspelt name needs it

    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(known))}"
    return f"{name} is not a jitr setting{hint} (plugin settings are JITR_<PLUGIN>_<KEY>)"


@dataclass(frozen=True, slots=True)
class _EnvJson:
    name: str
    text: str


class _Names:
    """Turns a key path into the name a user typed, for error messages."""

    def name(self, *path: str | int) -> str:
        raise NotImplementedError


class _MixedNames(_Names):
    """A ``JITR_CONFIG`` file overlaid with ``JITR_*`` variables: each key named where it came from."""

    def __init__(self, file: str, from_env: set[tuple[str, ...]]) -> None:
        self.file = _TomlNames(file)
        self.env = _EnvNames()
        self.from_env = from_env

    def name(self, *path: str | int) -> str:
        head = tuple(str(p) for p in path[:2])
        if head[:1] in self.from_env or head in self.from_env:
            return self.env.name(*path)
        return self.file.name(*path)


class _EnvNames(_Names):
    def name(self, *path: str | int) -> str:
        if path and path[0] == "pools":
            return "JITR_POOLS" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:])
        return "JITR_" + "_".join(str(p) for p in path).upper().replace("-", "_")


class _TomlNames(_Names):
    def __init__(self, file: str) -> None:
        self.file = file

    def name(self, *path: str | int) -> str:
        text = ""
        for part in path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return f"{text} in {self.file}"


def _build(data: dict[str, Any], names: _Names, source: str, default_broker_url: str = "") -> Settings:
    """Validate ``data`` into settings.

    The broker is the normal handoff: a pool that names no ``handoff`` pulls its JIT config from
    the broker whenever the deployment has one (``broker_url``, else ``default_broker_url``: the
    broker of ``jitr serve`` itself), and takes it in its startup script only where there is no
    broker to call.
    """
    r = _Reader(names)
    for key, why in _RETIRED.items():
        if key in data:
            warnings.warn(f"{names.name(key)} is no longer used and is ignored: {why}", FutureWarning, stacklevel=2)
    default_provider = r.choice(data, "provider", default="embedded", pattern=_POOL_NAME)
    providers = {
        role: r.choice(data, f"{role}_provider", default=default_provider, pattern=_POOL_NAME) for role in ROLES
    }
    github = r.table(data, "github")
    for key in github:
        if key not in _GITHUB_KEYS:
            raise SettingsError(f"{names.name('github', key)} is not a setting; known: {list(_GITHUB_KEYS)}")
    raw_pools = data.get("pools", [])
    if isinstance(raw_pools, _EnvJson):
        try:
            raw_pools = json.loads(raw_pools.text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{raw_pools.name} must be a JSON list of pools: {exc}") from None
    if not isinstance(raw_pools, list):
        raise SettingsError(f"{names.name('pools')} must be a list of pools, found {type(raw_pools).__name__}")
    broker_url = r.choice(data, "broker_url", default=default_broker_url, pattern=_BROKER_URL)
    handoff = "broker" if broker_url else "metadata"
    pools = tuple(_pool(r, p, i, handoff) for i, p in enumerate(raw_pools))
    seen: set[str] = set()
    for pool in pools:
        if pool.name in seen:
            raise SettingsError(f"{names.name('pools')} names pool {pool.name!r} twice")
        seen.add(pool.name)
    secrets = {str(k): str(v) for k, v in r.table(data, "secrets").items()}
    secrets.setdefault("webhook_secret", "env:JITR_WEBHOOK_SECRET")
    secrets.setdefault("github_app_private_key", "env:JITR_GITHUB_APP_PRIVATE_KEY")
    reserved = {"pools", "github", "secrets", *_SCALARS}
    for key, value in data.items():
        if key not in reserved and not isinstance(value, dict):  # tables are plugin sections
            raise SettingsError(f"{names.name(key)} is not a setting; known: {sorted(reserved)}")
    sections = {k: dict(v) for k, v in data.items() if k not in reserved and isinstance(v, dict)}
    api_url = str(github.get("api_url", "https://api.github.com")).rstrip("/")
    brokered = [pool.name for pool in pools if pool.handoff == "broker"]
    if brokered and not broker_url:
        raise SettingsError(
            f"pools {brokered} hand the JIT config over through the broker: set {names.name('broker_url')} "
            "to the broker's URL (the VMs call it), or set their handoff to 'metadata'"
        )
    if not api_url.startswith(("https://", "http://")):
        raise SettingsError(f"{names.name('github', 'api_url')} must be an http(s) URL, found {api_url!r}")
    return Settings(
        pools=pools,
        providers=providers,
        max_runners=r.integer(data, "max_runners", default=100, low=1),
        allowed_owners=frozenset(o.lower() for o in r.words(data, "allowed_owners", _OWNER)),
        allowed_repos=frozenset(o.lower() for o in r.words(data, "allowed_repos", _REPO)),
        github_app_id=str(github.get("app_id", "")),
        github_api_url=api_url,
        runner_version=r.choice(data, "runner_version", default="2.336.0", pattern=re.compile(r"^\d+\.\d+\.\d+$")),
        boot_timeout_s=r.integer(data, "boot_timeout_s", default=600, low=1),
        ghost_grace_s=r.integer(data, "ghost_grace_s", default=300, low=0),
        stuck_after_s=r.integer(data, "stuck_after_s", default=900, low=1),
        claim_timeout_s=r.integer(data, "claim_timeout_s", default=120, low=1),
        cap_wait_s=r.integer(data, "cap_wait_s", default=15, low=1),
        rebalance_grace_s=r.integer(data, "rebalance_grace_s", default=60, low=0),
        redelivery_interval_s=r.integer(data, "redelivery_interval_s", default=60, low=0),
        finished_ttl_s=r.integer(data, "finished_ttl_s", default=7 * 86400, low=60),
        max_body_bytes=r.integer(data, "max_body_bytes", default=1024 * 1024, low=1024),
        broker_url=broker_url,
        broker_audience=r.choice(data, "broker_audience", default=broker_url, pattern=_AUDIENCE) if broker_url else "",
        warm_hold_s=_warm_hold(r, data),
        log_level=r.choice(data, "log_level", default="INFO", pattern=re.compile(r"^(DEBUG|INFO|WARNING|ERROR)$")),
        secrets=secrets,
        sections=sections,
        source=source,
        names=names,
    )


def _pool(r: _Reader, raw: Any, index: int, handoff: str) -> Pool:
    """One pool; ``handoff`` is the deployment's default handoff (see :func:`_build`)."""
    path: tuple[str | int, ...] = ("pools", index)
    if not isinstance(raw, dict):
        raise SettingsError(f"{r.names.name(*path)} must be a table/object, found {type(raw).__name__}")
    known = {f for f in Pool.__dataclass_fields__ if f != "options"} | {"options"}
    for key in raw:
        if key not in known:
            raise SettingsError(f"{r.names.name(*path, key)} is not a pool setting; known: {sorted(known)}")
    name = r.choice(raw, "name", default=None, pattern=_POOL_NAME, path=path)
    labels = frozenset(label.lower() for label in r.words(raw, "labels", _LABEL, path=path))
    if "self-hosted" not in labels:
        raise SettingsError(f"{r.names.name(*path, 'labels')} must include 'self-hosted', found {sorted(labels)}")
    machine_types = r.words(raw, "machine_types", _SAFE_VALUE, path=path)
    if not machine_types:
        raise SettingsError(f"{r.names.name(*path, 'machine_types')} must list at least one machine type")
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise SettingsError(f"{r.names.name(*path, 'options')} must be a table/object")
    image = raw.get("image", "")
    if image and not _SAFE_VALUE.match(str(image)):
        raise SettingsError(f"{r.names.name(*path, 'image')} has characters outside [A-Za-z0-9._:/@=+-]: {image!r}")
    max_runners = r.integer(raw, "max_runners", default=10, low=0, path=path)
    return Pool(
        name=name,
        labels=labels,
        machine_types=machine_types,
        image=str(image),
        spot=r.boolean(raw, "spot", True, path),
        on_demand_fallback=r.boolean(raw, "on_demand_fallback", True, path),
        disk_gb=r.integer(raw, "disk_gb", default=30, low=8, path=path),
        placements=r.words(raw, "placements", _SAFE_VALUE, path=path),
        max_runners=max_runners,
        runner_group=str(raw.get("runner_group", "Default")),
        org_scope=r.boolean(raw, "org_scope", False, path),
        priority=r.integer(raw, "priority", default=0, low=-1000, path=path),
        allow_public=r.boolean(raw, "allow_public", False, path),
        arch=r.choice(raw, "arch", default="x64", pattern=re.compile(r"^(x64|arm64)$"), path=path),
        max_lifetime_s=r.integer(raw, "max_lifetime_s", default=8 * 3600, low=300, path=path),
        options=dict(options),
        handoff=r.choice(raw, "handoff", default=handoff, pattern=_HANDOFF, path=path),
        machine_type_labels=_type_patterns(r, raw, path),
        machine_sizes=_machine_sizes(r, raw, path),
        rerun_on_interruption=r.boolean(raw, "rerun_on_interruption", False, path),
        **_warm(r, raw, path, max_runners, handoff),
    )


def _warm_hold(r: _Reader, data: Mapping[str, Any]) -> int:
    hold = r.integer(data, "warm_hold_s", default=20, low=1)
    if hold > WARM_HOLD_MAX_S:
        raise SettingsError(
            f"{r.names.name('warm_hold_s')} must be at most {WARM_HOLD_MAX_S} (the broker function's timeout), "
            f"found {hold}"
        )
    return hold


def _warm(
    r: _Reader, raw: Mapping[str, Any], path: tuple[str | int, ...], max_runners: int, handoff: str
) -> dict[str, Any]:
    """A pool's ``warm``, ``warm_windows`` and ``warm_max_idle_s``: counts within the pool's cap, broker pools only."""
    warm = r.integer(raw, "warm", default=0, low=0, path=path)
    windows = _warm_windows(r, raw, path)
    idle = r.integer(raw, "warm_max_idle_s", default=3600, low=60, path=path)
    counts: list[tuple[tuple[str | int, ...], int]] = [(("warm",), warm)]
    counts += [(("warm_windows", i, "count"), w.count) for i, w in enumerate(windows)]
    for key, count in counts:
        if count > max_runners:
            raise SettingsError(
                f"{r.names.name(*path, *key)} is {count}, more than the pool's max_runners ({max_runners}): "
                "warm VMs count against the caps"
            )
    if any(count for _, count in counts) and raw.get("handoff", handoff) != "broker":
        raise SettingsError(
            f"{r.names.name(*path, 'warm')}: warm VMs wait at the broker for their JIT config; "
            "give the deployment a broker_url and leave the pool's handoff at 'broker' (the default then), "
            "or remove warm and warm_windows"
        )
    return {"warm": warm, "warm_windows": windows, "warm_max_idle_s": idle}


def _warm_windows(r: _Reader, raw: Mapping[str, Any], path: tuple[str | int, ...]) -> tuple[WarmWindow, ...]:
    value = raw.get("warm_windows", [])
    where = r.names.name(*path, "warm_windows")
    if not isinstance(value, list) or len(value) > MAX_WARM_WINDOWS:
        raise SettingsError(
            f"{where} must be a list of at most {MAX_WARM_WINDOWS} {{days, start_hour, end_hour, count}} tables"
        )
    windows = []
    for i, entry in enumerate(value):
        at = (*path, "warm_windows", i)
        if not isinstance(entry, dict) or set(entry) != {"days", "start_hour", "end_hour", "count"}:
            raise SettingsError(
                f"{r.names.name(*at)} must be a table of exactly days, start_hour, end_hour, count; found {entry!r}"
            )
        days = entry["days"]
        if not isinstance(days, list) or not days or not all(isinstance(d, str) and d in WEEKDAYS for d in days):
            raise SettingsError(
                f"{r.names.name(*at, 'days')} must be a non-empty list of {list(WEEKDAYS)}, found {days!r}"
            )
        start = r.integer(entry, "start_hour", default=0, low=0, path=at)
        end = r.integer(entry, "end_hour", default=0, low=1, path=at)
        if start >= end or end > 24:
            raise SettingsError(
                f"{r.names.name(*at)}: hours are UTC with 0 <= start_hour < end_hour <= 24, found {start} to {end}"
            )
        windows.append(WarmWindow(frozenset(days), start, end, r.integer(entry, "count", default=0, low=0, path=at)))
    return tuple(windows)


def _type_patterns(r: _Reader, raw: Mapping[str, Any], path: tuple[str | int, ...]) -> tuple[str, ...]:
    """The pool's ``machine_type_labels``: machine types or glob patterns (``*``, ``?``) a job's label may name."""
    where = r.names.name(*path, "machine_type_labels")
    value = raw.get("machine_type_labels", [])
    if isinstance(value, str):
        value = [w for w in (part.strip() for part in value.split(",")) if w]
    if not isinstance(value, list):
        raise SettingsError(f"{where} must be a list of machine types or patterns, found {type(value).__name__}")
    for item in value:
        if not isinstance(item, str) or not _TYPE_PATTERN.match(item):
            raise SettingsError(
                f"{where} has an invalid pattern {item!r}: use lower-case letters, digits, '.', '_', '-' and the "
                "wildcards '*' and '?', starting with a letter or digit, without '..', at most 64 characters"
            )
    _no_duplicates(r, value, (*path, "machine_type_labels"))
    return tuple(value)


def _machine_sizes(r: _Reader, raw: Mapping[str, Any], path: tuple[str | int, ...]) -> tuple[MachineSize, ...]:
    """The pool's ``machine_sizes``: the candidates ``cpu=N``/``ram=N`` labels resolve to."""
    value = raw.get("machine_sizes", [])
    where = r.names.name(*path, "machine_sizes")
    if not isinstance(value, list):
        raise SettingsError(
            f"{where} must be a list of {{machine_type, cpu, ram}} tables, found {type(value).__name__}"
        )
    sizes = []
    for i, entry in enumerate(value):
        at = (*path, "machine_sizes", i)
        if not isinstance(entry, dict) or set(entry) != {"machine_type", "cpu", "ram"}:
            raise SettingsError(
                f"{r.names.name(*at)} must be a table with exactly machine_type, cpu and ram, found {entry!r}"
            )
        machine_type = entry["machine_type"]
        if not isinstance(machine_type, str) or not MACHINE_TYPE.match(machine_type):
            raise SettingsError(
                f"{r.names.name(*at, 'machine_type')} is not a machine type: use lower-case letters, digits, "
                f"'.', '_', '-', starting with a letter or digit, without '..', at most 64 characters; "
                f"found {machine_type!r}"
            )
        cpu = r.integer(entry, "cpu", default=0, low=1, path=at)
        ram = r.integer(entry, "ram", default=0, low=1, path=at)
        sizes.append(MachineSize(machine_type, cpu, ram))
    _no_duplicates(r, [s.machine_type for s in sizes], (*path, "machine_sizes"))
    return tuple(sizes)


def _no_duplicates(r: _Reader, items: Sequence[str], path: tuple[str | int, ...]) -> None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            raise SettingsError(f"{r.names.name(*path)} lists {item!r} twice")
        seen.add(item)


class _Reader:
    def __init__(self, names: _Names) -> None:
        self.names = names

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise SettingsError(f"{self.names.name(key)} must be a table, found {type(value).__name__}")
        return value

    def choice(
        self,
        data: Mapping[str, Any],
        key: str,
        default: str | None,
        pattern: re.Pattern[str],
        path: tuple[str | int, ...] = (),
    ) -> str:
        value = data.get(key, default)
        if value is None:
            raise SettingsError(f"{self.names.name(*path, key)} is required")
        if not isinstance(value, str) or not pattern.match(value):
            raise SettingsError(f"{self.names.name(*path, key)} must match {pattern.pattern}, found {value!r}")
        return value

    def integer(
        self, data: Mapping[str, Any], key: str, default: int, low: int, path: tuple[str | int, ...] = ()
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise SettingsError(f"{self.names.name(*path, key)} must be a whole number, found {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{self.names.name(*path, key)} must be a whole number, found {value!r}")
        if value < low:
            raise SettingsError(f"{self.names.name(*path, key)} must be at least {low}, found {value}")
        return value

    def boolean(self, data: Mapping[str, Any], key: str, default: bool, path: tuple[str | int, ...] = ()) -> bool:
        value = data.get(key, default)
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise SettingsError(f"{self.names.name(*path, key)} must be true or false, found {value!r}")
        return value

    def words(
        self, data: Mapping[str, Any], key: str, pattern: re.Pattern[str], path: tuple[str | int, ...] = ()
    ) -> tuple[str, ...]:
        value = data.get(key, ())
        if isinstance(value, str):
            value = [w for w in (part.strip() for part in value.split(",")) if w]
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{self.names.name(*path, key)} must be a list, found {type(value).__name__}")
        for item in value:
            if not isinstance(item, str) or not pattern.match(item):
                raise SettingsError(
                    f"{self.names.name(*path, key)} has an invalid entry {item!r}; expected {pattern.pattern}"
                )
        return tuple(value)
