"""jitr's GitHub side: the GitHub App client (:class:`GitHubClient`) and a GitHub simulator
(:mod:`jitr_github.simulator`).

Names are loaded on first use, so that the simulator's runner agent starts without the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import GitHubClient

    __version__: str

__all__ = ["GitHubClient", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "GitHubClient":
        from .client import GitHubClient

        return GitHubClient
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("jitr-github")
        except PackageNotFoundError:  # running from a source tree
            return "0.0.0"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
