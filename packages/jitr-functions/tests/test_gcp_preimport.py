"""The Compute Engine client is imported in the background on instances of the functions that call it.

functions-framework imports ``main.py`` in gunicorn's arbiter and forks the worker: the probe does
the same (``create_app``, then ``os.fork``) and looks at both processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jitr_functions.bundle_gcp import MAIN_PY
from jitr_functions.gcp import preimport

PROBE = """
import gc, json, os, sys
already_frozen = gc.get_freeze_count()  # Python 3.12 starts with some objects in the permanent generation
from functions_framework import create_app
create_app(sys.argv[1], sys.argv[2])
from jitr_functions.gcp import preimport
in_arbiter = preimport.thread() is not None
at_fork = gc.get_freeze_count()
pid = os.fork()
if pid == 0:
    worker = preimport.thread()
    if worker is not None:
        worker.join(600)
    print(json.dumps({"arbiter": in_arbiter, "worker": worker is not None,
                      "loaded": preimport.MODULE in sys.modules, "collecting": gc.isenabled(),
                      "frozen_at_fork": at_fork > already_frozen, "frozen_after": gc.get_freeze_count() > at_fork}),
          flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def probe(target: str, tmp_path: Path) -> dict[str, bool]:
    (tmp_path / "main.py").write_text(MAIN_PY)
    env = {**os.environ, "FUNCTION_TARGET": target}
    done = subprocess.run([sys.executable, "-c", PROBE, target, str(tmp_path / "main.py")], env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, bool] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn forks its worker only where os.fork exists")
@pytest.mark.parametrize("target", sorted(preimport.TARGETS))
def test_functions_that_call_compute_engine_import_it_in_the_worker_at_start(target: str, tmp_path: Path) -> None:
    # imported with the collector paused; what it made is frozen, and the collector runs again
    assert probe(target, tmp_path) == {
        "arbiter": False,
        "worker": True,
        "loaded": True,
        "collecting": True,
        "frozen_at_fork": False,  # outside Cloud Run (no K_SERVICE) main.py leaves the collector alone
        "frozen_after": True,  # the Compute Engine client's import, paused on its own
    }


@pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn forks its worker only where os.fork exists")
@pytest.mark.parametrize("target", ["webhook", "rebalancer"])
def test_the_webhook_and_the_rebalancer_never_import_it(target: str, tmp_path: Path) -> None:
    assert probe(target, tmp_path) == {
        "arbiter": False,
        "worker": False,
        "loaded": False,
        "collecting": True,
        "frozen_at_fork": False,
        "frozen_after": False,
    }


def test_without_a_compute_target_nothing_is_installed_or_started() -> None:
    assert not preimport.install({"FUNCTION_TARGET": "webhook"})
    assert not preimport.install({})
    if not preimport._installed:  # this process's FUNCTION_TARGET (none in tests) chose nothing
        assert preimport.start() is None and preimport.thread() is None


CLOUD_RUN_PROBE = """
import gc, json, os, sys
already_frozen = gc.get_freeze_count()
from functions_framework import create_app
app = create_app(sys.argv[1], sys.argv[2])
seen = {"arbiter_after_import": gc.isenabled()}
pid = os.fork()
if pid == 0:
    seen["worker_at_start"] = gc.isenabled()
    answer = app.test_client().get("/")  # the first request: GET, refused after the app is built
    seen["answer"] = answer.status_code
    seen["worker_after_first"] = gc.isenabled()
    seen["worker_frozen"] = gc.get_freeze_count() > already_frozen
    print(json.dumps(seen), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps({"arbiter_after_fork": gc.isenabled(), "arbiter_frozen": gc.get_freeze_count() > already_frozen}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn forks its worker only where os.fork exists")
@pytest.mark.parametrize(("pools", "status"), [("[]", 405), ("[", 500)], ids=["refused", "app-cannot-be-built"])
def test_on_cloud_run_the_collector_waits_for_the_first_request(pools: str, status: int, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(MAIN_PY)
    env = {
        **os.environ,
        "K_SERVICE": "jitr-webhook",  # Cloud Run's
        "FUNCTION_TARGET": "webhook",
        "JITR_PROVIDER": "embedded",
        "JITR_EMBEDDED_STATE_DIR": str(tmp_path / "state"),
        "JITR_POOLS": pools,
    }
    done = subprocess.run([sys.executable, "-c", CLOUD_RUN_PROBE, "webhook", str(tmp_path / "main.py")], env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    worker, arbiter = (json.loads(line) for line in done.stdout.splitlines()[-2:])

    assert worker == {
        "arbiter_after_import": False,  # paused by main.py
        "worker_at_start": False,  # inherited: the app is built on the first request
        "answer": status,
        "worker_after_first": True,  # however the request ended
        "worker_frozen": True,
    }
    assert arbiter == {"arbiter_after_fork": True, "arbiter_frozen": True}  # settled as it forked
