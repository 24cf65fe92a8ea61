"""One SDK client per process and configuration, created on first use.

Google's clients open connection pools and (for gRPC) channels, so building one per call would
cost a handshake each time; a function instance keeps them for its life. Creation happens under
a lock so concurrent first calls share one client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_clients: dict[Hashable, Any] = {}
_lock = threading.Lock()


def cached_client(key: Hashable, factory: Callable[[], T]) -> T:
    """The client stored under ``key``, built by ``factory`` the first time it is asked for."""
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = factory()
    result: T = client
    return result


def anonymous_if_local(endpoint: str) -> Any:
    """Anonymous credentials for a plain-HTTP endpoint (a local fake or emulator), else None (ADC)."""
    if not endpoint.startswith("http://"):
        return None
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()  # type: ignore[no-untyped-call, unused-ignore]


def bounded(timeout_s: float) -> dict[str, Any]:
    """``retry`` and ``timeout`` for one call: Google's retry of transient errors (429, 500, 503, a
    dropped connection) for ``timeout_s`` at most. A method's own default retries for up to ten
    minutes, past a function's timeout, and gives up raising ``RetryError``, which is no
    ``GoogleAPICallError``: callers catch it as well."""
    from google.api_core import retry

    return {"retry": retry.Retry(predicate=retry.if_transient_error, timeout=timeout_s), "timeout": timeout_s}
