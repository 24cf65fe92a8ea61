"""Webhook deliveries of the simulated App: signed, sent from background workers, recorded.

``send`` only enqueues, so the caller (a job changing state) never waits for the receiver.
Deliveries of one job go through one worker in order; different jobs go out in parallel over a
bounded set of workers. Every attempt is recorded the way GitHub lists it under
``/app/hook/deliveries``; a failed one can be redelivered with the same GUID.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .faults import FaultDice, Faults

log = logging.getLogger(__name__)

USER_AGENT = "GitHub-Hookshot/8c2f4b1"
TIMEOUT_S = 10.0  # GitHub gives up on a receiver after 10 seconds


@dataclass(frozen=True, slots=True)
class Delivery:
    """One recorded delivery attempt, as ``/app/hook/deliveries`` lists it plus what was sent."""

    id: int
    guid: str
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    job_id: int | None
    delivered_at: float
    redelivery: bool
    duration: float
    status: str
    status_code: int
    body: bytes = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def payload(self) -> Any:
        return json.loads(self.body)


class _Body:
    """The bytes of one event, serialised once by the worker that sends it first."""

    __slots__ = ("_build", "_bytes")

    def __init__(self, build: Callable[[], Mapping[str, Any]] | None = None, data: bytes | None = None) -> None:
        self._build = build
        self._bytes = data

    def __call__(self) -> bytes:
        if self._bytes is None:
            assert self._build is not None
            self._bytes = json.dumps(self._build(), separators=(",", ":")).encode()
            self._build = None
        return self._bytes


@dataclass(slots=True)
class _Outgoing:
    guid: str
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    job_id: int | None
    body: _Body
    redelivery: bool = False
    dropped: bool = False


class WebhookSender:
    """Delivers events to one webhook URL with one secret; thread-safe."""

    def __init__(
        self, clock: Callable[[], float], app_id: int, hook_id: int, workers: int = 8, keep: int = 20000
    ) -> None:
        self._clock = clock
        self._app_id = app_id
        self._hook_id = hook_id
        self._url: str | None = None
        self._secret: bytes | None = None
        self._dice = FaultDice(Faults())
        self._lock = threading.Lock()
        self._due: list[tuple[float, int, _Outgoing]] = []
        self._due_ready = threading.Condition(self._lock)
        self._seq = itertools.count()
        self._ids = itertools.count(90000001)
        self._records: OrderedDict[int, Delivery] = OrderedDict()
        self._keep = keep
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._queues: list[queue.SimpleQueue[_Outgoing | None]] = [queue.SimpleQueue() for _ in range(workers)]
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def configure(self, url: str | None, secret: str | None) -> None:
        with self._lock:
            self._url = url
            self._secret = secret.encode() if secret else None

    @property
    def faults(self) -> Faults:
        return self._dice.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._dice = FaultDice(faults)

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._dispatch, name="sim-webhook-dispatch", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, args=(q,), name=f"sim-webhook-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._due_ready.notify_all()
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join(timeout=TIMEOUT_S + 1)

    # -- sending ----------------------------------------------------------------------------

    def send(
        self,
        event: str,
        action: str | None,
        build: Callable[[], Mapping[str, Any]],
        *,
        installation_id: int | None,
        repository_id: int | None,
        job_id: int | None,
    ) -> None:
        """Enqueue one event; nothing happens while no webhook URL is configured (as on GitHub)."""
        with self._lock:
            if self._url is None or self._stopping:
                return
            guid = str(uuid.uuid4())  # unique across runs and fault changes, like GitHub's
            body = _Body(build)
            for _ in range(2 if self._dice.hit("duplicate_webhook") else 1):
                self._schedule(_Outgoing(guid, event, action, installation_id, repository_id, job_id, body))

    def redeliver(self, delivery_id: int) -> bool:
        """Send a recorded delivery again with the same GUID and bytes; False when it is unknown."""
        with self._lock:
            original = self._records.get(delivery_id)
            if original is None or self._stopping:
                return False
            item = _Outgoing(
                original.guid,
                original.event,
                original.action,
                original.installation_id,
                original.repository_id,
                original.job_id,
                _Body(data=original.body),
                redelivery=True,
            )
            self._schedule(item)
            return True

    def _schedule(self, item: _Outgoing) -> None:
        faults = self._dice.faults
        item.dropped = self._dice.hit("drop_webhook")
        delay = faults.delay_webhook_s + (faults.reorder_hold_s if self._dice.hit("reorder") else 0.0)
        self._pending += 1
        heapq.heappush(self._due, (time.monotonic() + delay, next(self._seq), item))
        self._due_ready.notify()

    def _dispatch(self) -> None:
        with self._lock:
            while not self._stopping:
                if not self._due:
                    self._due_ready.wait()
                    continue
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._due_ready.wait(wait)
                    continue
                item = heapq.heappop(self._due)[2]
                self._queues[(item.job_id or 0) % len(self._queues)].put(item)

    def _work(self, inbox: queue.SimpleQueue[_Outgoing | None]) -> None:
        connection = _Connection()
        while (item := inbox.get()) is not None:
            try:
                self._deliver(connection, item)
            except Exception:  # a broken payload builder must not kill the worker
                log.exception("webhook delivery failed", extra={"guid": item.guid})
                self._finish()
        connection.close()

    def _deliver(self, connection: _Connection, item: _Outgoing) -> None:
        body = item.body()
        with self._lock:
            url, secret = self._url, self._secret
        headers = {
            "Accept": "*/*",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Delivery": item.guid,
            "X-GitHub-Event": item.event,
            "X-GitHub-Hook-ID": str(self._hook_id),
            "X-GitHub-Hook-Installation-Target-ID": str(self._app_id),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
        }
        if secret is not None:
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest()
            headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        started = time.monotonic()
        delivered_at = self._clock()
        if item.dropped or url is None:
            status_code, status = 0, "failed to connect to host"
        else:
            try:
                status_code = connection.post(url, body, headers)
                status = "OK" if 200 <= status_code < 300 else f"Invalid HTTP Response: {status_code}"
            except TimeoutError:
                status_code, status = 0, "timed out"
            except (OSError, http.client.HTTPException):
                status_code, status = 0, "failed to connect to host"
        record = Delivery(
            id=next(self._ids),
            guid=item.guid,
            event=item.event,
            action=item.action,
            installation_id=item.installation_id,
            repository_id=item.repository_id,
            job_id=item.job_id,
            delivered_at=delivered_at,
            redelivery=item.redelivery,
            duration=round(time.monotonic() - started, 3),
            status=status,
            status_code=status_code,
            body=body,
            headers=headers,
        )
        with self._lock:
            self._records[record.id] = record
            while len(self._records) > self._keep:
                self._records.popitem(last=False)
        self._finish()

    def _finish(self) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    # -- records ----------------------------------------------------------------------------

    def deliveries(self) -> list[Delivery]:
        """Recorded deliveries, newest (highest id) first, the order GitHub lists them in.

        Sorted by id, not by when a worker recorded them: parallel workers finish out of order,
        and the id cursor of the deliveries list must page through them without gaps.
        """
        with self._lock:
            return sorted(self._records.values(), key=lambda d: d.id, reverse=True)

    def drain(self, timeout: float) -> bool:
        """Wait until every enqueued delivery was attempted; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)


class _Connection:
    """One worker's keep-alive connection to the receiver (lighter than a full HTTP client)."""

    def __init__(self) -> None:
        self._target: tuple[str, str] | None = None
        self._http: http.client.HTTPConnection | None = None

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reused = self._http is not None and self._target == (parts.scheme, parts.netloc)
        if not reused:
            self._open(parts.scheme, parts.netloc)
        assert self._http is not None
        try:
            return self._send(path, body, headers)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if not reused:
                raise
            self._open(parts.scheme, parts.netloc)  # the receiver closed an idle connection: once more
            return self._send(path, body, headers)

    def _send(self, path: str, body: bytes, headers: Mapping[str, str]) -> int:
        assert self._http is not None
        try:
            self._http.request("POST", path, body, dict(headers))
            response = self._http.getresponse()
            response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status

    def _open(self, scheme: str, netloc: str) -> None:
        self.close()
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        self._http = kind(netloc, timeout=TIMEOUT_S)
        self._target = (scheme, netloc)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = None
