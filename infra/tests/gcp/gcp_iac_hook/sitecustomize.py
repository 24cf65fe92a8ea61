"""Records every Google API call a function process makes, at the transport level.

Put on ``PYTHONPATH`` with ``GCP_IAC_CALL_LOG`` naming a file: gRPC channels to the emulators get a
client interceptor that writes each call's method (and the request fields that decide its IAM
permission), and HTTP requests to the Compute or Secret Manager endpoint are written with method,
path and body. jitr's own code is not touched. One JSON object per line.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

_LOG = os.environ.get("GCP_IAC_CALL_LOG", "")
_REST = tuple(
    url.rstrip("/")
    for url in (os.environ.get("JITR_GCP_COMPUTE_ENDPOINT", ""), os.environ.get("JITR_GCP_SECRETMANAGER_ENDPOINT", ""))
    if url
)
_lock = threading.Lock()


def _write(entry: dict[str, Any]) -> None:
    with _lock, open(_LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def _pb(message: Any) -> Any:
    """The protobuf message behind a proto-plus one (GAPIC clients pass proto-plus requests)."""
    pb = getattr(type(message), "pb", None)
    return pb(message) if callable(pb) else message


def _describe(method: str, request: Any) -> dict[str, Any]:
    pb = _pb(request)
    if method.endswith("/Publish"):
        return {"topic": pb.topic}
    if method.endswith("/Commit"):
        writes = []
        for write in pb.writes:
            condition = "none"
            if write.HasField("current_document"):
                kind = write.current_document.WhichOneof("condition_type")
                condition = f"exists={str(write.current_document.exists).lower()}" if kind == "exists" else str(kind)
            writes.append(f"{write.WhichOneof('operation')}/{condition}")
        return {"database": pb.database, "writes": writes}
    if method.endswith("/BatchGetDocuments"):
        return {"database": pb.database}
    if method.endswith("/RunQuery"):
        return {"parent": pb.parent}
    return {}


def _install() -> None:
    import grpc

    def record(details: Any, request: Any) -> None:
        entry = {"transport": "grpc", "method": details.method}
        try:
            entry.update(_describe(details.method, request))
        except Exception as exc:  # a request shape this hook does not know: recorded as such
            entry["describe_error"] = repr(exc)
        _write(entry)

    class Recorder(
        grpc.UnaryUnaryClientInterceptor,
        grpc.UnaryStreamClientInterceptor,
        grpc.StreamUnaryClientInterceptor,
        grpc.StreamStreamClientInterceptor,
    ):
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            record(details, request)
            return continuation(details, request)

        def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            record(details, request)
            return continuation(details, request)

        def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
            record(details, None)
            return continuation(details, requests)

        def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
            record(details, None)
            return continuation(details, requests)

    insecure_channel = grpc.insecure_channel

    def recording_channel(target: str, options: Any = None, compression: Any = None) -> Any:
        return grpc.intercept_channel(insecure_channel(target, options, compression), Recorder())

    grpc.insecure_channel = recording_channel

    from requests.adapters import HTTPAdapter

    send = HTTPAdapter.send

    def recording_send(self: HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
        url = str(request.url)
        if _REST and url.startswith(_REST):
            body = request.body
            if isinstance(body, bytes):
                body = body.decode("utf-8", errors="replace")
            _write({"transport": "rest", "method": request.method, "url": url, "body": body or ""})
        return send(self, request, *args, **kwargs)

    HTTPAdapter.send = recording_send  # type: ignore[method-assign]


if _LOG:
    _install()
