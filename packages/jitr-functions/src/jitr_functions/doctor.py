"""``jitr doctor``: check a deployment's settings, plugins, providers, handoff, secrets and GitHub access.

Each check runs on its own and reports ok or the problem, so one failure does not hide the
next. The settings and the plugins are checked independently of each other; the provider,
secret and GitHub checks need both, so they run only once both pass. Nothing is written (the
embedded state is opened read-only: none is created, no VM is stopped), no message is sent, and
no secret value is printed. No state yet is not a fault: ``jitr serve`` creates it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from jitr_core.backend import Backend
from jitr_core.broker_script import BROKER
from jitr_core.embedded.instance import read_only
from jitr_core.errors import JitrError, NoStateError, PluginError
from jitr_core.model import RecordQuery
from jitr_core.plugins import JitrPluginManager, create_plugin_manager, describe_broken, list_plugins
from jitr_core.secret import Secret
from jitr_core.settings import Settings

T = TypeVar("T")
BROKER_PROBE_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(load_settings: Callable[[], Settings]) -> list[Check]:
    checks: list[Check] = []

    def check(name: str, probe: Callable[[], str]) -> None:
        _probe(checks, name, probe, lambda detail: detail)

    settings = _probe(
        checks, "settings", load_settings, lambda s: f"{len(s.pools)} pools; providers {dict(s.providers)}"
    )
    pm = _probe(checks, "plugins", _plugins, lambda pm: ", ".join(i.name for i in list_plugins(pm)))
    if settings is None or pm is None:
        return checks  # every later check needs both
    backend = Backend(pm, settings)
    with read_only():
        check("store", lambda: _store(backend))
        check("vms", lambda: f"{settings.provider('vm')}: {len(backend.list_vms())} managed VM(s)")
        check(
            "queue", lambda: f"{settings.provider('queue')}: {len(backend.dead_letters('jobs'))} dead letter(s) on jobs"
        )
        check("handoff", lambda: _handoff(settings))
        for name in sorted(settings.secrets):
            check(f"secret {name}", functools.partial(_secret, backend, name))
        if settings.github_app_id:
            check("github", lambda: _github(backend, settings))
        else:
            checks.append(Check("github", False, "github.app_id / JITR_GITHUB_APP_ID is not set"))
    return checks


def _probe(checks: list[Check], name: str, probe: Callable[[], T], describe: Callable[[T], str]) -> T | None:
    """Run one check and record its outcome; its result, or None when it failed (whatever the error)."""
    try:
        result = probe()
        checks.append(Check(name, True, describe(result)))
        return result
    except NoStateError as exc:  # nothing has run here yet: nothing to check, and nothing wrong
        checks.append(Check(name, True, str(exc)))
    except JitrError as exc:
        checks.append(Check(name, False, str(exc)))
    except Exception as exc:  # a doctor reports every failure, whatever its kind
        checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
    return None


def _plugins() -> JitrPluginManager:
    """The plugins as a function's cold start loads them; a broken one fails the check."""
    pm = create_plugin_manager()
    if broken := describe_broken(pm):
        raise PluginError(broken)
    return pm


def _secret(backend: Backend, name: str) -> str:
    return f"readable ({len(backend.secret(name))} characters)"


def _store(backend: Backend) -> str:
    busy = backend.query(RecordQuery("runner", "busy", limit=1)).records
    return f"{backend.settings.provider('store')}: answered a query ({len(busy)} busy runner on the first page)"


def _handoff(settings: Settings) -> str:
    """How each pool's VMs get their JIT config, and whether the broker answers where pools use it.

    The broker is asked with an empty request, which it refuses (400) naming what a request
    holds: it answers from here, though the VMs' own route to it is not tested.
    """
    pools = ", ".join(f"{pool.name}: {pool.handoff}" for pool in settings.pools)
    if not any(pool.handoff == BROKER for pool in settings.pools):
        if settings.provider("vm") == "embedded" and not settings.broker_url:
            return f"{pools} (`jitr serve` makes its own broker the default for these pools)"
        return pools
    status, answer = _ask_empty(settings.broker_url)
    if status != 400 or "runner_name" not in answer:
        raise JitrError(f"{pools}; {settings.broker_url} answered {status} {answer[:200]!r}, not as the broker does")
    return f"{pools}; the broker at {settings.broker_url} answers"


def _ask_empty(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    # the settings hold the broker's URL to http(s): no file: or other scheme reaches urllib
    request = urllib.request.Request(url, b"{}", {"content-type": "application/json"}, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=BROKER_PROBE_TIMEOUT_S) as response:  # noqa: S310
            return response.status, response.read(4096).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode(errors="replace")
    except OSError as exc:  # refused, unresolvable, timed out
        raise JitrError(f"the broker at {url} cannot be reached from here: {exc}") from None


def _github(backend: Backend, settings: Settings) -> str:
    from jitr_github import GitHubClient

    key = Secret(backend.secret("github_app_private_key"))
    limit = GitHubClient(settings.github_app_id, key, settings.github_api_url).fetch_rate_limit()
    return f"App {settings.github_app_id} at {settings.github_api_url}: {limit.remaining}/{limit.limit} requests left"
