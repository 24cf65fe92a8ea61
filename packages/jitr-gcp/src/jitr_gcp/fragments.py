"""GCE steps of a runner VM's startup script: who am I (prelude) and delete me (teardown).

The prelude reads the instance's name, zone and project from the metadata server and defines
``jitr_gcp_delete_self``; the teardown calls it, so the VM deletes itself through the Compute
API with its service account's token once the runner exits or the watchdog fires, and then
powers off. Without a token or permission only the power-off happens: GCE keeps the stopped
instance (listed as not running) and scaledown deletes it. The runner install/run steps, the
watchdog and the ``jitr_teardown`` trap come from core.

Where the image has the Ops Agent (the jitr image installs it without starting it), the startup
log and the runner's ``_diag`` logs go to Cloud Logging (logs ``jitr_startup`` and
``jitr_runner_diag`` of the instance, labelled ``jitr-pool`` and ``jitr-runner``), so a failed
boot can be read after the VM is gone; the teardown stops the agent first, which flushes it. A
pool turns this off with ``options.log_shipping = false``.

In a broker-mode pool, ``jitr_identity_proof`` prints an identity token of the instance's service
account for the broker's audience, in the full format (instance id, zone and project), fresh on
each call, for core's fetch of the JIT config.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from jitr_core.broker_script import BROKER
from jitr_core.startup import Fragment, ScriptContext, shell_b64, shell_quote

SOURCE = "jitr-gcp"
_PRELUDE = """\
JITR_GCP_METADATA=http://metadata.google.internal/computeMetadata/v1
jitr_gcp_metadata() {
  curl -sf --max-time 5 --retry 5 --retry-connrefused -H 'Metadata-Flavor: Google' "${JITR_GCP_METADATA}/$1"
}
JITR_GCP_INSTANCE="$(jitr_gcp_metadata instance/name || true)"
if [ -z "${JITR_GCP_INSTANCE}" ]; then JITR_GCP_INSTANCE=%(runner_name)s; fi
JITR_GCP_ZONE="$(jitr_gcp_metadata instance/zone || true)"
JITR_GCP_ZONE="${JITR_GCP_ZONE##*/}"
JITR_GCP_PROJECT="$(jitr_gcp_metadata project/project-id || true)"
export JITR_GCP_INSTANCE JITR_GCP_ZONE JITR_GCP_PROJECT
jitr_gcp_delete_self() {
  local token
  token="$(jitr_gcp_metadata instance/service-accounts/default/token \\
    | sed -n 's/.*"access_token" *: *"\\([^"]*\\)".*/\\1/p')"
  if [ -z "${token}" ] || [ -z "${JITR_GCP_ZONE:-}" ] || [ -z "${JITR_GCP_PROJECT:-}" ]; then
    return 1
  fi
  curl -sf --max-time 30 -X DELETE -H "Authorization: Bearer ${token}" -o /dev/null \\
    "https://compute.googleapis.com/compute/v1/projects/${JITR_GCP_PROJECT}/zones/${JITR_GCP_ZONE}/instances/${JITR_GCP_INSTANCE}"
}
echo "jitr: GCE instance ${JITR_GCP_INSTANCE} in ${JITR_GCP_ZONE} (${JITR_GCP_PROJECT})"
"""

_IDENTITY_PROOF = """\
# The broker's proof of who this instance is: a full-format identity token for the broker's audience
jitr_identity_proof() {
  local token
  token="$(jitr_gcp_metadata "instance/service-accounts/default/identity?audience=%(audience)s&format=full")" \
    || return 1
  case "${token}" in "" | *[!A-Za-z0-9._-]*) return 1 ;; esac
  printf '{"token":"%%s"}' "${token}"
}
"""

_TEARDOWN = """\
# The runner's exit report (core's JITR_RUNNER_EXIT) as a guest attribute of this instance: the
# metadata server takes it from this VM alone, with no permission; scaledown reads it from an
# instance that is still listed (one left stopped when it could not delete itself)
curl -sf --max-time 5 -X PUT --data "${JITR_RUNNER_EXIT:-no-job}" -H 'Metadata-Flavor: Google' \\
  "${JITR_GCP_METADATA}/instance/guest-attributes/jitr/runner-exit" >/dev/null || true
if ! jitr_gcp_delete_self; then
  echo "jitr: deleting this instance through the Compute API failed; powering off for scaledown to delete" >&2
fi
shutdown -h now || poweroff -f || true
"""


_LOG_SHIPPING = """\
# Ship the startup log and the runner's _diag logs to Cloud Logging when the image has the Ops Agent
if [ -d /etc/google-cloud-ops-agent ]; then
  printf '%%s\\n' %(config)s > /etc/google-cloud-ops-agent/config.yaml
  if systemctl restart google-cloud-ops-agent; then
    JITR_LOG_AGENT=1
  else
    echo "jitr: the Ops Agent did not start; logs stay on this VM" >&2
  fi
fi
"""

_LOG_FLUSH = """\
# Stopping the Ops Agent flushes the log lines it has read
if [ -n "${JITR_LOG_AGENT:-}" ]; then systemctl stop google-cloud-ops-agent || true; fi
"""


def log_shipping_enabled(context: ScriptContext) -> bool:
    """On unless the pool sets ``options.log_shipping`` to false."""
    value = context.pool.options.get("log_shipping", True)
    return str(value).strip().lower() not in ("false", "0", "no", "off")


def ops_agent_config(context: ScriptContext) -> str:
    """The Ops Agent's ``config.yaml`` (JSON strings are YAML strings, so names are quoted safely)."""
    pool, runner = json.dumps(context.pool.name), json.dumps(context.runner_name)
    return "\n".join(
        [
            "logging:",
            "  receivers:",
            "    jitr_startup:",
            "      type: files",
            "      include_paths: [/var/log/jitr-startup.log]",
            "    jitr_runner_diag:",
            "      type: files",
            "      include_paths: [/opt/actions-runner/_diag/*.log]",
            "  processors:",
            "    jitr_labels:",
            "      type: modify_fields",
            "      fields:",
            '        labels."jitr-pool":',
            f"          static_value: {pool}",
            '        labels."jitr-runner":',
            f"          static_value: {runner}",
            "  service:",
            "    pipelines:",
            "      jitr:",
            "        receivers: [jitr_startup, jitr_runner_diag]",
            "        processors: [jitr_labels]",
        ]
    )


def fragments(context: ScriptContext) -> list[Fragment]:
    """The prelude (after core's logging setup, before the install), log shipping, and the teardown (last)."""
    prelude = _PRELUDE % {"runner_name": shell_quote(context.runner_name)}
    out = [
        Fragment("prelude", prelude, order=20, source=SOURCE),
        Fragment("teardown", _TEARDOWN, order=90, source=SOURCE),
    ]
    if context.handoff == BROKER:
        audience = quote(context.broker_audience or context.broker_url, safe="")
        out.append(Fragment("prelude", _IDENTITY_PROOF % {"audience": audience}, order=25, source=SOURCE))
    if log_shipping_enabled(context):
        out += [
            Fragment(
                "prelude", _LOG_SHIPPING % {"config": shell_b64(ops_agent_config(context))}, order=30, source=SOURCE
            ),
            Fragment("teardown", _LOG_FLUSH, order=80, source=SOURCE),
        ]
    return out
