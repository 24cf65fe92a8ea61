"""``jitr_functions.aws.broker`` behind a function URL, against moto and the GitHub simulator.

A broker-mode pool's scaleup launches an EC2 instance (moto) whose user data holds no secret; the
test then plays the instance: it signs an instance identity document for it with a test key that
the deployment trusts for its region (``[aws] identity_certificates``), asks the broker, and runs
the simulator's agent with the config it gets. A forged signature, another account, a second call
and a malformed request get nothing.
"""

from __future__ import annotations

import pytest
from conftest_aws import ACCOUNT, LABELS, REGION, Deployment, FunctionUrl, LambdaContext, ask_broker, event
from e2e_support import post
from jitr_aws.testing import IdentitySigner
from jitr_functions import aws
from jitr_functions.app import get_app

pytest_plugins = ["conftest_aws"]

JSON = {"Content-Type": "application/json"}


def test_an_instance_pulls_its_config_once_through_the_function_url(
    brokered: tuple[Deployment, FunctionUrl], identity_signer: IdentitySigner
) -> None:
    deployment, front = brokered
    deployment.sim.set_webhook(None, None)
    job_id = deployment.sim.queue_job("octo-org/api", LABELS)
    deployment.sqs.send_message(QueueUrl=deployment.jobs_url, MessageBody=deployment.job_message(job_id))
    deployment.sim.reset_call_counts()
    assert deployment.deliver(deployment.jobs_url, aws.scaleup)["batchItemFailures"] == []
    # the broker mints the config: the launch calls GitHub for nothing, and makes no GitHub client
    assert deployment.sim.call_counts() == {} and get_app()._github is None
    [instance] = deployment.instances()
    runner = deployment.runner_name(job_id)
    user_data = deployment.user_data(instance["InstanceId"])
    assert "jitr_identity_proof" in user_data and front.url in user_data
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG=\"$(printf %s '" not in user_data
    record = get_app().backend.load("runner", runner)
    assert record.data["handoff"] == "waiting" and record.data["github_runner_id"] is None

    forged = IdentitySigner(ACCOUNT, REGION).prove_instance(instance)  # a key the deployment does not trust
    assert ask_broker(front, runner, forged)[0] == 401
    assert ask_broker(front, runner, identity_signer.prove_instance(instance, accountId="999999999999"))[0] == 401
    assert post(front.url, b'{"runner_name": 1}', JSON)[0] == 400

    proof = identity_signer.prove_instance(instance)
    status, answer = ask_broker(front, runner, proof)
    assert status == 200, answer
    agent = deployment.sim.agent_connect(answer["jit_config"])
    assert deployment.sim.agent_poll(agent.id, timeout=5).id == job_id

    status, answer = ask_broker(front, runner, proof)  # the same instance again
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
