"""The scorecard reads results documents through the shared model; what it does with files
that are missing, not JSON, or not results documents."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from services.common.results import ResultsDocument
from services.scorecard.results_store import ResultsStore
from tests.unit.common.test_results import document


def write(root: Path, key: str, text: str) -> None:
    (root / key).mkdir(parents=True)
    (root / key / "latest.json").write_text(text)


def test_a_published_document_is_read_as_the_model(tmp_path: Path) -> None:
    write(tmp_path, "checkout-button", json.dumps(document(slices=[])))  # a newer job's extra field
    read = ResultsStore(tmp_path).latest("checkout-button")
    assert read == ResultsDocument.model_validate(document())
    assert ResultsStore(tmp_path).experiments() == ["checkout-button"]


def test_no_file_or_an_unsafe_key_is_no_results(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    assert store.latest("never-run") is None and store.latest("../etc") is None


@pytest.mark.parametrize("text", ["[1, 2]", json.dumps(document(metrics="none"))], ids=["array", "bad-metrics"])
def test_a_document_of_another_shape_is_no_results_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    write(tmp_path, "broken", text)
    with caplog.at_level(logging.ERROR, logger="services.scorecard.results"):
        assert ResultsStore(tmp_path).latest("broken") is None
    [record] = caplog.records
    assert "results document ignored" in record.getMessage()
    assert record.__dict__["path"] == str(tmp_path / "broken" / "latest.json")


def test_a_file_that_is_not_json_is_no_results_and_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "corrupt", '{"experiment": ')
    with caplog.at_level(logging.ERROR, logger="services.scorecard.results"):
        assert ResultsStore(tmp_path).latest("corrupt") is None
    [record] = caplog.records
    assert "not JSON" in record.getMessage()
    assert record.__dict__["path"] == str(tmp_path / "corrupt" / "latest.json")
