"""The governed metric catalog: YAML definitions validated on load, a hash of each definition,
and the KPI tree the `parent` links draw (docs/metrics.md "The metric catalog").

    metrics:
      - {name: weekly_revenue, type: mean, event: purchase, value: value, owner: finance,
         north_star: true, status: certified, format: currency}
      - {name: conversion, type: proportion, event: purchase, window_hours: 168, owner: growth,
         parent: weekly_revenue, format: percent}
      - {name: revenue_per_session, type: ratio, owner: growth,
         numerator: {event: purchase, value: value}, denominator: {event: session_start}}

`value: value` sums the events' `value` field; without it a metric counts events. A unit's
CUPED covariate is the same metric over the `cuped_lookback_days` (default 14; 0 turns it
off) before its first exposure; for ratio metrics it is the numerator over that period.

Every service reads the catalog (the job computes it, the assignment service checks experiment
writes against it, the scorecard explains results with it), so it lives here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

DEFAULT_CATALOG = Path(__file__).resolve().parent / "catalog.yaml"
MetricName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MetricType = Literal["proportion", "mean", "ratio", "quantile"]
MetricStatus = Literal["draft", "certified", "deprecated"]
MetricFormat = Literal["number", "percent", "currency", "duration_ms"]
METRIC_TYPES: tuple[str, ...] = ("proportion", "mean", "ratio", "quantile")
MAX_WINDOW_HOURS = 24 * 366
MAX_LOOKBACK_DAYS = 366
# Fields that change the numbers; owner, description, governance and higher_is_better do not,
# so they stay out of the hash (results documents carry it: it must not move when they change).
DEFINITION_FIELDS = ("name", "type", "event", "value", "numerator", "denominator", "window_hours",
                     "cuped_lookback_days", "quantile")  # fmt: skip


class CatalogError(ValueError):
    """The catalog file cannot be used; the message says where and why."""


class EventMeasure(BaseModel):
    """Per unit: the sum of `value` over matching events, or their count when `value` is absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: EventName
    value: Literal["value"] | None = None


class MetricDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: MetricName
    type: MetricType
    event: EventName | None = None
    value: Literal["value"] | None = None
    numerator: EventMeasure | None = None
    denominator: EventMeasure | None = None
    owner: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    contact: Annotated[str, StringConstraints(max_length=200)] | None = None
    description: str | None = None
    status: MetricStatus = "draft"
    tags: tuple[Annotated[str, StringConstraints(min_length=1, max_length=40)], ...] = ()
    format: MetricFormat = "number"
    parent: MetricName | None = None  # the metric this one drives in the KPI tree
    north_star: bool = False  # a root of the KPI tree
    higher_is_better: bool = True  # for the scorecard's guardrail tests; not part of the numbers
    window_hours: Annotated[float, Field(gt=0, le=MAX_WINDOW_HOURS)] | None = None
    cuped_lookback_days: Annotated[int, Field(ge=0, le=MAX_LOOKBACK_DAYS)] = 14
    # quantile metrics: the probability p of the p-quantile of event values (0.9 for p90)
    quantile: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_type(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "type" in data and data["type"] not in METRIC_TYPES:
            raise ValueError(f"unknown type {data['type']!r}; use one of {', '.join(METRIC_TYPES)}")
        owner = data.get("owner")
        if owner is None or (isinstance(owner, str) and not owner.strip()):
            raise ValueError("needs an 'owner': the team that answers for its definition (e.g. owner: growth)")
        parent = data.get("parent")
        if isinstance(parent, list):
            raise ValueError(
                f"lists {len(parent)} parents ({', '.join(map(str, parent))}); a metric drives exactly one "
                "metric in the KPI tree: keep the one it moves most directly"
            )
        return data

    @model_validator(mode="after")
    def _fields_fit_type(self) -> Self:
        if self.type == "ratio":
            if self.numerator is None or self.denominator is None:
                raise ValueError("a ratio metric needs 'numerator' and 'denominator' ({event: ..., value: ...})")
            if self.event is not None or self.value is not None:
                raise ValueError("a ratio metric takes 'numerator' and 'denominator', not 'event'/'value'")
            return self
        if self.event is None:
            raise ValueError(f"a {self.type} metric needs 'event'")
        if self.numerator is not None or self.denominator is not None:
            raise ValueError(f"'numerator'/'denominator' belong to ratio metrics, not {self.type}")
        if self.type == "proportion" and self.value is not None:
            raise ValueError("a proportion metric counts units with a matching event; it takes no 'value'")
        if self.type == "quantile":
            if self.quantile is None or self.value is None:
                raise ValueError(
                    "a quantile metric needs 'quantile' (e.g. 0.9 for p90) and 'value: value' "
                    "(the quantile is over the events' values)"
                )
        elif self.quantile is not None:
            raise ValueError(f"'quantile' belongs to quantile metrics, not {self.type}")
        return self

    @model_validator(mode="after")
    def _root_has_no_parent(self) -> Self:
        if self.north_star and self.parent is not None:
            raise ValueError(
                f"is a North Star (a root of the KPI tree) but names parent {self.parent!r}; "
                "remove 'parent' or 'north_star'"
            )
        if self.parent == self.name:
            raise ValueError("names itself as its parent; a metric cannot drive itself")
        return self

    @property
    def numerator_measure(self) -> EventMeasure:
        if self.numerator is not None:
            return self.numerator
        assert self.event is not None  # guaranteed by _fields_fit_type
        return EventMeasure(event=self.event, value=self.value)

    @property
    def event_names(self) -> set[str]:
        names = {self.numerator_measure.event}
        if self.denominator is not None:
            names.add(self.denominator.event)
        return names

    def definition(self) -> dict[str, Any]:
        return self.model_dump(mode="json", include=set(DEFINITION_FIELDS), exclude_none=True)

    @property
    def definition_hash(self) -> str:
        canonical = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: Annotated[list[MetricDefinition], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [metric.name for metric in self.metrics]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(repeated)}")
        return self

    @model_validator(mode="after")
    def _tree_is_sound(self) -> Self:
        by_name = {metric.name: metric for metric in self.metrics}
        for metric in self.metrics:
            if metric.parent is None:
                continue
            parent = by_name.get(metric.parent)
            if parent is None:
                raise ValueError(
                    f"metric {metric.name!r} names parent {metric.parent!r}, which the catalog does not "
                    f"define; add {metric.parent!r} or correct the name"
                )
            if parent.status == "deprecated" and metric.status != "deprecated":
                raise ValueError(
                    f"metric {metric.name!r} hangs under {parent.name!r}, which is deprecated; move it "
                    f"under the metric that replaced {parent.name!r}, or deprecate {metric.name!r} too"
                )
        for metric in self.metrics:
            cycle = _cycle_from(metric.name, by_name)
            if cycle:
                raise ValueError(
                    f"metrics {' -> '.join(repr(name) for name in cycle)} form a cycle; remove one of "
                    "their 'parent' links so the tree leads up to a North Star"
                )
        return self

    def get(self, name: str) -> MetricDefinition | None:
        return next((metric for metric in self.metrics if metric.name == name), None)

    def select(self, names: Iterable[str] | None) -> tuple[list[MetricDefinition], list[str]]:
        """The named metrics in catalog order (all when `names` is None) and the unknown names."""
        if names is None:
            return list(self.metrics), []
        wanted = list(dict.fromkeys(names))
        unknown = [name for name in wanted if self.get(name) is None]
        return [metric for metric in self.metrics if metric.name in wanted], unknown

    def unusable(self, names_by_role: Mapping[str, Iterable[str]]) -> list[str]:
        """Why an experiment may not use these metrics (unknown or deprecated), one sentence each."""
        problems = []
        for role, names in names_by_role.items():
            for name in names:
                metric = self.get(name)
                if metric is None:
                    problems.append(
                        f"{role} metric '{name}' is not in the metric catalog; use a catalog metric "
                        "(GET /v1/metrics on the scorecard service lists them) or add it to the catalog"
                    )
                elif metric.status == "deprecated":
                    problems.append(
                        f"{role} metric '{name}' is deprecated; pick the metric that replaced it "
                        f"(ask its owner, {metric.owner})"
                    )
        return problems

    def uncertified(self, names: Iterable[str]) -> list[str]:
        """The named catalog metrics still in `draft` (allowed, but results built on them are flagged)."""
        return [name for name in names if (metric := self.get(name)) is not None and metric.status == "draft"]

    def children(self, name: str) -> list[MetricDefinition]:
        return [metric for metric in self.metrics if metric.parent == name]

    def north_stars(self) -> list[MetricDefinition]:
        return [metric for metric in self.metrics if metric.north_star]

    def path_to_root(self, name: str) -> list[str]:
        """The metric, its parent, and so on up to its root (empty for an unknown metric)."""
        path: list[str] = []
        metric = self.get(name)
        while metric is not None and metric.name not in path:
            path.append(metric.name)
            metric = self.get(metric.parent) if metric.parent else None
        return path


def _cycle_from(start: str, by_name: dict[str, MetricDefinition]) -> list[str]:
    """The names of the cycle `start` lies on, closed (a -> b -> a); empty when none."""
    seen = [start]
    metric = by_name.get(start)
    while metric is not None and metric.parent is not None:
        if metric.parent == start:
            return [*seen, start]
        if metric.parent in seen:
            return []  # a cycle further up; reported when its own members are checked
        seen.append(metric.parent)
        metric = by_name.get(metric.parent)
    return []


def catalog_version(metrics: Sequence[MetricDefinition]) -> str:
    """One hash over the definitions used: it changes whenever any of them changes."""
    parts = sorted(f"{metric.name}:{metric.definition_hash}" for metric in metrics)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _describe(exc: ValidationError, raw: Any) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        location = list(error["loc"])
        where = ".".join(str(part) for part in location)
        if location[:1] == ["metrics"] and len(location) > 1 and isinstance(location[1], int):
            entries = raw.get("metrics") if isinstance(raw, dict) else None
            entry = entries[location[1]] if isinstance(entries, list) and location[1] < len(entries) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            rest = ".".join(str(part) for part in location[2:])
            where = f"metric #{location[1] + 1}" + (f" ({name!r})" if name else "") + (f" {rest}" if rest else "")
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def parse_catalog(text: str, source: str = "<catalog>") -> Catalog:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: expected a mapping with a 'metrics' list")
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"{source}: {_describe(exc, raw)}") from None


def load_catalog(path: Path = DEFAULT_CATALOG) -> Catalog:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read the metric catalog {path}: {exc.strerror}") from None
    return parse_catalog(text, str(path))
