"""Startup-script fragments for local-process VMs.

The run step executes ``[embedded] runner_command``, which the launcher passes to the process as
``JITR_RUNNER_COMMAND`` (machine configuration, like the runner installed in a cloud image), with
the JIT config exported as ``JITR_JITCONFIG`` and as ``ACTIONS_RUNNER_INPUT_JITCONFIG`` (which
the runner and the simulator's agent read when no ``--jitconfig`` is given, keeping it out of
the process list). The JIT config enters the script base64-encoded only; runner names and labels
do not enter it at all (the launcher puts the name in the environment). In a broker-mode pool the
script holds no secret: it pulls the config from the broker with the per-VM token the launcher
passes as ``JITR_VM_TOKEN`` (and takes out of the runner's environment).
"""

from __future__ import annotations

from ..broker_script import BROKER, broker_prelude, fetch_fragment
from ..startup import Fragment, ScriptContext, shell_b64

SOURCE = "embedded"

_PRELUDE = "\n".join(
    ["umask 077", 'cd "$JITR_VM_DIR"', 'echo "jitr: local VM for runner $JITR_RUNNER_NAME in $JITR_VM_DIR"']
)

_RUN = """JITR_JITCONFIG={jit_config}
ACTIONS_RUNNER_INPUT_JITCONFIG="$JITR_JITCONFIG"
export JITR_JITCONFIG ACTIONS_RUNNER_INPUT_JITCONFIG
bash -c "${{JITR_RUNNER_COMMAND:?is set by the embedded launcher}}"
"""


# The token is the launcher's (URL-safe characters); checked so that it can go into JSON as is.
_PROOF = """jitr_identity_proof() {
  case "${JITR_VM_TOKEN:-}" in
    "" | *[!A-Za-z0-9._~-]*) echo "jitr: JITR_VM_TOKEN is missing or malformed" >&2; return 1 ;;
  esac
  printf '{"token":"%s"}' "$JITR_VM_TOKEN"
}"""


def fragments(context: ScriptContext) -> list[Fragment]:
    if context.handoff == BROKER:
        prelude = "\n".join([_PRELUDE, broker_prelude(context), _PROOF])
        run = "unset JITR_VM_TOKEN\n" + _RUN.format(jit_config='"$ACTIONS_RUNNER_INPUT_JITCONFIG"')
        return [
            Fragment("prelude", prelude, order=10, source=SOURCE),
            fetch_fragment(SOURCE),
            Fragment("run", run, order=50, source=SOURCE),
        ]
    run = _RUN.format(jit_config=shell_b64(context.jit_config.reveal()))
    return [Fragment("prelude", _PRELUDE, order=10, source=SOURCE), Fragment("run", run, order=50, source=SOURCE)]
