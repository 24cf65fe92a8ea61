"""No token, JWT, private key or JIT config reaches a log record, an exception or a repr.

Every test in this package is also guarded by ``secret_free_logs`` (conftest); this one walks
the client through its success and failure paths and checks the exceptions as well.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from github_support import FakeClock, SimFactory, Sleeps, assert_secret_free, make_client
from jitr_core.errors import GitHubError
from jitr_core.model import Scope
from jitr_github.simulator import Faults


def test_no_secret_in_any_log_record_exception_or_repr(
    make_sim: SimFactory, secret_free_logs: Callable[[], list[logging.LogRecord]]
) -> None:
    clock = FakeClock()
    sim = make_sim(clock=clock, webhook_url="http://127.0.0.1:9/down", webhook_secret="leak-test-webhook-secret-e41a")
    installation = sim.add_installation("octo-org", repos=["app"])
    sim.add_installation("other-org", repos=["app"])
    client = make_client(sim, clock=clock, sleep=Sleeps(), max_retries=1)
    scope = Scope(installation, "octo-org", "app")
    texts: list[str] = [repr(client)]

    def expect_failure(call: Callable[[], Any]) -> None:
        try:
            call()
        except GitHubError as exc:
            texts.append(repr(exc))
            texts.append("".join(traceback.format_exception(exc)))
        else:
            raise AssertionError("the call was expected to fail")

    config = client.generate_jit_config(scope, "leaky", ["self-hosted"], "")
    texts.append(repr(config))
    sim.queue_job("octo-org/app", ["self-hosted"])
    sim.agent_connect(config.encoded.reveal())
    client.queued_jobs(scope)
    client.queued_jobs(scope)
    expect_failure(lambda: client.generate_jit_config(scope, "leaky", ["self-hosted"], ""))  # busy: conflict
    expect_failure(lambda: client.delete_runner(scope, config.runner_id))  # busy: conflict
    expect_failure(lambda: client.list_runners(Scope(installation, "other-org", "app")))  # 404 with this token
    expect_failure(lambda: client.generate_jit_config(Scope(None, "octo-org"), "x", ["self-hosted"], "no-group"))
    sim.fail_next(2, 503)  # both attempts (max_retries=1)
    expect_failure(lambda: client.list_runners(scope))
    sim.fail_next(1, 429, retry_after=3600)
    expect_failure(lambda: client.list_runners(scope))
    sim.faults = Faults(rate_limit=1)
    expect_failure(lambda: client.list_runners(Scope(None, "other-org", "app")))
    sim.faults = Faults()
    clock.advance(4000)  # every token and JWT is expired now; the client mints new ones
    client.list_runners(scope)
    assert client.redeliver_failed_deliveries(since=0) >= 1
    expect_failure(lambda: make_client(sim, clock=lambda: clock() + 3600, max_retries=0).installation_for("octo-org"))

    assert_secret_free("\n".join(texts), [sim])
    records = secret_free_logs()
    fields = [record.__dict__ for record in records if record.name == "jitr.github"]
    assert any(f.get("http_status") == 409 for f in fields), "client calls are logged with structured fields"
    assert any(f.get("runner_name") == "leaky" for f in fields)
    assert any("installation_id" in f for f in fields)
