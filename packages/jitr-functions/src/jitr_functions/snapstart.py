"""Lambda SnapStart: do the safe part of a cold start during INIT, so the snapshot holds it.

With SnapStart, Lambda runs INIT once when a version is published, snapshots the memory and
resumes every new execution environment from that snapshot. :func:`prime`, called when the
handler module is imported, builds the app then (settings, plugin discovery, the services) and
imports the modules the function's first invocation would import: boto3 and the AWS backend's
modules, and the GitHub client for every function but the webhook, which never loads it.

What must differ between environments is not made during INIT: boto3 clients (their
credentials and connections), secrets and GitHub tokens are created on first use, after the
restore. The one thing INIT does make that should be unique is the state of :mod:`random`
(seeded when it was imported; jitr draws retry jitter from it): it is reseeded after each
restore, through the runtime's ``snapshot_restore_py`` hooks. Where that library is absent
(outside Lambda), the handler works the same without it.

Outside a SnapStart or provisioned-concurrency INIT, nothing happens at import: the app is
built on the first invocation, as before.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
from collections.abc import Mapping

from .app import get_app

log = logging.getLogger("jitr.lambda")

# AWS_LAMBDA_INITIALIZATION_TYPE values whose INIT runs ahead of any request
AHEAD_OF_TIME = frozenset({"snap-start", "provisioned-concurrency"})
AWS_MODULES = ("boto3", "botocore.config", "jitr_aws.clients", "jitr_aws.sqs", "jitr_aws.dynamodb", "jitr_aws.secrets")
WORKER_MODULES = ("jitr_aws.ec2", "jitr_github.client")  # not for the webhook: it never calls EC2 or GitHub


def prime(environ: Mapping[str, str] = os.environ) -> bool:
    """Build the app and import what the function will use, when INIT runs ahead of requests; whether it did."""
    if environ.get("AWS_LAMBDA_INITIALIZATION_TYPE", "") not in AHEAD_OF_TIME:
        return False
    get_app()
    webhook = environ.get("_HANDLER", "").rsplit(".", 1)[-1] == "webhook"
    for name in AWS_MODULES if webhook else AWS_MODULES + WORKER_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # a bundle without it: the first invocation says what is missing
            log.debug("not imported ahead of time", extra={"module": name})
    register_after_restore(after_restore)
    return True


def after_restore() -> None:
    """Run in each environment resumed from the snapshot: what INIT made that must be unique, made again."""
    random.seed()  # from os.urandom: every environment draws its own jitter


def register_after_restore(hook: object) -> bool:
    """Register ``hook`` with the runtime's ``snapshot_restore_py``; False where the library is absent."""
    try:
        from snapshot_restore_py import register_after_restore as register
    except ImportError:
        return False
    register(hook)
    return True
