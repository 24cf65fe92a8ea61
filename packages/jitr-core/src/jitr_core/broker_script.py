"""The startup-script side of the broker handoff: the VM pulls its JIT config with its cloud identity.

The VM provider's fragment defines the shell function ``jitr_identity_proof``, which prints the
proof as a JSON object, fresh on every call (identity tokens expire). The fragment here POSTs it
with the runner's name to the broker, retrying network errors, 5xx, 409 and 429 with a doubling
backoff until a deadline, and keeps the config only in the shell variable
``ACTIONS_RUNNER_INPUT_JITCONFIG`` (no file, no argv; the run step exports it to the runner
alone). A refusal (401, 403, 404, 410, 400, 413) ends the script: the VM is not one jitr is
waiting for, or its config was handed already, and asking again would not change that. A warm
VM (its name is its warm name) gets 204 while no job claimed it: it asks again at once, until the
deadline (its boot, its maximum idle time and one held call); the 200 then names the runner it
became, which replaces ``JITR_RUNNER_NAME``, and starts the job's own lifetime watchdog
(``JITR_JOB_MAX_LIFETIME``): the job's lifetime counts from its config, not from the VM's boot.

The deadline counts from the script's start (bash's ``SECONDS``), not from the fetch's: a slow
install is part of the wait, so the VM gives up within the time the control plane gives it.
"""

from __future__ import annotations

from .startup import Fragment, ScriptContext, shell_quote

BROKER = "broker"
_FETCH = r"""
jitr_fetch_jit_config() {
  local deadline=$((JITR_BROKER_DEADLINE)) delay=1 proof answer status body name
  while :; do
    if proof="$(jitr_identity_proof)"; then
      answer="$(printf '{"runner_name":"%s","provider":"%s","proof":%s}' \
        "$JITR_RUNNER_NAME" "$JITR_BROKER_PROVIDER" "$proof" \
        | curl -sS --max-time 30 -H 'Content-Type: application/json' --data-binary @- \
          -w '\n%{http_code}' "$JITR_BROKER_URL")" || answer=$'\n000'
      status="${answer##*$'\n'}"
      body="${answer%$'\n'*}"
      case "$status" in
        200)
          ACTIONS_RUNNER_INPUT_JITCONFIG="$(printf '%s' "$body" \
            | sed -n 's/.*"jit_config": *"\([A-Za-z0-9+\/=]*\)".*/\1/p')"
          if [ -n "$ACTIONS_RUNNER_INPUT_JITCONFIG" ]; then
            name="$(printf '%s' "$body" | sed -n 's/.*"runner_name": *"\([a-z0-9-]*\)".*/\1/p')"
            export JITR_RUNNER_NAME="${name:-$JITR_RUNNER_NAME}"
            echo "jitr: JIT config received from the broker for runner $JITR_RUNNER_NAME"
            return 0
          fi
          echo "jitr: the broker's answer holds no JIT config; retrying" >&2
          ;;
        204)
          delay=1
          if [ "$SECONDS" -lt "$deadline" ]; then continue; fi
          ;;
        400 | 401 | 403 | 404 | 410 | 413)
          body="$(printf '%s' "$body" | tr -cd '[:print:]' | head -c 300)"
          echo "jitr: the broker refused this VM (HTTP $status): $body" >&2
          return 1
          ;;
        *) echo "jitr: the broker answered HTTP $status; retrying" >&2 ;;
      esac
    else
      echo "jitr: no identity proof yet; retrying" >&2
    fi
    if [ $((SECONDS + delay)) -ge "$deadline" ]; then
      echo "jitr: no JIT config from the broker within ${JITR_BROKER_DEADLINE} s" >&2
      return 1
    fi
    sleep "$delay"
    delay=$((delay * 2 > 16 ? 16 : delay * 2))
  done
}
ACTIONS_RUNNER_INPUT_JITCONFIG=""
jitr_fetch_jit_config
if [ -n "${JITR_JOB_MAX_LIFETIME:-}" ]; then
  ( unset ACTIONS_RUNNER_INPUT_JITCONFIG; sleep "$JITR_JOB_MAX_LIFETIME"
    echo "jitr: the job's maximum lifetime reached"; jitr_teardown ) &
fi
"""


def broker_prelude(context: ScriptContext) -> str:
    """The variables the fetch uses; the URL comes from validated settings, quoted anyway."""
    job_lifetime = int(context.job_max_lifetime_s)
    return "\n".join(
        [
            f"export JITR_BROKER_URL={shell_quote(context.broker_url)}",
            f"export JITR_BROKER_PROVIDER={shell_quote(context.provider)}",
            f"export JITR_BROKER_DEADLINE={int(context.broker_deadline_s)}",
            *([f"export JITR_JOB_MAX_LIFETIME={job_lifetime}"] if job_lifetime > 0 else []),
        ]
    )


def fetch_fragment(source: str, phase: str = "pre_run", order: int = 40) -> Fragment:
    """The fetch, run after the provider's ``jitr_identity_proof`` is defined."""
    return Fragment(phase, _FETCH.strip(), order=order, source=source)
