"""`python -m deploy.settings_reference`: writes docs/settings.md from the services' Settings classes.

Every `BaseSettings` class in a `services/**/settings.py` module becomes one section: each
environment variable with its type, allowed range, default and description. Secrets (fields
declared with `repr=False`) never show a default. A few variables are read by the runners
(`make up`, docker-compose) rather than by a Settings class; they are listed in
`RUNNER_VARIABLES`. `tests/unit/deploy/test_settings_reference.py` fails when the file is stale.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from deploy.generated import write_or_check

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "settings.md"
COMMAND = "python -m deploy.settings_reference"
COMMON_MODULE = "services/common/settings.py"
SECRET_DEFAULT = "none: required outside dev"
TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


@dataclass(frozen=True)
class RunnerVariable:
    name: str
    default: str
    read_by: str
    description: str


RUNNER_VARIABLES = (
    RunnerVariable("ASSAY_REDIS_PORT", "6379", "`make up`",
                   "port of the Redis `make up` starts; with `ASSAY_REDIS_URL` set none is started"),
    RunnerVariable("ASSAY_BROKER_PORT", "9092", "`make up`",
                   "port of the Tansu broker `make up` starts; with `ASSAY_KAFKA_BOOTSTRAP` set none is started"),
    RunnerVariable("ASSAY_METRICS_JOB_EVERY", "300", "`make up`", "seconds between runs of the Spark job"),
    RunnerVariable("ASSAY_DEMO", "1", "`make up`", "`0` skips seeding the demo"),
    RunnerVariable("ASSAY_METRICS_INTERVAL_SECONDS", "900", "docker-compose",
                   "seconds between runs of the Spark job (`metrics-scheduler`)"),
    RunnerVariable("ASSAY_IMAGE", "assay:latest", "docker-compose", "the image every Assay service runs"),
    RunnerVariable("ASSAY_EXPOSURE_WORKERS", "1", "docker-compose",
                   "worker processes per exposure replica (its `ASSAY_WORKERS`)"),
)  # fmt: skip


@dataclass(frozen=True)
class Section:
    path: str
    settings: type[BaseSettings]


def settings_modules(repo: Path = REPO) -> list[str]:
    """Every services/**/settings.py, the common one first."""
    paths = sorted(p.relative_to(repo).as_posix() for p in (repo / "services").rglob("settings.py"))
    return sorted(paths, key=lambda path: path != COMMON_MODULE)


def sections(repo: Path = REPO) -> Iterator[Section]:
    for path in settings_modules(repo):
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseSettings) and value.__module__ == module.__name__:
                yield Section(path, value)


def variable_name(settings: type[BaseSettings], name: str, field: FieldInfo) -> str:
    if isinstance(field.validation_alias, str):
        return field.validation_alias
    return f"{settings.model_config.get('env_prefix', '')}{name}".upper()


def own_fields(settings: type[BaseSettings]) -> list[str]:
    """Fields declared (or re-declared) in this class's own body, in declaration order."""
    declared = inspect.get_annotations(settings)
    return [name for name in settings.model_fields if name in declared]


def type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "None"
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " | ".join(type_name(arg) for arg in args)
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"),
          (annotated_types.Le, "le", "<="), (annotated_types.Lt, "lt", "<"))  # fmt: skip


def bounds(field: FieldInfo) -> str:
    found = [f"{symbol} {getattr(item, attribute):_}".replace("_", ",")
             for item in field.metadata for kind, attribute, symbol in BOUNDS if isinstance(item, kind)]  # fmt: skip
    return f" ({', '.join(found)})" if found else ""


def byte_size(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f" ({value // size} {unit})"
    return ""


def default_text(name: str, field: FieldInfo) -> str:
    if field.repr is False:
        return SECRET_DEFAULT
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        shown = value.relative_to(REPO) if value.is_absolute() and value.is_relative_to(REPO) else value
        return f"`{shown.as_posix()}`"
    if isinstance(value, int) and name.endswith("_bytes"):
        return f"`{value}`{byte_size(value)}"
    return f"`{value}`"


def cell(text: str) -> str:
    """A table cell: pipes escaped, and a `<` that could open a tag outside code spans (`<ASSAY_DATA_DIR>`)."""
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    return "`".join(part if index % 2 else TAG_START.sub("&lt;", part) for index, part in enumerate(parts))


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]


def field_rows(settings: type[BaseSettings], base: type[BaseSettings] | None) -> list[list[str]]:
    rows = []
    for name in own_fields(settings) if base is not None else list(settings.model_fields):
        field = settings.model_fields[name]
        description = field.description or ""
        if base is not None and name in base.model_fields:
            description += f" (other services: {default_text(name, base.model_fields[name])})"
        rows.append([f"`{variable_name(settings, name, field)}`", type_name(field.annotation) + bounds(field),
                     default_text(name, field), description])  # fmt: skip
    return rows


def docstring(settings: type[BaseSettings]) -> str:
    return " ".join((settings.__doc__ or "").split())


def render(repo: Path = REPO) -> str:
    found = list(sections(repo))
    common = next((s.settings for s in found if s.path == COMMON_MODULE), None)
    lines = [
        "# Settings reference",
        "",
        f"<!-- Generated by `{COMMAND}` from the Settings classes: edit those, then run it. -->",
        "",
        "Every setting is an environment variable, read and validated when a process starts: a value",
        "out of range stops the process with a message naming the variable. Secrets have no default",
        "and none is shown here. `make up` sets `ASSAY_ENV=dev` and `ASSAY_DATA_DIR=.assay`.",
    ]
    header = ("variable", "type", "default", "meaning")
    for section in found:
        own = section.settings is common
        title = "Every service" if own else f"`{section.path.removesuffix('/settings.py').replace('/', '.')}`"
        intro = f"`{section.settings.__name__}` in `{section.path}`. {docstring(section.settings)}"
        lines += ["", f"## {title}", "", intro]
        if not own and common is not None and issubclass(section.settings, common):
            lines[-1] += ' It also reads every setting under "Every service".'
        lines += ["", *table(header, field_rows(section.settings, None if own else common))]
    runner_rows = ([f"`{v.name}`", f"`{v.default}`", v.read_by, v.description] for v in RUNNER_VARIABLES)
    lines += ["", "## Read by the runners", "",
              "These are read by the `make up` runner (`deploy/`) or by docker-compose, not by a service.", "",
              *table(("variable", "default", "read by", "meaning"), runner_rows)]  # fmt: skip
    return "\n".join(lines) + "\n"


def documented_variables(repo: Path = REPO) -> set[str]:
    names = {v.name for v in RUNNER_VARIABLES}
    for section in sections(repo):
        fields = section.settings.model_fields
        names |= {variable_name(section.settings, name, field) for name, field in fields.items()}
    return names


def main(argv: Iterable[str] | None = None) -> int:
    return write_or_check(argv, description=__doc__, output=OUTPUT, repo=REPO, command=COMMAND, render=render)


if __name__ == "__main__":
    sys.exit(main())
