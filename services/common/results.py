"""The results document (docs/metrics.md "The results document"): what the metrics job publishes per
experiment and the scorecard reads. One set of models for both sides; the JSON Schema in
`docs/results.schema.json` is generated from them (`python -m deploy.results_schema`).

Numbers are exactly what the job has always published: counts are JSON integers, sums are
JSON floats (each exact Decimal aggregate converted once, `float(Decimal)`), and
`to_json()` writes them with the standard library (`json.dumps`, `repr` of the float), so
the bytes of a document do not depend on this module.

Writing is strict (frozen models, unknown fields rejected: a misspelt field is a bug in the
job). Reading (`from_json`) ignores fields this version does not know, so a scorecard keeps
serving while a newer job adds blocks (slices, quantiles) to the document; a document that
lacks a field this version writes, or holds a value of the wrong type, is invalid.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

__all__ = [
    "CovariateBlock",
    "DailySnapshot",
    "DataQuality",
    "DenominatorBlock",
    "MetricResult",
    "ResultsDocument",
    "VariantStatistics",
    "VariantUnits",
    "json_schema",
]

MetricKind = Literal["proportion", "mean", "ratio"]


def _absent(value: object) -> bool:
    return value is None


class _Block(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CovariateBlock(_Block):
    """CUPED: sums over units of the pre-exposure covariate x (metrics with a lookback)."""

    sum: float
    sum_squares: float
    sum_products: float = Field(description="sum of metric value (ratio: numerator) x covariate")
    denominator_products: float | None = Field(
        None, exclude_if=_absent, description="ratio metrics only: sum of denominator x covariate"
    )


class DenominatorBlock(_Block):
    """Ratio metrics: sums over units of the denominator d."""

    sum: float
    sum_squares: float
    sum_products: float = Field(description="sum of numerator x denominator")


class VariantStatistics(_Block):
    """Sufficient statistics of one metric for one variant: sums over its analysed units."""

    key: str
    n: NonNegativeInt = Field(description="analysed units")
    sum: float
    sum_squares: float
    covariate: CovariateBlock | None = Field(None, exclude_if=_absent)
    denominator: DenominatorBlock | None = Field(None, exclude_if=_absent)


class MetricResult(_Block):
    name: str
    type: MetricKind
    definition_hash: str = Field(description="hash of the catalog fields that change the numbers")
    higher_is_better: bool
    variants: tuple[VariantStatistics, ...] = Field(description="in variant order, the control first")


class VariantUnits(_Block):
    units: NonNegativeInt


class DataQuality(_Block):
    """Counts over the latest snapshot (definitions in services/metrics/job/quality.py)."""

    exposures: NonNegativeInt
    units: NonNegativeInt
    duplicate_events: NonNegativeInt
    multiple_variant_units: NonNegativeInt
    events_without_exposure: NonNegativeInt
    late_events_included: NonNegativeInt
    late_after_freeze: NonNegativeInt
    events_before_exposure: NonNegativeInt
    watermark: str | None = Field(description="latest received_at read (RFC 3339 UTC); null when nothing was read")


class DailySnapshot(_Block):
    """Cumulative statistics as of the end of one day of the experiment."""

    date: date
    final: bool = Field(description="frozen: the allowed lateness has passed, later runs never change it")
    variants: dict[str, VariantUnits]
    metrics: tuple[MetricResult, ...]


class ResultsDocument(_Block):
    """One experiment's results as of `as_of`; field order is the order in the JSON."""

    experiment: str
    computed_at: str = Field(description="when the job computed it (RFC 3339 UTC)")
    as_of: str = Field(description="rows with event time and receipt up to this instant count (RFC 3339 UTC)")
    catalog_version: str
    first_exposure_date: date | None = Field(description="null while the experiment has no exposures")
    allowed_lateness_hours: float
    late_threshold_hours: float
    missing_metrics: tuple[str, ...] = Field(description="requested metrics the catalog does not define")
    data_quality: DataQuality
    variants: dict[str, VariantUnits] = Field(description="in variant order, the control first")
    metrics: tuple[MetricResult, ...]
    daily: tuple[DailySnapshot, ...]

    def to_json(self) -> bytes:
        """The published bytes: indented JSON, no NaN or infinity, a final newline."""
        return json.dumps(self.model_dump(mode="json"), indent=1, allow_nan=False).encode() + b"\n"

    @classmethod
    def from_json(cls, data: str | bytes) -> ResultsDocument:
        """Parse a published document; unknown fields are ignored. Raises ValidationError."""
        return cls.model_validate_json(data, extra="ignore")

    def metric(self, name: str) -> MetricResult | None:
        return next((metric for metric in self.metrics if metric.name == name), None)


def json_schema() -> dict[str, Any]:
    """The document's JSON Schema (what the job writes; readers also accept unknown fields)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **ResultsDocument.model_json_schema()}
