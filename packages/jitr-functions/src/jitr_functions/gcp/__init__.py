"""Cloud Run function targets for functions-framework (the ``main.py`` of ``jitr bundle gcp``)."""

from .handlers import lifecycle, rebalancer, scaledown, scaleup, webhook

__all__ = ["lifecycle", "rebalancer", "scaledown", "scaleup", "webhook"]
