"""The GitHub Actions runner releases jitr installs, each pinned to the SHA-256 of its tarball.

The startup script and the image build both refuse a runner tarball whose digest differs from
this table; ``images/packer/runner-checksums.txt`` holds the same pins for the image build, and a
test keeps the two equal. The digests are the ones GitHub publishes in each release's notes.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import JitrError

RUNNER_SHA256: Mapping[tuple[str, str], str] = {
    ("2.336.0", "x64"): "04cf0be1aff4c3ec3554466c39124ca250e3effd8873bb7e8d68535aa9505d5d",
    ("2.336.0", "arm64"): "58b758e420b87093fbd4bfddd368074960053e2f1388f01848c82624b90f27d1",
}


def runner_tarball_name(version: str, arch: str) -> str:
    """The release asset name, e.g. ``actions-runner-linux-x64-2.336.0.tar.gz``."""
    return f"actions-runner-linux-{arch}-{version}.tar.gz"


def pinned_sha256(version: str, arch: str) -> str:
    """The pinned digest of runner ``version`` for ``arch``; an error naming the pinned ones if none."""
    try:
        return RUNNER_SHA256[(version, arch)]
    except KeyError:
        pinned = sorted({v for v, _ in RUNNER_SHA256})
        raise JitrError(
            f"runner version {version!r} ({arch}) has no pinned SHA-256 in this jitr release; "
            f"pinned versions: {', '.join(pinned)}"
        ) from None
