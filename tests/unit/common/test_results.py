"""The results-document models (services/common/results.py): the job writes through them and
the scorecard reads through them, so both sides hold one shape and one number format."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from services.common.results import ResultsDocument


def variant(key: str, *, cuped: bool = False, ratio: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"key": key, "n": 3, "sum": 2.0, "sum_squares": 2.0}
    if cuped:
        block["covariate"] = {"sum": 1.5, "sum_squares": 2.25, "sum_products": 0.1}
        if ratio:
            block["covariate"]["denominator_products"] = 4.0
    if ratio:
        block["denominator"] = {"sum": 6.0, "sum_squares": 14.0, "sum_products": 5.0}
    return block


def document(**changes: Any) -> dict[str, Any]:
    metrics = [
        {"name": "conversion", "type": "proportion", "definition_hash": "h1", "higher_is_better": True,
         "variants": [variant("control"), variant("treatment")]},
        {"name": "revenue_per_session", "type": "ratio", "definition_hash": "h2", "higher_is_better": True,
         "variants": [variant("control", cuped=True, ratio=True), variant("treatment", cuped=True, ratio=True)]},
    ]  # fmt: skip
    variants = {"control": {"units": 3}, "treatment": {"units": 3}}
    quality = {"exposures": 7, "units": 6, "duplicate_events": 1, "multiple_variant_units": 0,
               "events_without_exposure": 0, "late_events_included": 2, "late_after_freeze": 0,
               "events_before_exposure": 1, "watermark": "2026-11-20T05:59:00.000000Z"}  # fmt: skip
    return {
        "experiment": "checkout-button", "computed_at": "2026-11-20T06:00:00.000000Z",
        "as_of": "2026-11-20T00:00:00.000000Z", "catalog_version": "abc", "first_exposure_date": "2026-11-19",
        "allowed_lateness_hours": 72.0, "late_threshold_hours": 1.0, "missing_metrics": ["nosuch"],
        "data_quality": quality, "variants": variants, "metrics": metrics,
        "daily": [{"date": "2026-11-19", "final": False, "variants": variants, "metrics": metrics}],
    } | changes  # fmt: skip


def published(data: dict[str, Any]) -> bytes:
    """The job's serialisation before the models existed."""
    return json.dumps(data, indent=1, allow_nan=False).encode() + b"\n"


def test_the_model_writes_what_the_job_always_published() -> None:
    data = document()
    model = ResultsDocument.model_validate(data)
    assert model.to_json() == published(data)
    assert ResultsDocument.from_json(model.to_json()) == model


def test_optional_blocks_are_absent_not_null() -> None:
    model = ResultsDocument.model_validate(document())
    written = json.loads(model.to_json())
    plain, ratio = written["metrics"][0]["variants"][0], written["metrics"][1]["variants"][0]
    assert "covariate" not in plain and "denominator" not in plain
    assert ratio["covariate"]["denominator_products"] == 4.0 and ratio["denominator"]["sum"] == 6.0
    assert model.metrics[1].variants[0].covariate is not None


def test_nulls_the_job_writes_stay_null() -> None:
    quality = document()["data_quality"] | {"watermark": None}
    empty = document(first_exposure_date=None, data_quality=quality, daily=[])
    written = json.loads(ResultsDocument.model_validate(empty).to_json())
    assert written["first_exposure_date"] is None and written["data_quality"]["watermark"] is None


def test_writing_refuses_unknown_fields_and_reading_ignores_them() -> None:
    data = document(heatmap=[{"dimension": "country"}])
    data["metrics"][0]["variants"][0]["sketch"] = {"q": 0.5}
    with pytest.raises(ValidationError, match="heatmap"):
        ResultsDocument.model_validate(data)
    read = ResultsDocument.from_json(json.dumps(data))
    assert read == ResultsDocument.model_validate(document())


@pytest.mark.parametrize(
    "change",
    [{"metrics": None}, {"data_quality": {"units": 3}}, {"first_exposure_date": "yesterday"},
     {"variants": {"control": {"units": -1}}}],
    ids=["metrics-null", "quality-incomplete", "bad-date", "negative-units"],
)  # fmt: skip
def test_reading_refuses_a_document_this_version_did_not_write(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ResultsDocument.from_json(json.dumps(document(**change)))


def test_models_are_frozen() -> None:
    model = ResultsDocument.model_validate(document())
    with pytest.raises(ValidationError):
        model.experiment = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        model.metrics[0].variants[0].n = 4  # type: ignore[misc]
    assert model.metric("revenue_per_session") is model.metrics[1] and model.metric("nosuch") is None
