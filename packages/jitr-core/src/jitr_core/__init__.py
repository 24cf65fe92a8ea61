"""jitr core: the domain model, plugin hookspecs, services and the embedded backend."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jitr-core")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
