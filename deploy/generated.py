"""The command line shared by the generators of files under docs/ (settings reference, results
schema): write the file, or with `--check` only say whether the committed one is stale."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path


def write_or_check(
    argv: Iterable[str] | None, *, description: str | None, output: Path, repo: Path, command: str,
    render: Callable[[], str],
) -> int:  # fmt: skip
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {output.name} is stale; write nothing")
    args = parser.parse_args(list(argv) if argv is not None else None)
    text = render()
    shown = output.relative_to(repo)
    if args.check:
        stale = not output.exists() or output.read_text() != text
        print(f"{shown} is {'stale: run `' + command + '`' if stale else 'up to date'}")
        return int(stale)
    output.write_text(text)
    print(f"wrote {shown}")
    return 0
