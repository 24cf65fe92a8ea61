"""A warm EC2 instance (moto) on the Lambda handlers: launched by scaledown with no secret in its
user data, held at the broker while no job needs it, then assigned a job and handed its config once."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from broker_support import is_jit_config
from conftest_aws import LABELS, Deployment, FunctionUrl, LambdaContext, ask_broker, event
from jitr_aws.testing import IdentitySigner
from jitr_core.model import RecordQuery
from jitr_core.services.warm import WAITING, WARM
from jitr_functions import aws
from jitr_functions.app import get_app

pytest_plugins = ["conftest_aws"]


@pytest.fixture
def warm(
    brokered: tuple[Deployment, FunctionUrl], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Deployment, FunctionUrl]]:
    deployment, front = brokered
    monkeypatch.setenv("JITR_POOLS", json.dumps([{**deployment.pool, "handoff": "broker", "warm": 1}]))
    monkeypatch.setenv("JITR_WARM_HOLD_S", "1")
    yield deployment, front


def test_a_warm_instance_carries_no_secret_and_gets_the_config_of_the_job_it_is_given(
    warm: tuple[Deployment, FunctionUrl], identity_signer: IdentitySigner
) -> None:
    deployment, front = warm
    deployment.sim.set_webhook(None, None)
    aws.scaledown(event("example-eventbridge-schedule.json"), LambdaContext())  # fills the pool
    [instance] = deployment.instances()
    [record] = get_app().backend.query_all(RecordQuery(WARM, WAITING))
    assert instance["tags"]["jitr-runner"] == record.key and record.data["vm_id"] == instance["InstanceId"]
    user_data = deployment.user_data(instance["InstanceId"])
    assert "jitr_identity_proof" in user_data and front.url in user_data
    assert "JITCONFIG=\"$(printf %s '" not in user_data
    assert not [s for s in deployment.sim.secrets_issued() if s in user_data or is_jit_config(s)]

    proof = identity_signer.prove_instance(instance)  # the same all the instance's life
    status, _ = ask_broker(front, record.key, proof)  # no job yet: held, then "ask again"
    assert status == 204

    job_id = deployment.sim.queue_job("octo-org/api", LABELS)
    deployment.sqs.send_message(QueueUrl=deployment.jobs_url, MessageBody=deployment.job_message(job_id))
    assert deployment.deliver(deployment.jobs_url, aws.scaleup)["batchItemFailures"] == []
    runner = get_app().backend.load("runner", deployment.runner_name(job_id))
    assert runner.data["vm_id"] == instance["InstanceId"] and runner.data["warm_vm"] == record.key
    refill = [i for i in deployment.instances() if i["InstanceId"] != instance["InstanceId"]]
    assert len(refill) == 1 and "JITCONFIG=\"$(printf %s '" not in deployment.user_data(refill[0]["InstanceId"])

    status, answer = ask_broker(front, record.key, proof)
    assert status == 200 and answer["runner_name"] == runner.key, answer
    agent = deployment.sim.agent_connect(answer["jit_config"])
    assert deployment.sim.agent_poll(agent.id, timeout=5).id == job_id
    assert ask_broker(front, record.key, proof)[0] == 410  # the warm record is gone: once
