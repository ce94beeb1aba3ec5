"""What every benchmark report shares: machine facts, the code measured, and rewriting one
marked section of docs/benchmarks.md while leaving the rest of the file alone."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
DOCS_HEADER = "# Benchmarks\n\nEvery figure is measured beside its peers in the same run.\n"


def first_line(command: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return f"{os.cpu_count()} logical cores, {cpu_model()}; {platform.platform()}"


@dataclass(frozen=True)
class RunStart:
    """What the run measured: the code at its start, and how busy the box was then."""

    commit: str
    load_average: float


def run_start() -> RunStart:
    repo = DOCS_PATH.parent.parent
    dirty = subprocess.run(["git", "diff-index", "--quiet", "HEAD", "--"], cwd=repo, capture_output=True)
    commit = first_line(["git", "rev-parse", "--short", "HEAD"], repo)
    return RunStart(commit + (" + uncommitted changes" if dirty.returncode else ""), os.getloadavg()[0])


def rewrite_section(name: str, section: str, path: Path = DOCS_PATH) -> None:
    """Replace the text between the `bench:<name>` markers (appending them if absent)."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else DOCS_HEADER
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = f"{text.rstrip()}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
