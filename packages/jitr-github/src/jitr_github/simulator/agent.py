"""A stand-in for ``run.sh --jitconfig``: a runner agent that talks to the GitHub simulator.

``python -m jitr_github.simulator.agent --jitconfig X`` comes online with the JIT config (or
``ACTIONS_RUNNER_INPUT_JITCONFIG``, as the real runner accepts), waits for whatever job GitHub
assigns it, "runs" it for ``--job-seconds``, reports it finished, deregisters and exits. The
simulator's URL comes from the config's ``.runner`` ``serverUrl`` unless ``--url`` is given.

Exit codes: 0 after running a job; 1 when it could not start (bad config, unknown or used
config, simulator unreachable); 2 when no job came (the registration was removed, or
``--wait-seconds`` passed). Only the standard library is used, so it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from .jitconfig import RUNNER_FILE, decode_jit_config, runner_credential

POLL_S = 10.0
HEARTBEAT_S = 5.0


class AgentError(Exception):
    """The simulator refused or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Agent:
    """The agent protocol over HTTP; one instance per runner."""

    def __init__(self, url: str, encoded_jit_config: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the simulator URL must be http(s), got {url!r}")
        self._url = url.rstrip("/") + "/_sim/agent"
        self._config = encoded_jit_config
        self._credential = runner_credential(encoded_jit_config)
        self.runner_id = 0
        self.runner_name = ""

    def connect(self) -> None:
        answer = self._call("POST", "/connect", {"jitconfig": self._config}, auth=False)
        self.runner_id, self.runner_name = answer["runner_id"], answer["runner_name"]

    def poll(self, wait: float) -> dict[str, Any] | None:
        job: dict[str, Any] | None = self._call(
            "GET", f"/runners/{self.runner_id}/job?wait={wait:g}", timeout=wait + 10
        )
        return job

    def finish(self, conclusion: str) -> None:
        self._call("POST", f"/runners/{self.runner_id}/finish", {"conclusion": conclusion})

    def leave(self) -> None:
        self._call("POST", f"/runners/{self.runner_id}/leave", {})

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, auth: bool = True, timeout: float = 15.0
    ) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._credential}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._url + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked above
                raw = response.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", exc.reason)
            except ValueError:
                message = exc.reason
            raise AgentError(f"{method} {path.split('?')[0]} answered {exc.code}: {message}", exc.code) from None
        except OSError as exc:
            raise AgentError(f"cannot reach the simulator at {self._url}: {exc}") from None


def run(agent: Agent, job_seconds: float, conclusion: str, wait_seconds: float | None) -> int:
    """Connect, take one job, run it, finish, leave; the exit code."""
    agent.connect()
    print(f"Connected to GitHub as runner {agent.runner_name} (id {agent.runner_id})", flush=True)
    print("Listening for Jobs", flush=True)
    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    job = None
    try:
        while job is None:
            wait = POLL_S if deadline is None else min(POLL_S, max(0.0, deadline - time.monotonic()))
            job = agent.poll(wait)
            if job is None and deadline is not None and time.monotonic() >= deadline:
                print("No job assigned in time; leaving", flush=True)
                agent.leave()
                return 2
    except AgentError as exc:
        if exc.status == 404:
            print("The runner registration was removed; exiting", flush=True)
            return 2
        raise
    print(f"Running job: {job['name']} (job id {job['id']}, {job['repository']})", flush=True)
    finish_at = time.monotonic() + job_seconds
    while job["status"] == "in_progress" and (left := finish_at - time.monotonic()) > 0:
        time.sleep(min(HEARTBEAT_S, left))
        job = agent.poll(0) or job
    if job["status"] == "in_progress":
        agent.finish(conclusion)
        print(f"Job {job['name']} completed with result: {conclusion}", flush=True)
    else:
        print(f"Job {job['name']} ended while running: {job['conclusion']}", flush=True)
    agent.leave()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jitr_github.simulator.agent", description=__doc__.split("\n")[0])
    parser.add_argument("--jitconfig", default=os.environ.get("ACTIONS_RUNNER_INPUT_JITCONFIG"))
    parser.add_argument("--url", help="simulator root URL (default: serverUrl in the JIT config)")
    parser.add_argument("--job-seconds", type=float, default=0.0, help="how long the job runs")
    parser.add_argument("--conclusion", default="success", choices=["success", "failure", "cancelled", "skipped"])
    parser.add_argument("--wait-seconds", type=float, default=None, help="give up when no job came (default: wait)")
    args = parser.parse_args(argv)
    if not args.jitconfig:
        parser.error("a JIT config is required: --jitconfig or ACTIONS_RUNNER_INPUT_JITCONFIG")
    try:
        url = args.url or decode_jit_config(args.jitconfig)[RUNNER_FILE]["serverUrl"]
        agent = Agent(url, args.jitconfig)
    except (ValueError, KeyError) as exc:
        print(f"error: the JIT config cannot be used: {exc}", file=sys.stderr)
        return 1
    try:
        return run(agent, args.job_seconds, args.conclusion, args.wait_seconds)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
