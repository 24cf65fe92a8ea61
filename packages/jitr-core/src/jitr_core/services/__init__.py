"""The five functions of the control plane, written once against the hooks and the GitHub protocol."""

from .lifecycle import LifecycleService
from .rebalancer import RebalancerService
from .scaledown import ScaledownService
from .scaleup import ScaleupService
from .webhook import WebhookResponse, WebhookService

__all__ = [
    "LifecycleService",
    "RebalancerService",
    "ScaledownService",
    "ScaleupService",
    "WebhookResponse",
    "WebhookService",
]
