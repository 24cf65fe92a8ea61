"""The functions of the control plane, written once against the hooks and the GitHub protocol.

Each service's module is imported on first use, so a function imports only its own (the webhook
function, on every cold start, none of the others).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import BrokerAnswer, BrokerService
    from .lifecycle import LifecycleService
    from .rebalancer import RebalancerService
    from .scaledown import ScaledownService
    from .scaleup import ScaleupService
    from .webhook import WebhookResponse, WebhookService

_MODULES = {
    "BrokerAnswer": "broker",
    "BrokerService": "broker",
    "LifecycleService": "lifecycle",
    "RebalancerService": "rebalancer",
    "ScaledownService": "scaledown",
    "ScaleupService": "scaleup",
    "WebhookResponse": "webhook",
    "WebhookService": "webhook",
}

__all__ = [
    "BrokerAnswer",
    "BrokerService",
    "LifecycleService",
    "RebalancerService",
    "ScaledownService",
    "ScaleupService",
    "WebhookResponse",
    "WebhookService",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
