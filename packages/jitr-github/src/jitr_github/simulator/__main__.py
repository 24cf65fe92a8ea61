"""Run the GitHub simulator as a process: ``python -m jitr_github.simulator --port 0 ...``.

Prints one JSON line with the API base URL, the App id and the path of the App's private key
file, then serves until interrupted (SIGINT or SIGTERM). Other processes drive it over
``<root>/_sim/...`` (see docs/simulator.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from .faults import Faults
from .github import GitHubSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jitr_github.simulator", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-prefix", default="", help="serve the API under a path, e.g. /api/v3 (GHES)")
    parser.add_argument("--webhook-url", help="where workflow_job deliveries go")
    parser.add_argument("--webhook-secret-file", type=Path, help="file holding the webhook secret")
    parser.add_argument("--key-file", type=Path, help="where to write the App private key (default: a temp file)")
    parser.add_argument("--faults", default="{}", help='fault settings as JSON, e.g. {"drop_webhook": 0.1}')
    args = parser.parse_args(argv)

    secret = args.webhook_secret_file.read_text().strip() if args.webhook_secret_file else None
    try:
        faults = Faults.from_dict(json.loads(args.faults))
    except (ValueError, TypeError) as exc:
        parser.error(f"--faults: {exc}")
    sim = GitHubSimulator(
        faults=faults, api_prefix=args.api_prefix, host=args.host, port=args.port,
        webhook_url=args.webhook_url, webhook_secret=secret,
    )  # fmt: skip
    key_file = args.key_file or Path(tempfile.mkdtemp(prefix="jitr-github-sim-")) / "app-private-key.pem"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(sim.private_key_pem)

    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    base_url = sim.start()
    info = {
        "base_url": base_url,
        "app_id": sim.app_id,
        "private_key_file": str(key_file),
        "admin_url": sim.root_url + "/_sim",
    }
    print(json.dumps(info), flush=True)
    try:
        done.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
