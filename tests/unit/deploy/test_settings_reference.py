"""docs/settings.md is generated from the Settings classes; it fails here when it is stale,
when a setting has no description, or when a runner reads a variable the reference misses."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy import settings_reference
from deploy.settings_reference import COMMAND, OUTPUT, REPO, SECRET_DEFAULT, render, sections

# Files where the runners read `ASSAY_*` variables themselves (not through a Settings class).
RUNNER_FILES = ("deploy/**/*.py", "deploy/**/Dockerfile*", "docker-compose*.yml", ".env.example")
VARIABLE = re.compile(r"\bASSAY_[A-Z0-9_]*[A-Z0-9]\b")


def test_docs_settings_md_is_up_to_date() -> None:
    assert OUTPUT.exists(), f"docs/settings.md is missing: run `{COMMAND}`"
    assert OUTPUT.read_text() == render(), f"docs/settings.md is stale: run `{COMMAND}` and commit the result"


def test_every_settings_module_is_found() -> None:
    found = {section.settings.__name__ for section in sections()}
    expected = {"ServiceSettings", "AssignmentSettings", "ExposureSettings", "MetricsSettings", "ScorecardSettings"}
    assert expected <= found


def test_every_setting_has_a_description() -> None:
    missing = [f"{section.path}: {name}" for section in sections()
               for name, field in section.settings.model_fields.items() if not field.description]  # fmt: skip
    assert not missing, f"add Field(description=...) to: {', '.join(missing)}"


def test_secrets_show_no_default() -> None:
    text = render()
    for name in ("ASSAY_ADMIN_KEYS", "ASSAY_SDK_KEYS"):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}`"))
        assert SECRET_DEFAULT in row


def test_a_new_field_appears_with_its_default_and_range() -> None:
    class ExampleSettings(BaseSettings):
        """An example."""

        model_config = SettingsConfigDict(env_prefix="ASSAY_")
        widget_count: int = Field(7, ge=1, le=10_000, description="widgets made at start-up")
        token: str = Field("not-shown", repr=False, description="a secret")

    rows = settings_reference.field_rows(ExampleSettings, None)
    assert rows == [
        ["`ASSAY_WIDGET_COUNT`", "int (>= 1, <= 10,000)", "`7`", "widgets made at start-up"],
        ["`ASSAY_TOKEN`", "str", SECRET_DEFAULT, "a secret"],
    ]


def test_html_like_text_outside_code_is_escaped() -> None:
    assert settings_reference.cell("unset: <ASSAY_DATA_DIR>/x, or `<ASSAY_DATA_DIR>/y` | z <= 3") == (
        "unset: &lt;ASSAY_DATA_DIR>/x, or `<ASSAY_DATA_DIR>/y` \\| z <= 3"
    )


def runner_variables(repo: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for pattern in RUNNER_FILES:
        for path in repo.glob(pattern):
            if path == Path(settings_reference.__file__):
                continue
            for name in VARIABLE.findall(path.read_text(errors="replace")):
                found.setdefault(name, set()).add(path.relative_to(repo).as_posix())
    return found


def test_every_variable_the_runners_read_is_documented() -> None:
    documented = settings_reference.documented_variables()
    missing = {name: sorted(paths) for name, paths in runner_variables(REPO).items() if name not in documented}
    assert not missing, (
        f"variables read outside the Settings classes are not in docs/settings.md: {missing}; "
        f"add them to RUNNER_VARIABLES in deploy/settings_reference.py (or make them settings), then run `{COMMAND}`"
    )


def test_every_runner_variable_listed_is_still_read() -> None:
    read = runner_variables(REPO)
    stale = [v.name for v in settings_reference.RUNNER_VARIABLES if v.name not in read]
    assert not stale, f"RUNNER_VARIABLES lists variables nothing reads any more: {stale}; remove them, run `{COMMAND}`"
