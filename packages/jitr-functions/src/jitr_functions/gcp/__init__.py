"""Cloud Run function targets for functions-framework (the ``main.py`` of ``jitr bundle gcp``)."""

from . import preimport
from .handlers import broker, lifecycle, rebalancer, scaledown, scaleup, webhook

preimport.install()

__all__ = ["broker", "lifecycle", "rebalancer", "scaledown", "scaleup", "webhook"]
