"""The garbage collector at a cold start: paused from a Lambda handler module's import to the first invocation's
end, and around a block (Cloud Run's background import of the Compute Engine client).

Each case runs in a fresh interpreter: a Lambda container importing ``jitr_functions.aws`` and
invoking a handler, or a process using :func:`jitr_functions.coldstart.paused`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_aws_snapstart import SETTINGS

PROBE = """
import gc, json, sys
already_frozen = gc.get_freeze_count()  # Python 3.12 starts with some objects in the permanent generation
from jitr_functions import aws
seen = {"after_import": gc.isenabled()}
class Context:
    aws_request_id = "cold"
try:
    answer = getattr(aws, sys.argv[1])(json.loads(sys.argv[2]), Context())
    seen["answer"] = answer.get("statusCode")
except Exception as exc:
    seen["raised"] = type(exc).__name__
seen["after_first"] = gc.isenabled()
seen["frozen"] = gc.get_freeze_count() > already_frozen
print(json.dumps(seen))
"""
GET = {"version": "2.0", "requestContext": {"http": {"method": "GET"}}, "headers": {}, "body": ""}


def cold_start(handler: str, event: object, **env: str) -> dict[str, object]:
    """Import the handlers in a new interpreter with ``env``, invoke ``handler`` once; what the collector did."""
    done = subprocess.run([sys.executable, "-c", PROBE, handler, json.dumps(event)], capture_output=True, text=True,
                          timeout=120, env={"PATH": os.environ.get("PATH", ""), **env}, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_in_lambda_the_collector_waits_for_the_first_invocation_then_runs_again() -> None:
    seen = cold_start("webhook", GET, **SETTINGS, AWS_LAMBDA_FUNCTION_NAME="jitr-webhook")

    assert seen == {"after_import": False, "answer": 405, "after_first": True, "frozen": True}


def test_a_first_invocation_that_fails_still_resumes_the_collector() -> None:
    settings = {**SETTINGS, "JITR_POOLS": "["}  # the app cannot be built

    seen = cold_start("scaledown", {}, **settings, AWS_LAMBDA_FUNCTION_NAME="jitr-scaledown")

    assert seen == {"after_import": False, "raised": "SettingsError", "after_first": True, "frozen": True}


def test_outside_lambda_importing_the_handlers_leaves_the_collector_alone() -> None:
    seen = cold_start("webhook", GET, **SETTINGS)

    assert seen == {"after_import": True, "answer": 405, "after_first": True, "frozen": False}


BLOCK = """
import gc, json, sys
already_frozen = gc.get_freeze_count()
from jitr_functions import coldstart
if sys.argv[1] == "off":
    gc.disable()
try:
    with coldstart.paused():
        inside = gc.isenabled()
        raise ValueError("the block fails")
except ValueError:
    pass
print(json.dumps({"inside": inside, "after": gc.isenabled(), "frozen": gc.get_freeze_count() > already_frozen}))
"""


def around_a_block(collector: str) -> dict[str, bool]:
    done = subprocess.run([sys.executable, "-c", BLOCK, collector], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "")}, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, bool] = json.loads(done.stdout)
    return result


def test_a_block_runs_paused_and_leaves_what_it_made_frozen_and_the_collector_on_even_when_it_fails() -> None:
    assert around_a_block("on") == {"inside": False, "after": True, "frozen": True}


def test_a_block_leaves_a_collector_someone_else_turned_off_as_it_was() -> None:
    assert around_a_block("off") == {"inside": False, "after": False, "frozen": False}
