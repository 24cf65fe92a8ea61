"""Startup-script fragments for EC2: learn who we are from IMDSv2, and end by terminating ourselves.

Core contributes the runner install and run, the lifetime watchdog and the ``jitr_teardown`` trap;
these fragments only add what is EC2's. The instance is launched with
``InstanceInitiatedShutdownBehavior=terminate``, so ``shutdown`` alone deletes it; the CLI call,
when the image has the AWS CLI and the instance profile allows it, makes that immediate. Before
it, the teardown tags the instance ``jitr-runner-exit=job|no-job`` (core's exit report), which
the runner role may write on its own instance only. Nothing
here is rendered from untrusted input: the values are read from instance metadata at boot.

Where the image has the CloudWatch agent (the jitr image installs it without starting it), the
startup log and the runner's ``_diag`` logs are shipped to the log group ``/jitr/<pool>``, streams
``<runner>/startup`` and ``<runner>/runner-diag``, so a failed boot can be read after the VM is
gone; the teardown stops the agent first, which flushes what it has read. A pool turns this off
with ``options.log_shipping = false``.

In a broker-mode pool, ``jitr_identity_proof`` prints the instance identity document and its
signature, read with a fresh IMDSv2 token on each call, for core's fetch of the JIT config.
"""

from __future__ import annotations

import json

from jitr_core.broker_script import BROKER
from jitr_core.startup import Fragment, ScriptContext, shell_b64

from .config import PROVIDER

SOURCE = "jitr-aws"

PRELUDE = """\
# EC2 instance metadata (IMDSv2 only): this instance's id and region, for teardown
jitr_imds=http://169.254.169.254/latest
jitr_imds_token="$(curl -fsS --retry 5 --max-time 5 -X PUT \\
  -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$jitr_imds/api/token" || true)"
JITR_INSTANCE_ID="$(curl -fsS --retry 5 --max-time 5 \\
  -H "X-aws-ec2-metadata-token: $jitr_imds_token" "$jitr_imds/meta-data/instance-id" || true)"
JITR_REGION="$(curl -fsS --retry 5 --max-time 5 \\
  -H "X-aws-ec2-metadata-token: $jitr_imds_token" "$jitr_imds/meta-data/placement/region" || true)"
unset jitr_imds_token
export JITR_INSTANCE_ID JITR_REGION
"""

IDENTITY_PROOF = """\
# The broker's proof of who this instance is: the identity document and AWS's signature of it
jitr_identity_proof() {
  local token document signature
  token="$(curl -fsS --max-time 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$jitr_imds/api/token")" \
    || return 1
  document="$(curl -fsS --max-time 5 -H "X-aws-ec2-metadata-token: $token" \
    "$jitr_imds/dynamic/instance-identity/document")" || return 1
  signature="$(curl -fsS --max-time 5 -H "X-aws-ec2-metadata-token: $token" \
    "$jitr_imds/dynamic/instance-identity/signature")" || return 1
  jq -cn --arg document "$document" --arg signature "$signature" '{document: $document, signature: $signature}'
}
"""

TEARDOWN = """\
# EC2: tag this instance with the runner's exit report (terminated instances stay listed with their
# tags for about an hour, where scaledown reads it), then delete it (shutdown terminates it too:
# InstanceInitiatedShutdownBehavior=terminate)
if [ -n "${JITR_INSTANCE_ID:-}" ] && [ -n "${JITR_REGION:-}" ] && command -v aws >/dev/null 2>&1; then
  aws ec2 create-tags --region "$JITR_REGION" --resources "$JITR_INSTANCE_ID" \\
    --tags "Key=jitr-runner-exit,Value=${JITR_RUNNER_EXIT:-no-job}" >/dev/null 2>&1 || true
  aws ec2 terminate-instances --region "$JITR_REGION" --instance-ids "$JITR_INSTANCE_ID" >/dev/null 2>&1 || true
fi
shutdown -h now || poweroff -f || true
"""


LOG_SHIPPING = """\
# Ship the startup log and the runner's _diag logs to CloudWatch Logs when the image has the agent
if [ -x /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl ]; then
  mkdir -p /opt/aws/amazon-cloudwatch-agent/etc
  printf '%%s\\n' %(config)s > /opt/aws/amazon-cloudwatch-agent/etc/jitr-logs.json
  if /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \\
    -c file:/opt/aws/amazon-cloudwatch-agent/etc/jitr-logs.json >/dev/null; then
    JITR_LOG_AGENT=1
  else
    echo "jitr: the CloudWatch agent did not start; logs stay on this VM" >&2
  fi
fi
"""
LOG_FLUSH = """\
# Stopping the CloudWatch agent flushes the log lines it has read
if [ -n "${JITR_LOG_AGENT:-}" ]; then
  /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a stop >/dev/null 2>&1 || true
fi
"""


def log_shipping_enabled(context: ScriptContext) -> bool:
    """On unless the pool sets ``options.log_shipping`` to false."""
    value = context.pool.options.get("log_shipping", True)
    return str(value).strip().lower() not in ("false", "0", "no", "off")


def log_agent_config(context: ScriptContext) -> dict[str, object]:
    """The CloudWatch agent configuration: two files, one log group per pool, streams per runner."""
    group = f"/jitr/{context.pool.name}"
    files = [
        ("/var/log/jitr-startup.log", "startup"),
        ("/opt/actions-runner/_diag/*.log", "runner-diag"),
    ]
    collect = [
        {"file_path": path, "log_group_name": group, "log_stream_name": f"{context.runner_name}/{stream}"}
        for path, stream in files
    ]
    return {"logs": {"logs_collected": {"files": {"collect_list": collect}}}}


def fragments(context: ScriptContext) -> list[Fragment] | None:
    """The EC2 prelude (after core's, which sets up logging), log shipping, and teardown (after every other step)."""
    if context.provider != PROVIDER:
        return None
    out = [
        Fragment("prelude", PRELUDE, order=20, source=SOURCE),
        Fragment("teardown", TEARDOWN, order=90, source=SOURCE),
    ]
    if context.handoff == BROKER:
        out.append(Fragment("prelude", IDENTITY_PROOF, order=25, source=SOURCE))
    if log_shipping_enabled(context):
        config = shell_b64(json.dumps(log_agent_config(context), separators=(",", ":")))
        out += [
            Fragment("prelude", LOG_SHIPPING % {"config": config}, order=30, source=SOURCE),
            Fragment("teardown", LOG_FLUSH, order=80, source=SOURCE),
        ]
    return out
