"""A warm VM's fetch: 204 means "no job yet, ask again", and the 200 names the runner it became."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from jitr_core.broker_script import broker_prelude, fetch_fragment
from jitr_core.testing.environment import require_tool
from test_broker_script import JIT, broker, context  # noqa: F401 - broker is a fixture

WARM_NAME = "jitr-linux-warm-0123456789"


def _fetch(port: int, *after: str) -> subprocess.CompletedProcess[str]:
    """The fetch of a VM named ``WARM_NAME`` against the broker on ``port``, then the ``after`` lines."""
    require_tool("curl", "apt-get install curl")
    script = "\n".join(
        [
            "set -euo pipefail",
            f"export JITR_RUNNER_NAME={WARM_NAME}",
            broker_prelude(context("embedded", f"http://127.0.0.1:{port}/broker", 60)),
            """jitr_identity_proof() { printf '{"token":"%s"}' "vm-1.secret"; }""",
            fetch_fragment("test").body,
            *after,
        ]
    )
    return subprocess.run(["bash", "-c", script], text=True, capture_output=True, timeout=120)


def test_a_warm_vm_asks_again_on_204_and_takes_the_runner_name_of_the_200(
    broker: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    server = broker([(204, {}), (204, {}), (200, {"runner_name": "jitr-linux-7-1", "jit_config": JIT})])
    result = _fetch(
        server.server_port,
        f'printf %s "$ACTIONS_RUNNER_INPUT_JITCONFIG" > {tmp_path / "config"}',
        f'printf %s "$JITR_RUNNER_NAME" > {tmp_path / "name"}',
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "config").read_text() == JIT and (tmp_path / "name").read_text() == "jitr-linux-7-1"
    assert [r["runner_name"] for r in server.requests] == [WARM_NAME] * 3
    assert "retrying" not in result.stderr  # a 204 is no failure


def test_a_retired_warm_vm_stops_asking(broker: Any) -> None:  # noqa: F811 - the fixture imported above
    server = broker([(204, {}), (410, {"error": "this warm VM left its pool"})])
    result = _fetch(server.server_port)
    assert result.returncode != 0 and "refused this VM (HTTP 410)" in result.stderr and len(server.requests) == 2
