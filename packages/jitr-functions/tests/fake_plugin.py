"""An installed ``jitr`` plugin distribution made of nothing but its ``dist-info``.

importlib.metadata finds it on ``sys.path`` like any installed distribution, so code that
discovers plugins by their entry points sees it; importing its module is another matter (it is
only there when the test writes one).
"""

from __future__ import annotations

from pathlib import Path

import pytest


def install_fake_plugin(
    monkeypatch: pytest.MonkeyPatch, site: Path, dist: str, entry_point: str, module: str = "jitr_fake_plugin"
) -> Path:
    """Put ``dist`` (version 1.0) registering ``entry_point = module`` in group ``jitr`` on ``sys.path``."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[jitr]\n{entry_point} = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    return info
