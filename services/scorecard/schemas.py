"""Request bodies of the scorecard API. Numbers must be finite; the engine re-validates
consistency (e.g. sum_squares against sum) and answers typed errors. Strict: a JSON `false` or
`"5"` is not a count, so a client's mistake is a 422 rather than a silently different question."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e150, le=1e150)]
Count = Annotated[int, Field(ge=0, le=10**12)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    sum: Finite
    sum_squares: Finite
    sum_products: Finite


class CovariateBlock(Block):
    denominator_products: Finite | None = None


EventCount = Annotated[int, Field(ge=0, le=10**18)]
Probability = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]


class QuantileIn(BaseModel):
    """A quantile metric's block, as in the results document (services/common/results.py
    `QuantileBlock`); the order statistics are null for a variant without events."""

    model_config = ConfigDict(extra="forbid", strict=True)

    probability: Probability
    n_events: EventCount
    value: Finite | None
    lower_probability: Probability | None
    upper_probability: Probability | None
    lower_value: Finite | None
    upper_value: Finite | None
    events_below: EventCount
    events_below_squares: EventCount
    events_squares: EventCount
    events_products: EventCount


class VariantIn(BaseModel):
    """`sum` and `sum_squares` are required except for quantile metrics, which use `quantile`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: Key
    n: Count
    sum: Finite | None = None
    sum_squares: Finite | None = None
    covariate: CovariateBlock | None = None
    denominator: Block | None = None
    quantile: QuantileIn | None = None


class MetricIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] = "metric"
    type: Literal["proportion", "mean", "ratio", "quantile"]
    quantile: Probability | None = Field(
        None, description="quantile metrics: p (0.9 for p90), checked against the blocks"
    )


class AnalyzeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    metric: MetricIn
    variants: Annotated[list[VariantIn], Field(min_length=2, max_length=50)]
    alpha: float = Field(0.05, gt=0, lt=1)
    cuped: bool = False
    sequential: bool = False
    sequential_tuning: float = Field(5000.0, gt=0, le=1e12)
    correction: Literal["none", "holm", "bh"] = "none"

    @model_validator(mode="after")
    def _blocks_fit_the_metric(self) -> AnalyzeRequest:
        if self.metric.type == "quantile":
            missing = [v.key for v in self.variants if v.quantile is None]
            if missing:
                raise ValueError(f"a quantile metric needs a quantile block in every variant; missing in {missing}")
            return self
        if any(v.quantile is not None for v in self.variants):
            raise ValueError(f"a quantile block belongs to quantile metrics, not {self.metric.type}")
        missing = [v.key for v in self.variants if v.sum is None or v.sum_squares is None]
        if missing:
            raise ValueError(
                f"a {self.metric.type} metric needs sum and sum_squares in every variant; missing in {missing}"
            )
        return self


class SrmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    counts: Annotated[dict[Key, Count], Field(min_length=2, max_length=50)]
    weights: Annotated[
        dict[Key, Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]],
        Field(min_length=2, max_length=50),
    ]
    threshold: float = Field(0.001, gt=0, lt=1)
    min_units: Count = 100

    @model_validator(mode="after")
    def _same_variants(self) -> SrmRequest:
        if set(self.counts) != set(self.weights):
            raise ValueError("counts and weights must name the same variants")
        return self


class PowerRequest(BaseModel):
    """Give `relative_mde` for the sample size, or `n_per_variant` for the reachable MDE."""

    model_config = ConfigDict(extra="forbid", strict=True)

    metric_type: Literal["proportion", "mean"]
    baseline_mean: Finite
    variance: Annotated[float, Field(gt=0, le=1e150, allow_inf_nan=False)] | None = None
    relative_mde: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] | None = None
    n_per_variant: Annotated[int, Field(ge=2, le=10**12)] | None = None
    alpha: float = Field(0.05, gt=0, lt=1)
    power: float = Field(0.8, gt=0, lt=1)
    n_variants: int = Field(2, ge=2, le=50)
    variance_reduction: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _one_question(self) -> PowerRequest:
        if (self.relative_mde is None) == (self.n_per_variant is None):
            raise ValueError("give exactly one of relative_mde (for a sample size) or n_per_variant (for an MDE)")
        if self.metric_type == "mean" and self.variance is None:
            raise ValueError("a mean metric needs its per-unit variance")
        if self.metric_type == "proportion" and not 0 < self.baseline_mean < 1:
            raise ValueError("a proportion's baseline_mean must be between 0 and 1")
        return self
