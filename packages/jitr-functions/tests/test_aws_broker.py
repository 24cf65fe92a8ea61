"""``jitr_functions.aws.broker`` behind a function URL, against moto and the GitHub simulator.

A broker-mode pool's scaleup launches an EC2 instance (moto) whose user data holds no secret; the
test then plays the instance: it signs an instance identity document for it with a test key that
the deployment trusts for its region (``[aws] identity_certificates``), asks the broker, and runs
the simulator's agent with the config it gets. A forged signature, another account, a second call
and a malformed request get nothing.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_aws import LABELS, REGION, Deployment, FunctionUrl, LambdaContext, event
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from e2e_support import post
from jitr_functions import aws
from jitr_functions.app import get_app

pytest_plugins = ["conftest_aws"]

ACCOUNT = "123456789012"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jitr broker test signer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def brokered(
    deployment: Deployment, signer: rsa.RSAPrivateKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Deployment, FunctionUrl]]:
    """The deployment with its pool in broker mode, trusting ``signer``, its broker behind a function URL."""
    certificates = tmp_path / "certificates"
    certificates.mkdir()
    (certificates / f"{REGION}.pem").write_bytes(_certificate(signer))
    front = FunctionUrl(aws.broker)
    monkeypatch.setenv("JITR_POOLS", json.dumps([{**deployment.pool, "handoff": "broker"}]))
    monkeypatch.setenv("JITR_BROKER_URL", front.url)
    monkeypatch.setenv("JITR_AWS_IDENTITY_CERTIFICATES", str(certificates))
    monkeypatch.setenv("JITR_AWS_IDENTITY_ACCOUNTS", ACCOUNT)
    try:
        yield deployment, front
    finally:
        front.close()


def _proof(instance: dict[str, Any], key: rsa.RSAPrivateKey, **changes: Any) -> dict[str, str]:
    pending = datetime.datetime.fromtimestamp(time.time() - 30, datetime.UTC)
    document = json.dumps(
        {
            "accountId": ACCOUNT,
            "availabilityZone": instance["Placement"]["AvailabilityZone"],
            "imageId": instance["ImageId"],
            "instanceId": instance["InstanceId"],
            "instanceType": instance["InstanceType"],
            "pendingTime": pending.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "version": "2017-09-30",
            **changes,
        },
        indent=2,
    )
    signature = key.sign(document.encode(), padding.PKCS1v15(), hashes.SHA256())
    return {"document": document, "signature": base64.b64encode(signature).decode()}


def _ask(front: FunctionUrl, runner: str, proof: dict[str, str]) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"runner_name": runner, "provider": "aws", "proof": proof}).encode()
    return post(front.url, body, JSON)


def test_an_instance_pulls_its_config_once_through_the_function_url(
    brokered: tuple[Deployment, FunctionUrl], signer: rsa.RSAPrivateKey
) -> None:
    deployment, front = brokered
    deployment.sim.set_webhook(None, None)
    job_id = deployment.sim.queue_job("octo-org/api", LABELS)
    deployment.sqs.send_message(QueueUrl=deployment.jobs_url, MessageBody=deployment.job_message(job_id))
    assert deployment.deliver(deployment.jobs_url, aws.scaleup)["batchItemFailures"] == []
    [instance] = deployment.instances()
    runner = deployment.runner_name(job_id)
    user_data = deployment.user_data(instance["InstanceId"])
    assert "jitr_identity_proof" in user_data and front.url in user_data
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG=\"$(printf %s '" not in user_data
    record = get_app().backend.load("runner", runner)
    assert record.data["handoff"] == "waiting" and record.data["github_runner_id"] is None

    forged = _proof(instance, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert _ask(front, runner, forged)[0] == 401
    assert _ask(front, runner, _proof(instance, signer, accountId="999999999999"))[0] == 401
    assert post(front.url, b'{"runner_name": 1}', JSON)[0] == 400

    status, answer = _ask(front, runner, _proof(instance, signer))
    assert status == 200, answer
    agent = deployment.sim.agent_connect(answer["jit_config"])
    assert deployment.sim.agent_poll(agent.id, timeout=5).id == job_id

    status, answer = _ask(front, runner, _proof(instance, signer))  # the same instance again
    assert status == 410 and "jit_config" not in answer
    record = get_app().backend.load("runner", runner)
    assert record.data["handoff"] == "handed" and record.data["github_runner_id"] == agent.id


def test_the_broker_refuses_what_is_not_a_post_or_not_an_http_event(brokered: tuple[Deployment, FunctionUrl]) -> None:
    request = event("lambdaFunctionUrlEvent.json")
    request["requestContext"]["http"]["method"] = "GET"
    answer = aws.broker(request, LambdaContext())
    assert answer["statusCode"] == 405 and answer["headers"]["allow"] == "POST"
    with pytest.raises(aws.EventError, match="broker function expects an HTTP request event"):
        aws.broker({"Records": []}, LambdaContext())
