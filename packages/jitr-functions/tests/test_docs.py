"""The shell blocks the docs mark runnable run, exactly as written, and succeed.

A reader does not see the markers, HTML comments on the line right above a fenced block:

- ``<!-- runnable -->`` above a ``sh``/``bash`` block: it runs with ``bash -e -o pipefail`` in a
  fresh directory, with the ``jitr`` and ``python`` of this environment first on ``PATH``, a
  ``HOME`` of its own, no cloud credentials and an HTTP proxy that refuses every connection
  beyond the loopback interface. It must exit 0.
- ``<!-- runnable: needs TOOL ... -->``: the same, skipped when a tool is missing (a failure
  under ``JITR_REQUIRE_TOOLS=1``, as CI installs every tool).
- ``<!-- runnable: file PATH -->`` above any block: its text is written to ``PATH`` before each
  runnable block that follows in the same document (a later block of the same name replaces it).

The docs are found from this file (``packages/jitr-functions/tests`` → ``../../../docs``), so
the package installed on its own, from an sdist, skips them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from jitr_core.testing.environment import deadline_s, require_tool

REPO = (Path(__file__).resolve().parent / ".." / ".." / "..").resolve()
DOCS = REPO / "docs"
MIN_RUNNABLE = 9  # the blocks marked today: fewer means a marker was lost, and the test would prove less
TIMEOUT_S = 120.0  # per block, times JITR_TEST_TIMEOUT_SCALE
SHELLS = frozenset({"sh", "bash", "shell"})
MARKER = re.compile(r"^\s*<!--\s*runnable\s*(?::\s*(?P<option>.*?))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")

if not DOCS.is_dir():
    pytest.skip(f"no docs/ at {DOCS}: the package is installed without its repository", allow_module_level=True)


@dataclass(frozen=True, slots=True)
class Runnable:
    """One shell block to run, with the files to write before it."""

    where: str  # "docs/name.md:LINE" of the opening fence
    script: str
    files: tuple[tuple[str, str], ...]
    needs: tuple[str, ...]


def _block(lines: list[str], start: int) -> tuple[str, str, int]:
    """Language, text (less the fence's indent) and closing line index of the block opened at ``start``."""
    opening = FENCE.match(lines[start])
    assert opening is not None
    indent, fence = len(opening["indent"]), opening["fence"]
    for end in range(start + 1, len(lines)):
        stripped = lines[end].strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
            body = [line[min(indent, len(line) - len(line.lstrip(" "))) :] for line in lines[start + 1 : end]]
            return opening["info"].split()[0] if opening["info"].split() else "", "\n".join(body) + "\n", end
    raise ValueError(f"line {start + 1}: the block opened here is never closed")


def parse(path: Path) -> tuple[list[Runnable], list[str]]:
    """The runnable blocks of one Markdown file, and what is wrong with its markers."""
    name = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    lines = path.read_text(encoding="utf-8").splitlines()
    runnables: list[Runnable] = []
    problems: list[str] = []
    files: dict[str, str] = {}
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        if marker is None and not FENCE.match(lines[i]):
            i += 1
            continue
        fence_at = i + 1 if marker else i
        if fence_at >= len(lines) or not FENCE.match(lines[fence_at]):
            problems.append(f"{name}:{i + 1}: a runnable marker must be right above a fenced block")
            i += 1
            continue
        try:
            language, text, end = _block(lines, fence_at)
        except ValueError as exc:
            problems.append(f"{name}:{exc}")
            break
        if marker is not None:
            where = f"{name}:{fence_at + 1}"
            kind, _, argument = (marker["option"] or "").partition(" ")
            if kind == "file":
                target = PurePosixPath(argument.strip())
                if not argument.strip() or target.is_absolute() or ".." in target.parts:
                    problems.append(f"{where}: 'file' needs a relative path inside the directory, found {argument!r}")
                else:
                    files[str(target)] = text
            elif kind in ("", "needs") and language in SHELLS:
                runnables.append(Runnable(where, text, tuple(files.items()), tuple(argument.split())))
            elif kind in ("", "needs"):
                problems.append(f"{where}: only {sorted(SHELLS)} blocks can run, found {language or 'no language'!r}")
            else:
                problems.append(f"{where}: unknown marker option {kind!r} (runnable, runnable: file, runnable: needs)")
        i = end + 1
    return runnables, problems


def _collect() -> tuple[list[Runnable], list[str]]:
    runnables: list[Runnable] = []
    problems: list[str] = []
    for path in [*sorted(DOCS.glob("*.md")), REPO / "README.md"]:
        if path.is_file():
            found, wrong = parse(path)
            runnables += found
            problems += wrong
    return runnables, problems


RUNNABLES, PROBLEMS = _collect()


def test_the_markers_are_well_formed() -> None:
    assert PROBLEMS == []


def test_enough_blocks_are_marked_runnable() -> None:
    assert len(RUNNABLES) >= MIN_RUNNABLE, [r.where for r in RUNNABLES]


def test_the_parser_reads_files_indented_blocks_and_misplaced_markers(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "1. Write it:\n\n   <!-- runnable: file conf/a.toml -->\n   ```toml\n   x = 1\n     y = 2\n   ```\n\n"
        "````md\n<!-- runnable -->\n```sh\nnot run: inside another block\n```\n````\n\n"
        "<!-- runnable: needs jq -->\n```sh\njq . conf/a.toml\n```\n\n"
        "<!-- runnable -->\n\n```sh\ntoo far from its marker\n```\n"
        "<!-- runnable -->\n```python\nprint()\n```\n"
        "<!-- runnable: file ../escape -->\n```\nx\n```\n"
    )
    runnables, problems = parse(doc)
    assert runnables == [Runnable("doc.md:17", "jq . conf/a.toml\n", (("conf/a.toml", "x = 1\n  y = 2\n"),), ("jq",))]
    assert [problem.split(": ", 1)[0] for problem in problems] == ["doc.md:21", "doc.md:27", "doc.md:31"]


def _environment(home: Path) -> dict[str, str]:
    """What a reader's shell would have, minus anything that reaches beyond this machine."""
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    if "JITR_TEST_TIMEOUT_SCALE" in os.environ:
        env["JITR_TEST_TIMEOUT_SCALE"] = os.environ["JITR_TEST_TIMEOUT_SCALE"]
    return env


@pytest.mark.parametrize("block", RUNNABLES, ids=[r.where for r in RUNNABLES])
def test_the_block_runs(block: Runnable, tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    home.mkdir()
    work.mkdir()
    env = _environment(home)
    for tool in block.needs:
        require_tool(tool)
    for relative, text in block.files:
        target = work / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    log = tmp_path / "output.log"
    with log.open("w") as output:  # a file, not a pipe: a background process left behind cannot hold it open
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", block.script],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status: int | str = process.wait(timeout=deadline_s(TIMEOUT_S))
        except subprocess.TimeoutExpired:
            status = f"no exit after {deadline_s(TIMEOUT_S):g} s"
        finally:
            try:  # whatever the block started and left running: its session is its own
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    if status != 0:
        pytest.fail(
            f"{block.where}: {status if isinstance(status, str) else f'exit status {status}'}\n"
            f"--- block ---\n{block.script}--- output ---\n{log.read_text(errors='replace')}",
            pytrace=False,
        )
