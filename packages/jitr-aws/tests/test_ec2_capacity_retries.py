"""An EC2 capacity error moves the fallback chain on at once; transient failures are retried.

EC2 answers ``InsufficientInstanceCapacity`` with HTTP 500, which botocore's standard retry mode
would retry three times. moto cannot answer it, so a small HTTP server answers EC2's query API
the way EC2 does, and the real boto3 client talks to it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from jitr_aws import ec2
from jitr_aws.config import AwsConfig, VMShape
from jitr_core.errors import BackendError, CapacityError
from jitr_core.model import LaunchRequest

_NS = 'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'
_NO_INSTANCES = (
    f"<DescribeInstancesResponse {_NS}><requestId>r</requestId><reservationSet/></DescribeInstancesResponse>"
)


def _error(code: str) -> str:
    error = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>"
    return f"<Response><Errors>{error}</Errors><RequestID>r</RequestID></Response>"


class FakeEC2:
    """Answers DescribeInstances with nothing and RunInstances with the error code it is given."""

    def __init__(self, run_instances_error: str, status: int) -> None:
        self.error = run_instances_error
        self.status = status
        self.calls: Counter[str] = Counter()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                action = parse_qs(body).get("Action", [""])[0]
                fake.calls[action] += 1
                status, text = (fake.status, _error(fake.error)) if action == "RunInstances" else (200, _NO_INSTANCES)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_ec2(request: pytest.FixtureRequest) -> Iterator[FakeEC2]:
    code, status = request.param
    fake = FakeEC2(code, status)
    yield fake
    fake.stop()


def _launch(fake: FakeEC2) -> None:
    config = AwsConfig(region="eu-west-1", endpoint_url=fake.url, vm=VMShape(launch_template="lt-0123456789abcdef0"))
    request = LaunchRequest(
        runner_name="jitr-linux-1-1",
        pool="linux",
        machine_type="m5.large",
        placement=None,
        spot=True,
        image="",
        disk_gb=30,
        startup_script="#!/bin/bash\necho runner\n",
        idempotency_token="tok-1",
        max_lifetime_s=3600,
        labels={"jitr-runner": "jitr-linux-1-1"},
    )
    ec2.launch(request, config)


@pytest.mark.parametrize("fake_ec2", [("InsufficientInstanceCapacity", 500)], indirect=True)
def test_a_capacity_error_is_not_retried(fake_ec2: FakeEC2, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(CapacityError, match="InsufficientInstanceCapacity"):
        _launch(fake_ec2)
    assert fake_ec2.calls["RunInstances"] == 1


@pytest.mark.parametrize("fake_ec2", [("InternalError", 500)], indirect=True)
def test_a_transient_failure_is_retried(fake_ec2: FakeEC2, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(BackendError, match="may pass if retried"):
        _launch(fake_ec2)
    assert fake_ec2.calls["RunInstances"] == ec2.LAUNCH_ATTEMPTS
