"""GCE steps of a runner VM's startup script: who am I (prelude) and delete me (teardown).

The prelude reads the instance's name, zone and project from the metadata server and defines
``jitr_gcp_delete_self``; the teardown calls it, so the VM deletes itself through the Compute
API with its service account's token once the runner exits or the watchdog fires, and then
powers off. Without a token or permission only the power-off happens: GCE keeps the stopped
instance (listed as not running) and scaledown deletes it. The runner install/run steps, the
watchdog and the ``jitr_teardown`` trap come from core.
"""

from __future__ import annotations

from jitr_core.startup import Fragment, ScriptContext, shell_quote

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

_TEARDOWN = """\
if ! jitr_gcp_delete_self; then
  echo "jitr: deleting this instance through the Compute API failed; powering off for scaledown to delete" >&2
fi
shutdown -h now || poweroff -f || true
"""


def fragments(context: ScriptContext) -> list[Fragment]:
    """The prelude (after core's logging setup, before the install) and the teardown (after all others)."""
    prelude = _PRELUDE % {"runner_name": shell_quote(context.runner_name)}
    return [
        Fragment("prelude", prelude, order=20, source=SOURCE),
        Fragment("teardown", _TEARDOWN, order=90, source=SOURCE),
    ]
