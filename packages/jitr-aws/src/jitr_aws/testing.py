"""Test support for the AWS backend, reusable by other packages' tests and the benchmarks: a moto server with fake
credentials, a Lambda function URL in front of a handler, and AWS's signer of EC2 instance
identity documents, played by a test key.

moto comes with the test extra (``jitr-aws[test]``); it is imported when a server starts, so the
signer needs only what the backend itself needs.

AWS signs each instance's identity document with its key for the instance's region; the broker
accepts a proof only if the signature verifies with a certificate it trusts for that region
(:mod:`jitr_aws.identity`). No test can have AWS sign, so a test makes its own key, has the
deployment trust its certificate (``[aws] identity_certificates``), and sends what a launched
instance would. Nothing outside tests and benchmarks imports this module.
"""

from __future__ import annotations

import base64
import copy
import datetime
import functools
import json
import logging
import os
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

__all__ = ["FAKE_CREDENTIALS", "FunctionUrl", "IdentitySigner", "moto_server"]

# What botocore needs to sign requests to moto, and nothing that could reach a real account.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server in a thread of this process, its endpoint URL; while it runs, the environment
    holds :data:`FAKE_CREDENTIALS` (and no ``AWS_PROFILE``), as the clients under test read it."""
    from moto.server import ThreadedMotoServer

    _serialise_dynamodb_requests()
    saved = {name: os.environ.get(name) for name in (*FAKE_CREDENTIALS, "AWS_PROFILE")}
    os.environ.update(FAKE_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@functools.cache
def _serialise_dynamodb_requests() -> None:
    """Have moto answer one DynamoDB request at a time, once per process.

    DynamoDB applies each write and each transaction atomically. moto checks a write's condition
    and then applies it with nothing held in between, and copies a table for a transaction while
    other requests change it: on its threaded server two racing claims of one job could both win.
    One lock per DynamoDB request restores what jitr relies on; other services (SQS's long polls)
    stay concurrent.
    """
    from moto.dynamodb.responses import DynamoHandler

    call_action = DynamoHandler.call_action
    lock = threading.Lock()

    @functools.wraps(call_action)
    def one_at_a_time(self: DynamoHandler) -> Any:
        with lock:
            return call_action(self)

    DynamoHandler.call_action = one_at_a_time  # type: ignore[method-assign]


class FunctionUrl:
    """A Lambda function URL (auth NONE) on a local port: each POST becomes a function URL event
    made from ``template`` (a real one), handed to ``invoke``, whose answer is sent back."""

    def __init__(self, invoke: Callable[[dict[str, Any]], Mapping[str, Any]], template: Mapping[str, Any]) -> None:
        class Front(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = copy.deepcopy(dict(template))
                request["headers"] = {name.lower(): value for name, value in self.headers.items()}
                request["requestContext"]["http"]["method"] = "POST"
                request["requestContext"]["requestId"] = str(uuid.uuid4())
                request.update(rawPath=unquote(self.path), body=base64.b64encode(body).decode(), isBase64Encoded=True)
                answer = invoke(request)
                data = str(answer["body"]).encode()
                self.send_response(int(answer["statusCode"]))
                for name, value in answer.get("headers", {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class IdentitySigner:
    """A fresh RSA key signing instance identity documents of ``account`` in ``region``.

    Each signer has a key of its own: a second signer's signatures are forgeries to a deployment
    that trusts the first.
    """

    def __init__(self, account: str, region: str) -> None:
        self.account = account
        self.region = region
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def certificate_pem(self) -> bytes:
        """A self-signed certificate of the key, valid from a day ago to a day ahead (clock skew)."""
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jitr test identity signer")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def trust(self, directory: Path) -> Path:
        """``directory`` (created if missing) with the certificate as ``<region>.pem`` in it: the
        value of ``[aws] identity_certificates`` for a deployment that trusts this signer."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{self.region}.pem").write_bytes(self.certificate_pem())
        return directory

    def document(
        self,
        *,
        instance_id: str = "i-0123456789abcdef0",
        availability_zone: str | None = None,
        image_id: str = "ami-0123456789abcdef0",
        instance_type: str = "m7i.large",
        pending_time: float | None = None,
        **changes: Any,
    ) -> str:
        """An instance identity document laid out as the metadata service serves it (the bytes
        are what is signed). ``pending_time`` is the launch (default: 120 s ago), the zone
        defaults to the region's ``b``; ``changes`` replace or add fields by their JSON names,
        as a hostile or broken document would."""
        launched = time.time() - 120 if pending_time is None else pending_time
        fields = {
            "accountId": self.account,
            "architecture": "x86_64",
            "availabilityZone": f"{self.region}b" if availability_zone is None else availability_zone,
            "imageId": image_id,
            "instanceId": instance_id,
            "instanceType": instance_type,
            "pendingTime": datetime.datetime.fromtimestamp(launched, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "privateIp": "10.0.1.23",
            "region": self.region,
            "version": "2017-09-30",
            **changes,
        }
        return json.dumps(fields, indent=2)

    def sign(self, document: str) -> str:
        """The base64 RSA-SHA256 (PKCS#1 v1.5) signature of the document's bytes, in lines of 64
        characters as the metadata service's ``signature`` serves it (the verifier accepts one line too)."""
        signature = self._key.sign(document.encode(), padding.PKCS1v15(), hashes.SHA256())
        return "\n".join(textwrap.wrap(base64.b64encode(signature).decode(), 64))

    def prove(self, document: str) -> dict[str, str]:
        """The proof an instance sends the broker: ``document`` and its signature."""
        return {"document": document, "signature": self.sign(document)}

    def prove_instance(self, instance: Mapping[str, Any], **changes: Any) -> dict[str, str]:
        """The proof of an instance as ``describe_instances`` shows it (boto3's shape, as moto
        answers it): its id, zone, image, type and launch time; ``changes`` as in :meth:`document`."""
        document = self.document(
            instance_id=instance["InstanceId"],
            availability_zone=instance["Placement"]["AvailabilityZone"],
            image_id=instance["ImageId"],
            instance_type=instance["InstanceType"],
            pending_time=instance["LaunchTime"].timestamp(),
            **changes,
        )
        return self.prove(document)
