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
    "QuantileBlock",
    "ResultsDocument",
    "SliceResult",
    "VariantStatistics",
    "VariantUnits",
    "json_schema",
]

MetricKind = Literal["proportion", "mean", "ratio", "quantile"]
# Slice values beyond the most frequent MAX_SLICE_VALUES of a dimension, and units whose first
# exposure did not carry the attribute.
MAX_SLICE_VALUES = 20
OTHER_SLICE = "__other__"
MISSING_SLICE = "__missing__"


def _absent(value: object) -> bool:
    return value is None


def _absent_or_empty(value: object) -> bool:
    return value is None or value == ()


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


class QuantileBlock(_Block):
    """Quantile metrics: the p-quantile of the variant's event values and what its interval
    needs (services/scorecard/stats/quantile.py `QuantileStats`, Deng, Knoblich & Lu 2018).

    Order statistics are x_(k), k = max(1, ceil(N p)) over the variant's N event values
    (the smallest v with F_hat(v) >= p). S_u counts unit u's events with value <= `value`,
    M_u all its events. Null values while the variant has no events."""

    probability: float = Field(description="p, e.g. 0.9 for p90")
    n_events: NonNegativeInt = Field(description="N = sum over units of M_u")
    value: float | None = Field(description="x_(ceil(N p)): the sample quantile")
    lower_probability: float | None = Field(description="p_L < p of the outer window")
    upper_probability: float | None = Field(description="p_U > p of the outer window")
    lower_value: float | None = Field(description="x_(ceil(N p_L))")
    upper_value: float | None = Field(description="x_(ceil(N p_U))")
    events_below: NonNegativeInt = Field(description="sum_u S_u")
    events_below_squares: NonNegativeInt = Field(description="sum_u S_u^2")
    events_squares: NonNegativeInt = Field(description="sum_u M_u^2")
    events_products: NonNegativeInt = Field(description="sum_u S_u M_u")


class VariantStatistics(_Block):
    """Sufficient statistics of one metric for one variant: sums over its analysed units.

    For a quantile metric `sum` and `sum_squares` are the sums over units of the event value
    sums (the mean event value is sum / quantile.n_events) and `quantile` holds the quantile."""

    key: str
    n: NonNegativeInt = Field(description="analysed units")
    sum: float
    sum_squares: float
    covariate: CovariateBlock | None = Field(None, exclude_if=_absent)
    denominator: DenominatorBlock | None = Field(None, exclude_if=_absent)
    quantile: QuantileBlock | None = Field(None, exclude_if=_absent)


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


class SliceResult(_Block):
    """The experiment's statistics within one value of one dimension: units whose first
    exposure carried `attributes[dimension] == value` (or the `__other__` / `__missing__`
    buckets). Same exactness and late-data rules as the overall statistics; no daily series."""

    dimension: str
    value: str
    variants: dict[str, VariantUnits] = Field(description="in variant order, the control first")
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
    dimensions: tuple[str, ...] = Field((), exclude_if=_absent_or_empty, description="the experiment's dimensions")
    slices: tuple[SliceResult, ...] = Field(
        (),
        exclude_if=_absent_or_empty,
        description="per dimension: its top values by units (at most 20), then __other__ and __missing__",
    )

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
