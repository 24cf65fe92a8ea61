"""jitr's GitHub side: the GitHub App client (:class:`GitHubClient`) and a GitHub simulator
(:mod:`jitr_github.simulator`).

The client is loaded on first use so that the simulator's runner agent starts without it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import GitHubClient

try:
    __version__ = version("jitr-github")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["GitHubClient", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "GitHubClient":
        from .client import GitHubClient

        return GitHubClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
