"""Point Docker on each runner VM at a registry mirror: a pre-run step of the startup script.

A pool opts in with ``options.docker_mirror = "https://mirror.example.com"``. On the VM the step
creates ``/etc/docker``, merges the mirror into an existing ``daemon.json`` (keeping every other
setting, and the mirrors already listed), restarts Docker, and skips cleanly when the image has
no Docker. A ``daemon.json`` that is not valid JSON is left alone with a warning.
"""

from __future__ import annotations

import re

from jitr_core.errors import JitrError
from jitr_core.hookspecs import hookimpl
from jitr_core.startup import Fragment, ScriptContext, shell_b64

SOURCE = "docker-mirror"
OPTION = "docker_mirror"
_MIRROR = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")

_MERGE = """\
import json, os, sys
path, mirror = sys.argv[1], sys.argv[2]
try:
    with open(path) as handle:
        config = json.load(handle)
except FileNotFoundError:
    config = {}
if not isinstance(config, dict):
    sys.exit(path + " is not a JSON object")
mirrors = config.setdefault("registry-mirrors", [])
if mirror not in mirrors:
    mirrors.append(mirror)
with open(path + ".jitr", "w") as handle:
    json.dump(config, handle, indent=2)
os.replace(path + ".jitr", path)
"""

_STEP = """\
# Docker registry mirror
if ! command -v docker >/dev/null 2>&1; then
  echo "jitr: no Docker on this image; registry mirror skipped"
elif ! command -v python3 >/dev/null 2>&1; then
  echo "jitr: no python3 to edit /etc/docker/daemon.json; registry mirror skipped" >&2
else
  mkdir -p /etc/docker
  if python3 -c %(merge)s /etc/docker/daemon.json %(mirror)s; then
    systemctl restart docker
    echo "jitr: Docker uses the registry mirror"
  else
    echo "jitr: /etc/docker/daemon.json left unchanged; registry mirror skipped" >&2
  fi
fi
"""


def mirror_of(context: ScriptContext) -> str | None:
    """The pool's mirror URL, validated; None when the pool sets none."""
    value = context.pool.options.get(OPTION)
    if not value:
        return None
    if not isinstance(value, str) or not _MIRROR.match(value):
        raise JitrError(f"pools[{context.pool.name}].options.{OPTION} must be an http(s) URL, found {value!r}")
    return value


@hookimpl
def jitr_render_startup_script(context: ScriptContext) -> Fragment | None:
    """A ``pre_run`` step (after the runner install, before the runner starts) on cloud VMs."""
    if context.provider == "embedded":
        return None
    mirror = mirror_of(context)
    if mirror is None:
        return None
    body = _STEP % {"merge": shell_b64(_MERGE), "mirror": shell_b64(mirror)}
    return Fragment("pre_run", body, order=50, source=SOURCE)
