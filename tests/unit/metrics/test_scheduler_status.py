from __future__ import annotations

from pathlib import Path

from services.metrics.job.status import (
    SchedulerStatus,
    read_status,
    round_finished,
    round_started,
    unhealthy_reason,
    verdict,
    write_status,
)

START = 1_000_000.0


def fresh(path: Path) -> SchedulerStatus:
    return write_status(path, SchedulerStatus(every_seconds=60, round_timeout_seconds=120, started_at=START))


def test_a_round_that_finishes_keeps_the_scheduler_healthy(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    status = round_finished(path, round_started(path, fresh(path), START + 1), START + 30, failures=0)
    assert unhealthy_reason(path, now=START + 30 + 60 + 119) is None
    assert status.last_success_at == START + 30


def test_a_round_waiting_past_the_timeout_is_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    round_started(path, fresh(path), START + 1)
    assert unhealthy_reason(path, now=START + 100) is None
    assert "waiting for executors" in (unhealthy_reason(path, now=START + 122) or "")


def test_failing_rounds_turn_unhealthy_once_a_success_is_overdue(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    status = round_finished(path, round_started(path, fresh(path), START), START + 5, failures=1)
    assert verdict(status, START + 179) is None
    assert "no successful round" in (verdict(status, START + 181) or "")


def test_no_status_file_is_unhealthy(tmp_path: Path) -> None:
    assert "no readable scheduler status" in (unhealthy_reason(tmp_path / "missing.json") or "")


def test_standalone_master_addresses_are_parsed_and_local_masters_need_no_wait() -> None:
    from services.metrics.job.spark import master_addresses, wait_for_master

    assert master_addresses("spark://m1:7077,m2:7078") == [("m1", 7077), ("m2", 7078)]
    assert master_addresses("local[*]") == []
    assert wait_for_master("local[2]", timeout_seconds=0)
    assert not wait_for_master("spark://127.0.0.1:1", timeout_seconds=0, pause_seconds=0.01)


def test_a_finished_round_records_what_it_read(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    figures = {"experiments": 3, "partitions_read": 40, "files_read": 80, "rows_read": 12345,
               "seconds": 9.5, "mode": "full"}  # fmt: skip
    status = round_finished(path, round_started(path, fresh(path), START), START + 10, failures=0, run=figures)
    assert status.last_run == figures and read_status(path).last_run == figures
    again = round_finished(path, round_started(path, status, START + 70), START + 71, failures=1)
    assert read_status(path).last_run == figures and again.last_failures == 1  # kept when a round reports none


def test_the_status_counts_incremental_and_full_computations(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    first = {"experiments": 2, "mode": "full", "incremental_experiments": 0,
             "full_reasons": {"a": "no state yet", "b": "no state yet"}}  # fmt: skip
    status = round_finished(path, round_started(path, fresh(path), START), START + 10, failures=0, run=first)
    later = {
        "experiments": 2,
        "mode": "incremental",
        "incremental_experiments": 1,
        "full_reasons": {"b": "the timeline moved (a new day, a day froze, or an earlier first exposure)"},
    }
    status = round_finished(path, round_started(path, status, START + 60), START + 65, failures=0, run=later)
    saved = read_status(path)
    assert (
        (saved.incremental_computations, saved.full_recomputes)
        == (1, 3)
        == (status.incremental_computations, status.full_recomputes)
    )
