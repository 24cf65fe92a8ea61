"""The HTTP server of ``jitr serve``: a WSGI app for the webhook and health endpoints, served by waitress.

waitress reads each request whole on one event-loop thread (headers, then a ``Content-Length`` or
chunked body) before a bounded pool of worker threads runs the app, so a slow or stalled client
holds a socket, never a worker. On top of waitress's own limits this module adds a deadline for a
whole request to arrive, answers errors found while reading as JSON like the app's own, sends
waitress's log lines through jitr's, and stops gracefully: no new connections, the requests
already received are answered, then every connection is closed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from jitr_core.errors import JitrError
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from .prometheus import CONTENT_TYPE

if TYPE_CHECKING:
    from .app import App
    from .prometheus import PrometheusMetrics

log = logging.getLogger("jitr.serve.http")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Limits of the webhook server; ``jitr serve`` sets them from ``[serve]`` ``http_*`` and ``--http-*``."""

    threads: int = 4
    """worker threads running the app; requests beyond them wait, already read, in a queue"""
    connections: int = 1000
    """open connections at most; beyond them new ones wait in the listen backlog"""
    backlog: int = 1024
    """connections the kernel queues before they are accepted (capped by ``net.core.somaxconn``)"""
    request_timeout_s: float = 15.0
    """time for a whole request (headers and body) to arrive once its first byte has"""
    idle_timeout_s: float = 30.0
    """a connection with nothing received or sent for this long, and no request in hand, is closed"""
    max_header_bytes: int = 65536
    """request line and headers at most; larger ones are answered 431"""

    def __post_init__(self) -> None:
        for name in ("threads", "connections", "backlog", "max_header_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, found {getattr(self, name)}")
        for name in ("request_timeout_s", "idle_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0, found {getattr(self, name)}")


def _answer(
    start_response: Callable[..., Any], status: int, body: Mapping[str, object], extra: Mapping[str, str] | None = None
) -> list[bytes]:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(extra or {}).items()]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [data]


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def webhook_app(app: App, metrics: PrometheusMetrics | None = None) -> WsgiApp:
    """``POST /webhook`` to the webhook service, ``POST /broker`` to the broker; ``GET /healthz`` (or
    ``/``); ``GET /metrics`` when ``metrics`` is given; 404 for anything else."""
    limit = app.settings.max_body_bytes

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "").rstrip("/")
        if method == "POST" and path == "/webhook":
            length = int(environ.get("CONTENT_LENGTH") or 0)  # validated by the server, de-chunked included
            if length > limit:
                return _answer(start_response, 413, {"error": f"body exceeds {limit} bytes"})
            body = environ["wsgi.input"].read(length)
            headers = _headers(environ)
            try:
                response = app.webhook.handle(headers, body)
            except Exception:
                log.exception("webhook delivery failed")
                return _answer(start_response, 500, {"error": "internal error; the delivery was not taken"})
            if metrics is not None:
                metrics.count_delivery(headers, response.status, response.body)
            return _answer(start_response, response.status, dict(response.body))
        if method == "POST" and path == "/broker":
            return _broker(app, environ, start_response)
        if method in ("GET", "HEAD") and path in ("/healthz", ""):
            return _answer(start_response, 200, {"status": "ok"})
        if method in ("GET", "HEAD") and path == "/metrics" and metrics is not None:
            app.record_rate_limit()
            data = metrics.render()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(data)))])
            return [data]
        if method == "POST":
            return _answer(start_response, 404, {"error": "not found; deliveries are taken at /webhook"})
        return _answer(start_response, 404, {"error": "not found"})

    return application


def _broker(app: App, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A VM asking for its JIT config; an error of jitr's own is a 500 the VM retries."""
    from jitr_core.services.broker import MAX_REQUEST_BYTES

    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_REQUEST_BYTES:
        return _answer(start_response, 413, {"error": f"the request exceeds {MAX_REQUEST_BYTES} bytes"})
    body = environ["wsgi.input"].read(length)
    try:
        answer = app.broker.handle(body)
    except Exception:
        log.exception("broker request failed")
        return _answer(start_response, 500, {"error": "internal error; retry"})
    if answer.status == 204:  # a warm VM's poll with no job yet: no body
        start_response("204 No Content", [("Content-Length", "0")])
        return []
    return _answer(start_response, answer.status, answer.body, answer.headers)


class _JsonErrorTask(ErrorTask):
    """A request the server refused while reading it (bad framing, too large): a JSON answer, then close."""

    def execute(self) -> None:
        error = self.request.error
        if isinstance(error, RequestEntityTooLarge):
            message = f"body exceeds {self.channel.server.adj.max_request_body_size - 1} bytes"
        else:
            message = f"{error.reason}: {error.body}"
        data = json.dumps({"error": message}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(data)
        self.write(data)


class _Channel(HTTPChannel):
    """A connection that remembers when the request it is reading began."""

    error_task_class = _JsonErrorTask
    request_started: float | None = None

    def received(self, data: bytes) -> bool:
        started = self.request_started if self.request is not None else time.time()
        result: bool = super().received(data)
        self.request_started = started if self.request is not None else None
        return result


class _Server(TcpWSGIServer):
    channel_class = _Channel

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        cutoff = now - self.request_timeout_s
        for channel in list(self.active_channels.values()):
            started = getattr(channel, "request_started", None)
            if started is not None and started < cutoff and not channel.requests:
                channel.will_close = True


class _ToJitrLog(logging.Handler):
    """waitress's records, re-emitted by jitr's logger as JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= log.getEffectiveLevel():
            log.handle(record)


def _route_waitress_logs() -> None:
    waitress = logging.getLogger("waitress")
    if not any(isinstance(h, _ToJitrLog) for h in waitress.handlers):
        waitress.addHandler(_ToJitrLog())
    waitress.propagate = False
    waitress.setLevel(logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" on every burst


class WebhookServer:
    """A waitress server on ``host:port`` (0: any free port) run by :meth:`serve_forever` until :meth:`shutdown`."""

    def __init__(
        self, application: WsgiApp, host: str, port: int, max_body_bytes: int, limits: HttpLimits = HttpLimits()
    ) -> None:
        _route_waitress_logs()
        self.limits = limits
        self._map: dict[int, Any] = {}
        try:
            self._server = self._bind(application, host, port, max_body_bytes, limits)
        except (OSError, ValueError) as exc:  # in use, not permitted, no such address
            raise JitrError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
        self._server.request_timeout_s = limits.request_timeout_s
        self._lock = threading.Lock()
        self._serving = False
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._drain_s = 5.0

    def _bind(self, application: WsgiApp, host: str, port: int, max_body_bytes: int, limits: HttpLimits) -> _Server:
        adj = Adjustments(
            host=host,
            port=port,
            ident="jitr",
            threads=limits.threads,
            connection_limit=limits.connections,
            backlog=limits.backlog,
            channel_timeout=limits.idle_timeout_s,
            cleanup_interval=max(0.1, min(1.0, limits.request_timeout_s / 4, limits.idle_timeout_s / 4)),
            max_request_header_size=limits.max_header_bytes,
            max_request_body_size=max_body_bytes + 1,  # waitress refuses a body of this size or more
            asyncore_use_poll=True,  # select() cannot watch more than 1024 sockets
            log_socket_errors=False,  # a client gone mid-answer is not the server's error
        )
        return _Server(application, map=self._map, adj=adj, sockinfo=adj.listen[0])

    @property
    def address(self) -> tuple[str, int]:
        return str(self._server.effective_host), int(self._server.effective_port)

    def serve_forever(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._serving = True
        try:
            while not self._stopping.is_set():
                try:
                    wasyncore.loop(timeout=1.0, use_poll=True, map=self._map, count=1)
                except Exception:
                    log.exception("HTTP server loop failed; it goes on")
                    time.sleep(0.1)
            self._drain()
        finally:
            self._stopped.set()

    def _drain(self) -> None:
        """Close the listening socket, answer the requests already read, then close every connection."""
        wasyncore.dispatcher.close(self._server)  # the listening socket only; the trigger stays
        dispatcher = self._server.task_dispatcher
        deadline = time.monotonic() + self._drain_s

        def busy() -> bool:
            channels = list(self._server.active_channels.values())
            return bool(dispatcher.queue) or any(c.requests or c.total_outbufs_len for c in channels)

        while busy() and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.05, use_poll=True, map=self._map, count=1)
        dispatcher.shutdown(cancel_pending=True, timeout=max(0.1, deadline - time.monotonic()))
        wasyncore.close_all(self._map)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop taking connections; wait at most ``timeout_s`` for the requests in hand to be answered."""
        with self._lock:
            again = self._stopping.is_set()
            if not again:
                self._drain_s = max(0.1, timeout_s)
            self._stopping.set()
            serving = self._serving
        if again:
            self._stopped.wait(timeout_s + 1.0)
            return
        if not serving:
            self._drain_s = 0.0
            try:
                self._drain()
            finally:
                self._stopped.set()
            return
        try:
            self._server.pull_trigger()
        except OSError:
            log.warning("could not wake the HTTP server loop; it stops at its next tick", exc_info=True)
        self._stopped.wait(timeout_s + 1.0)
