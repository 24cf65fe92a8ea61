"""Core's startup-script fragments for real VMs: the watchdog, the runner install and the run.

Registered as the built-in plugin ``core-script``. Cloud plugins add the provider-specific
pieces (metadata, self-deletion); the embedded local-process provider supplies its own run step,
so these fragments skip it. The JIT config reaches the runner through the environment
(``ACTIONS_RUNNER_INPUT_JITCONFIG``), never through argv where ``ps`` would show it. A runner
tarball is run only when its SHA-256 matches the pin (:mod:`jitr_core.runner_checksums`); an
image whose marker names the same runner version downloads nothing. In a broker-mode pool the
script carries no config: it pulls it from the broker (:mod:`jitr_core.broker_script`) with the
proof the cloud plugin's ``jitr_identity_proof`` prints.
"""

from __future__ import annotations

import re

from .broker_script import BROKER, broker_prelude, fetch_fragment
from .errors import JitrError
from .hookspecs import hookimpl
from .runner_checksums import pinned_sha256
from .startup import Fragment, ScriptContext, shell_b64, shell_quote

RUNNER_USER = "runner"
MARKER = "/opt/jitr/prebaked-runner-version"
_BASE64 = re.compile(r"^[A-Za-z0-9+/=]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

_INSTALL = r"""
jitr_runner_url="https://github.com/actions/runner/releases/download/v${JITR_RUNNER_VERSION}/actions-runner-linux-${JITR_RUNNER_ARCH}-${JITR_RUNNER_VERSION}.tar.gz"
jitr_prebaked=""
if [ -f __MARKER__ ]; then jitr_prebaked="$(cat __MARKER__)"; fi
if [ -z "$jitr_prebaked" ]; then
  echo "jitr: stock image, installing dependencies"
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || { sleep 5; apt-get update -qq; }  # a failure here must end the boot, not skip the install
    apt-get install -y -qq curl jq git tar sudo libicu-dev >/dev/null
  elif command -v dnf >/dev/null 2>&1; then
    # stock Amazon Linux 2023 has curl-minimal, which conflicts with curl: dnf may replace it
    dnf install -y -q --allowerasing curl jq git tar sudo libicu >/dev/null
  fi
  id -u __USER__ >/dev/null 2>&1 || useradd --create-home --shell /bin/bash __USER__
fi
if [ "$jitr_prebaked" != "$JITR_RUNNER_VERSION" ]; then
  echo "jitr: fetching runner ${JITR_RUNNER_VERSION} (image has '${jitr_prebaked:-none}')"
  jitr_tarball="$(mktemp)"
  curl -fsSL --retry 5 --retry-delay 2 -o "$jitr_tarball" "$jitr_runner_url"
  if ! printf '%s  %s\n' "$JITR_RUNNER_SHA256" "$jitr_tarball" | sha256sum -c --status; then
    echo "jitr: the runner download does not match its pinned SHA-256 ${JITR_RUNNER_SHA256}; not running it" >&2
    rm -f "$jitr_tarball"
    exit 1
  fi
  rm -rf "$JITR_RUNNER_DIR" && mkdir -p "$JITR_RUNNER_DIR"
  tar -xzf "$jitr_tarball" -C "$JITR_RUNNER_DIR"
  rm -f "$jitr_tarball"
  if [ -x "$JITR_RUNNER_DIR/bin/installdependencies.sh" ] && [ -z "$jitr_prebaked" ]; then
    "$JITR_RUNNER_DIR/bin/installdependencies.sh" >/dev/null || true
  fi
fi
chown -R __USER__: "$JITR_RUNNER_DIR"
"""

_RUN = r"""
echo "jitr: starting runner $JITR_RUNNER_NAME"
export ACTIONS_RUNNER_INPUT_JITCONFIG
cd "$JITR_RUNNER_DIR"
set +e
sudo --preserve-env=ACTIONS_RUNNER_INPUT_JITCONFIG -u __USER__ -- ./run.sh
jitr_exit=$?
set -e
unset ACTIONS_RUNNER_INPUT_JITCONFIG
echo "jitr: runner exited with status $jitr_exit"
"""


# The exit report: the runner agent starts a Worker, which writes _diag/Worker_*.log, for each job
# it runs. Computed in the teardown, so the watchdog and a failed install report too; each cloud's
# teardown publishes JITR_RUNNER_EXIT where the control plane reads it (a tag, a label).
_EXIT_REPORT = r"""
if compgen -G "${JITR_RUNNER_DIR}/_diag/Worker_*.log" >/dev/null; then
  JITR_RUNNER_EXIT=job
else
  JITR_RUNNER_EXIT=no-job
fi
export JITR_RUNNER_EXIT
echo "jitr: runner exit report: ${JITR_RUNNER_EXIT}"
"""


@hookimpl(trylast=True)
def jitr_render_startup_script(context: ScriptContext) -> list[Fragment] | None:
    if context.provider == "embedded":
        return None
    brokered = context.handoff == BROKER
    jit = context.jit_config.reveal()
    if not brokered and not _BASE64.match(jit):
        raise JitrError("the JIT config is not base64; refusing to place it in a script")
    runner_dir = "/opt/actions-runner"
    sha256 = context.runner_sha256 or pinned_sha256(context.runner_version, context.pool.arch)
    if not _SHA256.match(sha256):
        raise JitrError(f"a runner SHA-256 is 64 lowercase hex digits, found {sha256!r}")
    prelude = "\n".join(
        [
            "exec > >(tee -a /var/log/jitr-startup.log) 2>&1",
            f"export JITR_RUNNER_NAME={shell_quote(context.runner_name)}",
            f"export JITR_POOL={shell_quote(context.pool.name)}",
            f"export JITR_RUNNER_VERSION={shell_quote(context.runner_version)}",
            f"export JITR_RUNNER_ARCH={shell_quote(context.pool.arch)}",
            f"export JITR_RUNNER_DIR={shell_quote(runner_dir)}",
            f"export JITR_RUNNER_SHA256={sha256}",
            f"export JITR_MAX_LIFETIME={int(context.max_lifetime_s)}",
            broker_prelude(context) if brokered else f"ACTIONS_RUNNER_INPUT_JITCONFIG={shell_b64(jit)}",
        ]
    )
    watchdog = '( sleep "$JITR_MAX_LIFETIME"; echo "jitr: maximum lifetime reached"; jitr_teardown ) &'
    install = _INSTALL.replace("__MARKER__", shell_quote(MARKER)).replace("__USER__", RUNNER_USER)
    return [
        Fragment("prelude", prelude, order=10, source="core"),
        Fragment("install", watchdog, order=0, source="core"),
        Fragment("install", install.strip(), order=50, source="core"),
        *([fetch_fragment("core")] if brokered else []),
        Fragment("run", _RUN.replace("__USER__", RUNNER_USER).strip(), order=50, source="core"),
        Fragment("teardown", _EXIT_REPORT.strip(), order=10, source="core"),
    ]
