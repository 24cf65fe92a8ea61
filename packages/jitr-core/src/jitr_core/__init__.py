"""jitr core: the domain model, plugin hookspecs, services and the embedded backend."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """``__version__`` is looked up on first use: package metadata is slow to read at import."""
    if name != "__version__":
        raise AttributeError(f"module 'jitr_core' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jitr-core")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0"
