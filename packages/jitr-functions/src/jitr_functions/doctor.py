"""``jitr doctor``: check a deployment's settings, plugins, providers, secrets and GitHub access.

Each check runs on its own and reports ok or the problem, so one failure does not hide the
next. Nothing is written, no message is sent, and no secret value is printed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jitr_core.backend import Backend
from jitr_core.errors import JitrError
from jitr_core.model import RecordQuery
from jitr_core.plugins import create_plugin_manager, list_plugins
from jitr_core.secret import Secret
from jitr_core.settings import Settings


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_checks(load_settings: Callable[[], Settings]) -> list[Check]:
    checks: list[Check] = []

    def check(name: str, probe: Callable[[], str]) -> bool:
        try:
            checks.append(Check(name, True, probe()))
            return True
        except JitrError as exc:
            checks.append(Check(name, False, str(exc)))
        except Exception as exc:  # a doctor reports every failure, whatever its kind
            checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
        return False

    holder: dict[str, object] = {}

    def settings() -> str:
        holder["settings"] = s = load_settings()
        return f"{len(s.pools)} pools; providers {dict(s.providers)}"

    def plugins() -> str:
        holder["pm"] = pm = create_plugin_manager()
        return ", ".join(info.name for info in list_plugins(pm))

    if not check("settings", settings) or not check("plugins", plugins):
        return checks
    s = holder["settings"]
    assert isinstance(s, Settings)
    backend = Backend(holder["pm"], s)  # type: ignore[arg-type]
    check(
        "store",
        lambda: (
            f"{s.provider('store')}: {len(backend.query(RecordQuery('runner', 'busy', limit=1)).records)} "
            "busy runner(s) on the first page"
        ),
    )
    check("vms", lambda: f"{s.provider('vm')}: {len(backend.list_vms())} managed VM(s)")
    check("queue", lambda: f"{s.provider('queue')}: {len(backend.dead_letters('jobs'))} dead letter(s) on jobs")
    for name in sorted(s.secrets):
        check(f"secret {name}", lambda name=name: f"readable ({len(backend.secret(name))} characters)")
    if s.github_app_id:
        check("github", lambda: _github(backend, s))
    else:
        checks.append(Check("github", False, "github.app_id / JITR_GITHUB_APP_ID is not set"))
    return checks


def _github(backend: Backend, settings: Settings) -> str:
    from jitr_github import GitHubClient

    client = GitHubClient(
        settings.github_app_id, Secret(backend.secret("github_app_private_key")), settings.github_api_url
    )
    limit = client.fetch_rate_limit()
    return f"App {settings.github_app_id} authenticated at {settings.github_api_url}; {limit.remaining}/{limit.limit} requests left"
