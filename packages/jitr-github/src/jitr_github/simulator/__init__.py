"""A GitHub simulator for tests, the demo and the benchmarks: the REST API a GitHub App uses,
webhook deliveries, runner agents and fault injection, over real HTTP.

Names are loaded on first use so that ``python -m jitr_github.simulator.agent`` starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .faults import Faults
    from .github import GitHubSimulator
    from .state import Job, Runner, SimulatorError
    from .webhooks import Delivery

__all__ = ["Delivery", "Faults", "GitHubSimulator", "Job", "Runner", "SimulatorError"]

_HOMES = {
    "Delivery": ".webhooks",
    "Faults": ".faults",
    "GitHubSimulator": ".github",
    "Job": ".state",
    "Runner": ".state",
    "SimulatorError": ".state",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)
