"""The one exception hierarchy of jitr.

Every error the project raises on purpose derives from :class:`JitrError`, so callers at the
edges (handlers, the CLI) can tell an expected failure from a bug. Messages say what was
expected and what was found, and never carry a secret.
"""

from __future__ import annotations


class JitrError(Exception):
    """Base of every error jitr raises on purpose."""


class SettingsError(JitrError):
    """A setting is missing or invalid; the message names the variable or key."""


class PluginError(JitrError):
    """A plugin failed to load or declares something the registry does not accept."""


class NoProviderError(JitrError):
    """No registered plugin answered a provider hook for the configured provider.

    ``broken`` describes the plugins that failed to load; ``disabled`` says the provider's plugin
    is installed but ``JITR_DISABLE_PLUGINS`` keeps it out, where installing it would not help.
    """

    def __init__(self, role: str, provider: str, hook: str, broken: str = "", disabled: bool = False) -> None:
        remedy = (
            f"the plugin for {provider!r} is disabled by JITR_DISABLE_PLUGINS: remove it from there"
            if disabled
            else f"install the plugin for {provider!r}"
        )
        super().__init__(
            f"no plugin provides {role!r} as {provider!r} (hook {hook}); {remedy} or set JITR_{role.upper()}_PROVIDER"
            + (f"; {broken}" if broken else "")
        )
        self.role = role
        self.provider = provider
        self.hook = hook


class PayloadError(JitrError):
    """External input (a webhook, a queue message) is malformed; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class SignatureError(PayloadError):
    """A webhook's signature is missing, malformed or wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=401)


class IdentityError(JitrError):
    """A VM's identity proof is malformed, forged, expired or not from the expected account.

    The message is a reason safe to log (what was wrong, never the proof, token or document
    itself); the broker answers it with ``status`` (401).
    """

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class NoStateError(JitrError):
    """A command that only reads found no state where the settings point: nothing has run with
    them yet. Not a fault, and nothing is created to answer it."""


class SecretNotFoundError(JitrError):
    """A secret the settings name does not exist or is empty."""


class BackendError(JitrError):
    """A cloud or embedded backend failed in a way that may pass if retried."""


class CapacityError(BackendError):
    """The VM provider has no capacity (or quota) for one candidate; the next one may work."""

    def __init__(self, message: str, code: str = "capacity") -> None:
        super().__init__(message)
        self.code = code


class LaunchError(BackendError):
    """A VM launch failed for a reason other than capacity; retrying the same call will not help."""


class GitHubError(JitrError):
    """GitHub answered with an error or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class GitHubNotFoundError(GitHubError):
    """The GitHub resource (installation, runner, repository) does not exist."""


class GitHubConflictError(GitHubError):
    """GitHub refused because of a conflict (for example a runner name already in use)."""


class GitHubAuthError(GitHubError):
    """GitHub rejected the App's credentials (401/403 not caused by a rate limit)."""


class GitHubRateLimitError(GitHubError):
    """GitHub's rate limit is exhausted; ``retry_after`` says how many seconds to wait."""

    def __init__(self, message: str, retry_after: float, status: int | None = 429) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class GitHubUnavailableError(GitHubError):
    """GitHub kept failing (5xx, timeouts, connection errors) after retries."""


class RecordError(JitrError):
    """A stored record lacks a field jitr writes, or holds it with the wrong type (a hand edit, a
    store restored from another version); the message names the record and the field."""


class StoreConflictError(BackendError):
    """A record kept changing under every retry of an update; redelivery will try again."""


class RetryLaterError(JitrError):
    """The work cannot proceed now (capacity, caps, a claim held by a live worker); try after ``delay_s``."""

    def __init__(self, message: str, delay_s: int = 30) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class CapacityExhaustedError(BackendError):
    """Every candidate of a pool's fallback chain lacked capacity; the queue retries later."""


class PassIncomplete(JitrError):
    """A periodic pass did all it could, but some of its steps failed (each logged with its reason).

    Raised as the pass ends, so that its invocation counts as failed (the function's error alarm,
    ``function_errors``) while one stuck item no longer stops the others; ``report`` is the pass's.
    """

    def __init__(self, function: str, report: dict[str, int]) -> None:
        super().__init__(f"{function} pass done but for {report.get('errors')} failed steps (logged): {report}")
        self.report = report
