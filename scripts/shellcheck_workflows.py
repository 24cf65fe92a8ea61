#!/usr/bin/env python3
"""shellcheck every ``run:`` block of the GitHub workflows, as actionlint does.

The ``workflows`` nox session runs this only where actionlint itself cannot be had (see
docs/release.md, "Workflows"): each block is written to a script with the job's shell (``bash -e``
unless ``shell:`` says otherwise), every ``${{ ... }}`` expression replaced by underscores of the
same length so columns stay put, and shellcheck reports against the workflow's line numbers.

    python scripts/shellcheck_workflows.py .github/workflows/*.yml

Needs PyYAML and shellcheck.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)


def run_blocks(workflow: Path) -> list[tuple[str, str, int]]:
    """``(where, script, first line)`` for every ``run:`` step of every job."""
    text = workflow.read_text()
    document: dict[str, Any] = yaml.safe_load(text) or {}
    lines = text.splitlines()
    found = []
    for job_id, job in (document.get("jobs") or {}).items():
        defaults = ((job.get("defaults") or {}).get("run") or {}).get("shell")
        for index, step in enumerate(job.get("steps") or []):
            if "run" not in step:
                continue
            shell = step.get("shell") or defaults or "bash"
            if not shell.startswith("bash") and shell != "sh":
                continue
            script = EXPRESSION.sub(lambda m: "_" * len(m.group(0)), step["run"])
            first = next((n for n, line in enumerate(lines, 1) if step["run"].splitlines()[0] in line), 0)
            found.append((f"{workflow.name} job {job_id!r} step {step.get('name', index + 1)!r}", script, first))
    return found


def main(argv: list[str]) -> int:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        print("shellcheck is not installed", file=sys.stderr)
        return 2
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for workflow in map(Path, argv):
            for where, script, first in run_blocks(workflow):
                path = Path(tmp, "step.sh")
                path.write_text(f"#!/usr/bin/env bash\nset -e\n{script}\n")
                done = subprocess.run(
                    [shellcheck, "--shell=bash", "--format=gcc", str(path)], capture_output=True, text=True, check=False
                )
                for line in done.stdout.splitlines():
                    _, row, column, message = line.split(":", 3)
                    print(f"{workflow}:{first + int(row) - 3}:{column}: {message.strip()} ({where})")
                failed += done.returncode != 0
    print(f"shellcheck: {failed} run: block(s) with findings" if failed else "shellcheck: every run: block is clean")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
