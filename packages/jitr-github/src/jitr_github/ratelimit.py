"""GitHub's rate limits as the client sees them: the ``x-ratelimit-*`` headers and how long to wait.

GitHub answers a primary limit with 403/429 and ``x-ratelimit-remaining: 0`` (wait until
``x-ratelimit-reset``), and a secondary limit with 403/429 and usually ``retry-after``; without
either header its guidance is to wait at least a minute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

SECONDARY_DEFAULT_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One principal's rate-limit window (an installation, or the App itself)."""

    limit: int
    remaining: int
    reset: float
    used: int
    resource: str = "core"

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        try:
            return cls(
                limit=int(headers["x-ratelimit-limit"]),
                remaining=int(headers["x-ratelimit-remaining"]),
                reset=float(headers["x-ratelimit-reset"]),
                used=int(headers.get("x-ratelimit-used") or 0),
                resource=headers.get("x-ratelimit-resource") or "core",
            )
        except (KeyError, ValueError):
            return None


def rate_limit_wait(status: int, headers: Mapping[str, str], message: str, now: float) -> float | None:
    """Seconds GitHub asks the client to wait, or None when the answer is not a rate limit."""
    if status not in (403, 429):
        return None
    retry_after = retry_after_s(headers, now)
    if retry_after is not None:
        return retry_after
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(0.0, float(headers.get("x-ratelimit-reset") or 0) - now)
        except ValueError:
            return SECONDARY_DEFAULT_WAIT_S
    if status == 429 or "rate limit" in message.lower():
        return SECONDARY_DEFAULT_WAIT_S
    return None


def retry_after_s(headers: Mapping[str, str], now: float) -> float | None:
    """``Retry-After`` as seconds (it may also be an HTTP date); None when absent or unreadable."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None
