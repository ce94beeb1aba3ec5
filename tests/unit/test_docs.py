"""The README and docs/ point only at what a clone has: every relative link resolves to a file
inside the repository, and every repository path they name in code spans exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`((?:sdk|services|deploy|tests|bench|docs)/[A-Za-z0-9_./-]+)`")


def page_id(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve_inside_the_repository(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        resolved = (page.parent / target.split("#", 1)[0]).resolve()
        if not resolved.is_relative_to(REPO) or not resolved.exists():
            broken.append(target)
    assert not broken, f"{page_id(page)} links to what a clone does not have: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_repository_paths_exist(page: Path) -> None:
    missing = [path for path in CODE_PATH.findall(page.read_text()) if not (REPO / path.rstrip("/")).exists()]
    assert not missing, f"{page_id(page)} names paths that do not exist: {missing}"
