from __future__ import annotations

from pathlib import Path

import pytest

from services.exposure.spool import SpoolLocked
from services.exposure.spool_slots import claim_spool, slot_directory

SIZES = {"max_bytes": 1 << 20, "segment_bytes": 1 << 16}


def test_replicas_take_distinct_slots_and_a_freed_slot_is_taken_again(tmp_path: Path) -> None:
    first = claim_spool(tmp_path, 3, **SIZES)
    second = claim_spool(tmp_path, 3, **SIZES)
    assert (first.directory, second.directory) == (tmp_path, tmp_path / "replica-1")
    first.close()
    assert claim_spool(tmp_path, 3, **SIZES).directory == slot_directory(tmp_path, 0)


def test_all_slots_taken_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    held = claim_spool(tmp_path, 1, **SIZES)
    with pytest.raises(SpoolLocked, match="ASSAY_SPOOL_SLOTS"):
        claim_spool(tmp_path, 1, **SIZES)
    held.close()
