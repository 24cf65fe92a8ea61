"""Load on ``jitr serve``'s HTTP server: many new connections at once, with slow clients beside them.

``jitr serve`` runs as a child process on the loopback interface with the embedded backend and no
queue workers, so every accepted delivery stays in the ``jobs`` queue where it can be counted.
The load: ``--connections`` clients at once, each opening a new connection per delivery (as
GitHub does), ``--deliveries`` signed ``workflow_job`` deliveries in all, while ``--slow`` clients
each announce a body of ``Content-Length: 1000000`` and send one byte of it. Reported: resets
and other failed deliveries, deliveries answered 202 against messages found in the queue,
latency percentiles, when the server closed the slow clients, and the server's memory and
threads before, at the peak of and after the load.

Run alone (``python benchmarks/serve_load.py``) or as ``serve_load`` in ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PAYLOAD = json.loads((HERE / "queued.payload.json").read_bytes())
SECRET = "bench-webhook-secret"  # noqa: S105 - a benchmark fixture, not a credential
LABELS = ["self-hosted", "linux", "x64"]
CONFIG = """
log_level = "ERROR"
[github]
app_id = "1"
api_url = "http://127.0.0.1:9"
[secrets]
webhook_secret = "file:{secret}"
[embedded]
state_dir = "{state}"
[[pools]]
name = "linux"
labels = ["self-hosted", "linux", "x64"]
machine_types = ["local"]
"""


def delivery(job_id: int) -> bytes:
    """A signed ``workflow_job`` ``queued`` request for job ``job_id``, as raw HTTP/1.1."""
    data = json.loads(json.dumps(PAYLOAD))
    data["workflow_job"].update(id=job_id, labels=LABELS)
    data["repository"]["private"] = True
    body = json.dumps(data).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        "POST /webhook HTTP/1.1\r\nHost: jitr\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: workflow_job\r\nX-GitHub-Delivery: d-{job_id}\r\n"
        f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def proc_status(pid: int) -> dict[str, int]:
    """The server's resident memory (KiB), threads and open file descriptors."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return {"rss_kib": fields["VmRSS"], "threads": fields["Threads"], "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Server:
    """``jitr serve`` in a child process on a free loopback port."""

    def __init__(self, state: Path, extra_args: list[str]) -> None:
        (state / "secret").write_text(SECRET)
        config = state / "jitr.toml"
        config.write_text(CONFIG.format(secret=state / "secret", state=state / "db"))
        from jitr_functions.local import free_port

        self.port = free_port()
        self.db = state / "db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("JITR_")}
        args = ["serve", "--config", str(config), "--port", str(self.port), "--workers", "0", *extra_args]
        self.log = (state / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jitr_functions", *args], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("jitr serve did not start") from None
                time.sleep(0.1)

    def queued_job_ids(self) -> set[int]:
        """Job ids of the messages in the embedded queue (read-only, beside the running server)."""
        db = sqlite3.connect(f"file:{self.db / 'jitr.sqlite3'}?mode=ro", uri=True, timeout=30)
        try:
            return {json.loads(body)["job_id"] for (body,) in db.execute("SELECT body FROM messages")}
        finally:
            db.close()

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(60)
        finally:
            self.log.close()


async def deliver(port: int, request: bytes, timeout_s: float) -> tuple[str, float]:
    """One delivery on a new connection: (outcome, seconds). Outcome: the status code, or why none came."""
    started = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                return "closed", time.monotonic() - started
            await reader.read()  # Connection: close, so the answer ends with the connection
            return status_line.split()[1].decode(), time.monotonic() - started
    except (ConnectionResetError, BrokenPipeError):
        return "reset", time.monotonic() - started
    except ConnectionRefusedError:
        return "refused", time.monotonic() - started
    except TimeoutError:
        return "timeout", time.monotonic() - started
    finally:
        if writer is not None:
            writer.close()


async def slow_client(port: int, hold_s: float) -> float | None:
    """Announce a 1,000,000-byte body, send one byte; seconds until the server closed it (None: it did not)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(
        b"POST /webhook HTTP/1.1\r\nHost: jitr\r\nContent-Type: application/json\r\n"
        b"X-GitHub-Event: workflow_job\r\nContent-Length: 1000000\r\n\r\n{"
    )
    try:
        await writer.drain()
        async with asyncio.timeout(hold_s):
            while await reader.read(65536):
                pass
        return time.monotonic() - started
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - started
    except TimeoutError:
        return None
    finally:
        writer.close()


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000, 1) if ordered else 0.0


async def load(
    port: int, connections: int, deliveries: int, slow: int, hold_s: float, timeout_s: float, first_job: int = 1
) -> Any:
    slow_tasks = [asyncio.create_task(slow_client(port, hold_s)) for _ in range(slow)]
    if slow:
        await asyncio.sleep(0.5)  # the slow clients are connected before the deliveries start
    jobs = iter(range(first_job, first_job + deliveries))
    results: list[tuple[int, str, float]] = []

    async def client() -> None:
        for job_id in jobs:
            outcome, seconds = await deliver(port, delivery(job_id), timeout_s)
            results.append((job_id, outcome, seconds))

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.monotonic() - started
    return results, elapsed, await asyncio.gather(*slow_tasks)


def run(
    connections: int = 100,
    deliveries: int = 3000,
    slow: int = 300,
    hold_s: float = 60.0,
    timeout_s: float = 30.0,
    serve_args: list[str] | None = None,
    rounds: int = 2,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jitr-serve-load-") as tmp:
        server = Server(Path(tmp), serve_args or [])
        try:
            warm = asyncio.run(load(server.port, 10, 200, 0, 0, timeout_s))[0]
            time.sleep(1.0)
            baseline = proc_status(server.proc.pid)
            peak = dict(baseline)
            sampling = True

            def sample() -> None:
                while sampling:
                    now = proc_status(server.proc.pid)
                    for key, value in now.items():
                        peak[key] = max(peak[key], value)
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            results, closed, elapsed, after = [], [], 0.0, []
            for round_ in range(rounds):  # the same load again: memory must not grow round after round
                answered, seconds, cut = asyncio.run(
                    load(server.port, connections, deliveries, slow, hold_s, timeout_s, 1_000_000 * (round_ + 1))
                )
                results += answered
                closed += cut
                elapsed += seconds
                time.sleep(2.0)
                after.append(proc_status(server.proc.pid))
            sampling = False
            sampler.join()
            queued = server.queued_job_ids()
        finally:
            code = server.stop()
    outcomes: dict[str, int] = {}
    for _, outcome, _ in results:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    accepted = {job_id for job_id, outcome, _ in results if outcome == "202"}
    warm_ids = {job_id for job_id, outcome, _ in warm if outcome == "202"}
    latencies = [seconds for _, outcome, seconds in results if outcome == "202"]
    closed_after = [s for s in closed if s is not None]
    return {
        "connections": connections,
        "deliveries": deliveries * rounds,
        "rounds": rounds,
        "slow_clients": slow * rounds,
        "outcomes": outcomes,
        "resets": outcomes.get("reset", 0) + outcomes.get("closed", 0),
        "accepted": len(accepted),
        "accepted_not_queued": len(accepted - (queued - warm_ids)),
        "deliveries_per_s": round(len(results) / elapsed, 1),
        "latency_ms": {
            "p50": percentile(latencies, 0.50),
            "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99),
            "max": percentile(latencies, 1.0),
        },
        "slow_clients_closed_by_server": len(closed_after),
        "slow_clients_closed_after_s": round(max(closed_after), 1) if closed_after else None,
        "server": {"baseline": baseline, "peak": peak, "after_each_round": after},
        "rss_after_minus_baseline_kib": [each["rss_kib"] - baseline["rss_kib"] for each in after],
        "serve_exit_status": code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--hold", type=float, default=60.0, help="seconds a slow client waits for the server")
    parser.add_argument("--rounds", type=int, default=2, help="times the load is run on the same server")
    parser.add_argument("serve_args", nargs="*", help="more arguments for jitr serve (after --)")
    args = parser.parse_args()
    report = run(
        args.connections, args.deliveries, args.slow, args.hold, serve_args=args.serve_args, rounds=args.rounds
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
