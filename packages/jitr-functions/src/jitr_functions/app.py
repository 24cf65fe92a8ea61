"""The composition root: settings → plugins → backend → GitHub client → services.

Built once per process (a Lambda container, a Cloud Run instance, ``jitr serve``) by
:func:`get_app`. Everything heavy is built on first use, so the webhook function never imports
the GitHub client's libraries and no function imports a cloud SDK it does not call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any, cast

from jitr_core.backend import Backend
from jitr_core.logs import configure_logging, register_secret
from jitr_core.plugins import JitrPluginManager, create_plugin_manager
from jitr_core.secret import Secret
from jitr_core.settings import Settings

if TYPE_CHECKING:
    from jitr_core.github import GitHubAPI
    from jitr_core.services import (
        BrokerService,
        LifecycleService,
        RebalancerService,
        ScaledownService,
        ScaleupService,
        WebhookService,
    )

# Queue-driven functions retry through their queue: a GitHub call gives up after a short, bounded
# effort (a rate limit longer than a moment defers the message) instead of holding a worker, and
# the other tenants' messages behind it, for the client's default backoff of many seconds.
GITHUB_RETRIES = 2
GITHUB_BACKOFF_S = (0.25, 1.0)  # first wait, longest wait
GITHUB_MAX_RATE_LIMIT_WAIT_S = 2.0


class App:
    """One process's control plane: the services over one backend and one GitHub client."""

    def __init__(
        self,
        settings: Settings,
        pm: JitrPluginManager,
        github: GitHubAPI | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.pm = pm
        self.backend = Backend(pm, settings)
        self._github = github
        self.clock = clock or time.time
        self._lock = threading.Lock()

    @property
    def github(self) -> GitHubAPI:
        with self._lock:
            if self._github is None:
                from jitr_github import GitHubClient

                key = self.backend.secret("github_app_private_key")
                register_secret(key)
                self._github = GitHubClient(
                    app_id=self.settings.github_app_id,
                    private_key=Secret(key),
                    api_url=self.settings.github_api_url,
                    max_retries=GITHUB_RETRIES,
                    backoff_s=GITHUB_BACKOFF_S[0],
                    backoff_max_s=GITHUB_BACKOFF_S[1],
                    max_rate_limit_wait_s=GITHUB_MAX_RATE_LIMIT_WAIT_S,
                )
            return self._github

    @cached_property
    def _github_on_call(self) -> GitHubAPI:
        """The services' GitHub client, made when one of them first calls GitHub rather than when it is
        built: most lifecycle messages never call it, and a function that does not skips importing
        requests and PyJWT and reading the App's private key on its cold start."""
        return cast("GitHubAPI", _GitHubOnCall(self))

    def record_rate_limit(self) -> None:
        """Record how many GitHub requests are left, once a GitHub client exists and has seen an answer."""
        remaining = getattr(self._github, "rate_limit_remaining", None)
        if isinstance(remaining, int):
            self.backend.metrics.record("github_rate_limit_remaining", remaining)

    def flush_metrics(self) -> None:
        """End of an invocation: the GitHub rate limit seen, then every sample recorded, emitted once."""
        self.record_rate_limit()
        self.backend.metrics.flush()

    @cached_property
    def webhook(self) -> WebhookService:
        from jitr_core.services.webhook import WebhookService

        return WebhookService(self.backend, clock=self.clock)

    @cached_property
    def scaleup(self) -> ScaleupService:
        from jitr_core.services.scaleup import ScaleupService

        return ScaleupService(self.backend, self._github_on_call, clock=self.clock)

    @cached_property
    def lifecycle(self) -> LifecycleService:
        from jitr_core.services.lifecycle import LifecycleService

        return LifecycleService(self.backend, self._github_on_call, clock=self.clock)

    @cached_property
    def scaledown(self) -> ScaledownService:
        from jitr_core.services.scaledown import ScaledownService

        return ScaledownService(self.backend, self._github_on_call, clock=self.clock)

    @cached_property
    def broker(self) -> BrokerService:
        from jitr_core.services.broker import BrokerService

        return BrokerService(self.backend, self._github_on_call, clock=self.clock)

    @cached_property
    def rebalancer(self) -> RebalancerService:
        from jitr_core.services.rebalancer import RebalancerService

        return RebalancerService(self.backend, self._github_on_call, clock=self.clock)


class _GitHubOnCall:
    """Stands in for an app's GitHub client: the first attribute asked of it makes the client."""

    __slots__ = ("_app",)

    def __init__(self, app: App) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app.github, name)


def build_app(
    settings: Settings | None = None,
    environ: Mapping[str, str] | None = None,
    github: GitHubAPI | None = None,
    extra_plugins: Iterable[tuple[str, object]] = (),
    clock: Callable[[], float] | None = None,
    log_stream: IO[str] | None = None,
) -> App:
    """Cold start: validate settings, discover plugins, wire the services."""
    settings = settings or Settings.from_env(environ)
    configure_logging(settings.log_level, log_stream)
    pm = create_plugin_manager(environ=environ, extra=extra_plugins)
    return App(settings, pm, github=github, clock=clock)


_APP: App | None = None
_APP_LOCK = threading.Lock()


def get_app() -> App:
    """The process-wide app, built on the first call (the function's cold start)."""
    global _APP
    if _APP is None:
        with _APP_LOCK:
            if _APP is None:
                _APP = build_app()
    return _APP
