"""The embedded runtime behind ``jitr serve`` and ``jitr demo``: one process, every function.

An HTTP server takes webhooks, worker threads drain the jobs and lifecycle queues, and timers
run scaledown and rebalancer. Stopping is graceful: the server stops taking deliveries, each
worker finishes (and acknowledges) the message in hand, and anything not acknowledged stays in
the durable queue for the next start.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jitr_core.embedded import wait_for_messages
from jitr_core.errors import PassIncomplete, SettingsError
from jitr_core.services.consume import Disposition, consume
from jitr_core.settings import Settings

from .app import App
from .prometheus import PrometheusMetrics
from .webhook_server import HttpLimits, WebhookServer, webhook_app

log = logging.getLogger("jitr.serve")
PROMETHEUS_PLUGIN = "serve-prometheus"


def own_broker_url(host: str, port: int) -> str:
    """The broker URL of a runtime serving on ``host:port``, as the local VMs it launches reach it.

    Local VMs run on this machine, so a server listening on every address is reached on the
    loopback. Empty for port 0 (the address is not known before the server starts).
    """
    if not port:
        return ""
    reach = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)
    if ":" in reach and not reach.startswith("["):
        reach = f"[{reach}]"
    return f"http://{reach}:{port}/broker"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now: for a runtime whose broker URL must be in its settings before it starts."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


MAX_INTERVAL_S = 365 * 86400  # for any ``[serve]`` time: finite, and within what a thread may wait


@dataclass(frozen=True, slots=True)
class Intervals:
    """How often the periodic functions run, and how long a message in hand is hidden from others.

    ``jitr serve`` reads them from the ``[serve]`` settings (``JITR_SERVE_*``); short intervals
    make recovery from a crash quick (a dead claim, a lost VM), long ones cost fewer GitHub calls.
    """

    scaledown_s: float = 300.0
    rebalancer_s: float = 60.0
    visibility_timeout_s: int = 120
    idle_wait_s: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> Intervals:
        """The ``[serve]`` section, validated; errors name the variable or key the user typed."""
        section = settings.section("serve")
        known = {"scaledown_interval_s": 300.0, "rebalancer_interval_s": 60.0, "visibility_timeout_s": 120}
        for key in section:
            if key not in known and key not in HTTP_KEYS and key not in WORKER_KEYS:
                everything = sorted([*known, *HTTP_KEYS, *WORKER_KEYS])
                raise SettingsError(f"{settings.setting_name('serve', key)} is not a setting; known: {everything}")
        values: dict[str, float] = {}
        for key, default in known.items():
            raw = section.get(key, default)
            try:
                value = float(raw) if not isinstance(raw, bool) else float("nan")
            except (TypeError, ValueError):
                value = float("nan")
            if not 1 <= value <= MAX_INTERVAL_S:  # a thread's wait takes no more (threading.TIMEOUT_MAX)
                raise SettingsError(
                    f"{settings.setting_name('serve', key)} must be a number of seconds from 1 to {MAX_INTERVAL_S},"
                    f" found {raw!r}"
                )
            values[key] = value
        return cls(
            scaledown_s=values["scaledown_interval_s"],
            rebalancer_s=values["rebalancer_interval_s"],
            visibility_timeout_s=int(values["visibility_timeout_s"]),
        )


# ``[serve]`` keys of the webhook server's limits, by the :class:`HttpLimits` field each sets.
HTTP_KEYS = {
    "http_threads": ("threads", int),
    "http_connections": ("connections", int),
    "http_backlog": ("backlog", int),
    "http_request_timeout_s": ("request_timeout_s", float),
    "http_idle_timeout_s": ("idle_timeout_s", float),
    "http_max_header_bytes": ("max_header_bytes", int),
}


def http_limits(settings: Settings, **given: float | None) -> HttpLimits:
    """The webhook server's limits: ``[serve]`` ``http_*`` keys, overridden by ``given`` (the
    ``--http-*`` options, by field name; None means not given). Errors name the setting."""
    section = settings.section("serve")
    values: dict[str, Any] = {}
    for key, (field, kind) in HTTP_KEYS.items():
        raw = given.get(field)
        if raw is None and key not in section:
            continue
        raw = section[key] if raw is None else raw
        try:
            value = kind(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or not 0 < value <= MAX_INTERVAL_S or (kind is int and value != float(raw)):
            what = "a whole number >= 1" if kind is int else f"a number of seconds > 0, at most {MAX_INTERVAL_S}"
            raise SettingsError(f"{settings.setting_name('serve', key)} must be {what}, found {raw!r}")
        values[field] = value
    if "threads" not in values:
        # each warm VM's call to the broker holds a thread for up to warm_hold_s: more threads, so
        # webhooks never queue behind them
        warm = sum(max([p.warm, *(w.count for w in p.warm_windows)]) for p in settings.pools)
        values["threads"] = HttpLimits().threads + warm
    return HttpLimits(**values)


# ``[serve]`` keys of the worker threads per queue, by queue.
WORKER_KEYS = {"jobs_workers": "jobs", "lifecycle_workers": "lifecycle"}
RECEIVE_BATCH = 10  # messages a worker claims in one receive (one write transaction)
IDLE_SLEEP_S = 2.0  # how long an idle worker that is not watching its queue sleeps at most


def machine_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class Workers:
    """Worker threads per queue.

    Scale-up spends most of a launch waiting on GitHub and the cloud, so the ``jobs`` queue gets
    32 threads per CPU (at most 128): a burst of queued jobs is launched in parallel instead of
    waiting in the queue, and scale-up keeps its share of the process when webhooks pour in.
    Lifecycle messages are short store updates: 2 threads per CPU (at most 16). ``[serve]``
    ``jobs_workers`` and ``lifecycle_workers`` set them; ``--workers`` sets both.
    """

    jobs: int
    lifecycle: int

    @classmethod
    def for_machine(cls, cpus: int | None = None) -> Workers:
        cpus = cpus or machine_cpus()
        return cls(jobs=min(128, 32 * cpus), lifecycle=min(16, 2 * cpus))

    @classmethod
    def from_settings(cls, settings: Settings, given: int | None = None, cpus: int | None = None) -> Workers:
        """``[serve]`` ``*_workers`` over the machine's defaults; ``given`` (``--workers``) sets both.
        Errors name the setting."""
        if given is not None:
            if isinstance(given, bool) or not isinstance(given, int) or given < 1:
                raise SettingsError(f"--workers must be a whole number >= 1, found {given!r}")
            return cls(jobs=given, lifecycle=given)
        section = settings.section("serve")
        counts = {"jobs": 0, "lifecycle": 0}
        defaults = cls.for_machine(cpus)
        for key, queue in WORKER_KEYS.items():
            raw = section.get(key)
            if raw is None:
                counts[queue] = getattr(defaults, queue)
                continue
            try:
                value = int(raw) if not isinstance(raw, bool) and float(raw) == int(float(raw)) else 0
            except (TypeError, ValueError, OverflowError):
                value = 0
            if not 1 <= value <= 1024:
                raise SettingsError(
                    f"{settings.setting_name('serve', key)} must be a whole number from 1 to 1024, found {raw!r}"
                )
            counts[queue] = value
        return cls(jobs=counts["jobs"], lifecycle=counts["lifecycle"])

    def of(self, queue: str) -> int:
        return self.jobs if queue == "jobs" else self.lifecycle


def serve_metrics(app: App) -> PrometheusMetrics:
    """``app``'s Prometheus plugin (registered once per app), fed each sample as it is recorded."""
    plugin = app.pm.get_plugin(PROMETHEUS_PLUGIN)
    if not isinstance(plugin, PrometheusMetrics):
        plugin = PrometheusMetrics()
        app.pm.register(plugin, PROMETHEUS_PLUGIN)
    app.backend.metrics.immediate = True  # a long-running process: no invocation end to wait for
    return plugin


class LocalRuntime:
    """Runs the control plane in this process until :meth:`stop`."""

    def __init__(
        self,
        app: App,
        host: str = "127.0.0.1",
        port: int = 8080,
        workers: int | Workers | None = None,
        intervals: Intervals | None = None,
        http: HttpLimits | None = None,
    ) -> None:
        self.app = app
        self.intervals = intervals or Intervals.from_settings(app.settings)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        limits = http or http_limits(app.settings)
        self.metrics = serve_metrics(app)
        self._server = WebhookServer(webhook_app(app, self.metrics), host, port, app.settings.max_body_bytes, limits)
        if workers is None:
            workers = Workers.from_settings(app.settings)
        self.workers = workers if isinstance(workers, Workers) else Workers(jobs=workers, lifecycle=workers)
        self.processed = {"jobs": 0, "lifecycle": 0}
        self._count_lock = threading.Lock()
        # one idle worker per queue watches it; the others sleep until it sees a message
        self._watching = {queue: threading.Lock() for queue in WORKER_KEYS.values()}
        self._seen = {queue: threading.Condition() for queue in WORKER_KEYS.values()}

    @property
    def url(self) -> str:
        host, port = self._server.address
        return f"http://{host}:{port}"

    def start(self) -> LocalRuntime:
        self._spawn("http", self._server.serve_forever)
        handlers = (("jobs", lambda: self.app.scaleup.handle), ("lifecycle", lambda: self.app.lifecycle.handle))
        for queue, handle in handlers:
            for i in range(self.workers.of(queue)):
                self._spawn(f"{queue}-{i}", self._worker, queue, handle)
        self._spawn("scaledown", self._every, "scaledown", self.intervals.scaledown_s, lambda: self.app.scaledown.run())
        self._spawn(
            "rebalancer", self._every, "rebalancer", self.intervals.rebalancer_s, lambda: self.app.rebalancer.run()
        )
        log.info(
            "serving",
            extra={"url": self.url, "jobs_workers": self.workers.jobs, "lifecycle_workers": self.workers.lifecycle},
        )
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking deliveries, let each worker finish its message, wait at most ``timeout_s`` in all."""
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        for seen in self._seen.values():
            with seen:
                seen.notify_all()
        self._server.shutdown(min(5.0, timeout_s))
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        log.info("stopped")

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, target: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"jitr-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _worker(self, queue: str, handler: Callable[[], Callable[[str], str]]) -> None:
        backend = self.app.backend
        while not self._stop.is_set():
            try:
                messages = backend.receive(queue, RECEIVE_BATCH, self.intervals.visibility_timeout_s)
            except Exception:
                log.exception("receive failed", extra={"queue": queue})
                self._stop.wait(1.0)
                continue
            if not messages:
                self._idle(queue)
                continue
            for message in messages:
                outcome = consume(backend, queue, message.body, handler(), message.attributes, message.last_try)
                if outcome.disposition is Disposition.DONE:
                    backend.ack(queue, message.receipt)
                with self._count_lock:
                    self.processed[queue] += 1

    def _idle(self, queue: str) -> None:
        """Wait for ``queue`` to have a message. One idle worker watches the queue (polling it);
        the others sleep until it sees one, so a hundred idle workers cost no more than one."""
        watching, seen = self._watching[queue], self._seen[queue]
        with seen:
            if not watching.acquire(blocking=False):
                # the watcher may leave to handle what it saw: wake now and then to take its place
                seen.wait(IDLE_SLEEP_S)
                return
        found = False
        try:
            found = wait_for_messages(queue, self.intervals.idle_wait_s, self.app.settings)
        finally:
            with seen:
                watching.release()
                if found or self._stop.is_set():
                    seen.notify_all()

    def _every(self, function: str, interval_s: float, run: Callable[[], object]) -> None:
        while not self._stop.wait(interval_s):
            try:
                report = run()
                log.info("periodic run", extra={"report": report})
            except PassIncomplete as incomplete:  # each failed step has its line and reason already
                log.error("periodic run incomplete", extra={"report": incomplete.report})
                self.app.backend.metrics.record("function_errors", function=function)
            except Exception:
                log.exception("periodic run failed")
                self.app.backend.metrics.record("function_errors", function=function)
