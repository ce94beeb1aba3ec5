"""docs/results.schema.json is generated from the results-document models; it fails here when stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy import results_schema
from deploy.results_schema import COMMAND, OUTPUT, render


def test_docs_results_schema_is_up_to_date() -> None:
    assert OUTPUT.exists(), f"docs/results.schema.json is missing: run `{COMMAND}`"
    assert OUTPUT.read_text() == render(), f"docs/results.schema.json is stale: run `{COMMAND}` and commit the result"


def test_schema_names_every_top_level_field_and_refuses_others() -> None:
    schema = json.loads(render())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {
        "experiment", "computed_at", "as_of", "catalog_version", "first_exposure_date", "allowed_lateness_hours",
        "late_threshold_hours", "missing_metrics", "data_quality", "variants", "metrics", "daily",
    }  # fmt: skip
    quality = schema["$defs"]["DataQuality"]["properties"]
    assert {"events_before_exposure", "watermark"} <= quality.keys()


def test_check_reports_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(results_schema, "OUTPUT", tmp_path / "results.schema.json")
    monkeypatch.setattr(results_schema, "REPO", tmp_path)
    assert results_schema.main(["--check"]) == 1 and "stale" in capsys.readouterr().out
    assert results_schema.main([]) == 0
    assert results_schema.main(["--check"]) == 0 and "up to date" in capsys.readouterr().out
