"""Invariant 5: no secret (App private key, webhook secret, installation tokens, App JWTs, JIT
configs) in any log line, queue message, dead letter or record, over a whole run with faults."""

from __future__ import annotations

import logging
import traceback

from e2e_support import record, store_rows, wait_completed, wait_for
from jitr_functions.sandbox import DEMO_POOLS, SandboxFaults
from jitr_github.simulator.jitconfig import CREDENTIALS_FILE, RSA_PARAMS_FILE, decode_jit_config


class Capture(logging.Handler):
    """Keeps everything a log record carries: message, arguments, extra fields, exception text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.args)]
        parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in ("msg", "args", "exc_info")]
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        self.texts.append(" ".join(parts))


def _secrets(sandbox) -> list[str]:
    found = {sandbox.webhook_secret, sandbox.sim.private_key_pem, *sandbox.sim.secrets_issued()}
    # a leaked fragment counts too: each line of the key, each credential inside a JIT config
    found |= {line for line in sandbox.sim.private_key_pem.splitlines() if len(line) >= 32}
    for value in list(found):
        try:
            files = decode_jit_config(value)
        except ValueError:
            continue
        data = files[CREDENTIALS_FILE].get("data", {})
        found |= {v for v in data.values() if isinstance(v, str)}  # the runner's client id
        rsa = files[RSA_PARAMS_FILE]
        found |= {rsa[k] for k in ("d", "p", "q", "dp", "dq", "inverseQ") if isinstance(rsa.get(k), str)}
    return sorted(s for s in found if len(s) >= 16)


def _is_jit_config(value: str) -> bool:
    try:
        decode_jit_config(value)
    except ValueError:
        return False
    return True


def test_no_secret_in_logs_queue_messages_or_records(e2e_sandbox):
    capture = Capture()
    loggers = [logging.getLogger("jitr"), logging.getLogger()]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
    try:
        sandbox = e2e_sandbox(faults=SandboxFaults.demo(seed=21), seed=21, settings={"log_level": "DEBUG"})
        labels = [pool["labels"] for pool in DEMO_POOLS]
        jobs = [
            sandbox.sim.queue_job(repo, labels[i % len(labels)], name=f"job-{i}")
            for i, repo in enumerate(sandbox.repositories * 4)
        ]
        wait_completed(sandbox, jobs, 90)
        sandbox.app.scaledown.run()
        sandbox.app.rebalancer.run()
        cancelled = sandbox.sim.queue_job(sandbox.repositories[0], labels[0], name="cancelled")
        wait_for(lambda: record(sandbox, "job", cancelled) is not None, 60, "the job to be seen")
        sandbox.sim.cancel_job(cancelled)
        wait_for(
            lambda: record(sandbox, "job", cancelled).state in ("cancelled", "completed"), 60, "the cancellation"
        )  # completed if its runner had taken it already
        sandbox.runtime.stop(timeout_s=5.0)  # everything it had to say is said
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(capture)
            logger.setLevel(level)

    secrets = _secrets(sandbox)
    issued = sandbox.sim.secrets_issued()
    assert any(s.count(".") == 2 for s in issued), "no App JWT was issued"
    assert sum(_is_jit_config(s) for s in issued) >= len(jobs), "JIT configs are missing from the list"
    assert len(secrets) > 10, secrets
    surfaces = {
        "log records": capture.texts,
        "JSON log lines": sandbox.log_text().splitlines(),
        "queue messages": [f"{b} {a}" for b, a in store_rows(sandbox, "SELECT body, attributes FROM messages")],
        "dead letters": [
            " ".join(map(str, row)) for row in store_rows(sandbox, "SELECT body, attributes, reason FROM dead_letters")
        ],
        "records": [f"{k} {d}" for k, d in store_rows(sandbox, "SELECT key, data FROM records")],
    }
    assert len(capture.texts) > 100 and surfaces["records"]
    for surface, texts in surfaces.items():
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"a secret ({secret[:4]}…) appears in {surface}: {text[:300]}"
