"""boto3 clients, created once per process and shared by every thread.

boto3 is imported on first use, never when the plugin is discovered. Clients are keyed by the
settings that shape them (service, region, endpoint), so tests and multi-region callers get their
own. Creating clients from one boto3 session is not thread-safe; using a created client is.
"""

from __future__ import annotations

import threading
from typing import Any

from .config import AwsConfig

# Enough connections for the concurrent writers of a burst (boto3's default is 10).
MAX_POOL_CONNECTIONS = 32

_lock = threading.Lock()
_clients: dict[tuple[str, str, str | None, bool], Any] = {}
_session: Any = None


def client(service: str, config: AwsConfig, retries: bool = True) -> Any:
    """The shared boto3 client for ``service`` in the configured region (and endpoint, in tests).

    ``retries=False``: botocore tries each call once, for callers that decide themselves which
    failures are worth another try (an EC2 capacity error is answered with HTTP 500, which
    botocore would retry, while jitr should move on to the next candidate at once).
    """
    key = (service, config.region, config.endpoint_url, retries)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = _new_client(service, config, retries)
        return found


def _new_client(service: str, config: AwsConfig, retries: bool) -> Any:
    global _session
    import boto3
    from botocore.config import Config

    from . import __version__

    if _session is None:
        _session = boto3.session.Session()
    return _session.client(
        service,
        region_name=config.region,
        endpoint_url=config.endpoint_url,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": 3 if retries else 1},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            user_agent_extra=f"jitr-aws/{__version__}",
        ),
    )
