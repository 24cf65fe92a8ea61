"""Startup-script fragments for EC2: learn who we are from IMDSv2, and end by terminating ourselves.

Core contributes the runner install and run, the lifetime watchdog and the ``jitr_teardown`` trap;
these fragments only add what is EC2's. The instance is launched with
``InstanceInitiatedShutdownBehavior=terminate``, so ``shutdown`` alone deletes it; the CLI call,
when the image has the AWS CLI and the instance profile allows it, makes that immediate. Nothing
here is rendered from untrusted input: the values are read from instance metadata at boot.
"""

from __future__ import annotations

from jitr_core.startup import Fragment, ScriptContext

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

TEARDOWN = """\
# EC2: delete this instance (shutdown terminates it: InstanceInitiatedShutdownBehavior=terminate)
if [ -n "${JITR_INSTANCE_ID:-}" ] && [ -n "${JITR_REGION:-}" ] && command -v aws >/dev/null 2>&1; then
  aws ec2 terminate-instances --region "$JITR_REGION" --instance-ids "$JITR_INSTANCE_ID" >/dev/null 2>&1 || true
fi
shutdown -h now || poweroff -f || true
"""


def fragments(context: ScriptContext) -> list[Fragment] | None:
    """The EC2 prelude (after core's, which sets up logging) and teardown (after every other teardown step)."""
    if context.provider != PROVIDER:
        return None
    return [
        Fragment("prelude", PRELUDE, order=20, source=SOURCE),
        Fragment("teardown", TEARDOWN, order=90, source=SOURCE),
    ]
