"""The disk spool: append, replay in order, checkpoints, rotation, torn and corrupt records."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.exposure.spool import Spool, SpoolFull, SpoolLocked
from services.exposure.spool_format import MAGIC, Damage, SpoolEntry, encode_record, iter_records


def entries(count: int, start: int = 0, topic: str = "assay.exposures") -> list[SpoolEntry]:
    return [SpoolEntry(topic, f"unit-{i}".encode(), b'{"n": %d}' % i) for i in range(start, start + count)]


def drain(spool: Spool, batch: int = 1000) -> tuple[list[SpoolEntry], list[Damage]]:
    """Replay everything (committing each batch), as the replayer does after broker acks."""
    got: list[SpoolEntry] = []
    damage: list[Damage] = []
    while (next_batch := spool.next_batch(batch)) is not None:
        got.extend(next_batch.entries)
        damage.extend(next_batch.damage)
        spool.commit(next_batch)
    return got, damage


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.log"))


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    opened = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=4096)
    yield opened
    opened.close()


def test_record_round_trip_and_unicode_keys() -> None:
    entry = SpoolEntry("assay.events", "用户-42 🙂".encode(), b'{"name": "purchase", "value": 1.5}')
    data = encode_record(entry) + encode_record(SpoolEntry("t", b"", b""))
    decoded = list(iter_records(data))
    assert [item for item, _ in decoded] == [entry, SpoolEntry("t", b"", b"")]
    assert decoded[-1][1] == len(data)


def test_append_then_replay_in_order(spool: Spool) -> None:
    spool.append(entries(3))
    spool.append(entries(2, start=3, topic="assay.events"))
    assert spool.pending_records == 5 and spool.has_data
    got, damage = drain(spool)
    assert got == entries(3) + entries(2, start=3, topic="assay.events") and damage == []
    assert spool.pending_records == 0 and not spool.has_data
    assert segments(spool.directory) == [] and spool.stats().bytes == 0


def test_segments_rotate_and_replayed_ones_are_deleted(spool: Spool) -> None:
    for i in range(40):
        spool.append(entries(5, start=i * 5))
    stats = spool.stats()
    assert stats.segments >= 3 and stats.records == 200 and stats.oldest_age_seconds is not None
    assert all(path.stat().st_size <= 4096 for path in segments(spool.directory))
    batch = spool.next_batch(1000)
    assert batch is not None and batch.segment_done
    first_segment = segments(spool.directory)[0]
    spool.commit(batch)
    assert not first_segment.exists()
    got, _ = drain(spool, batch=7)
    assert batch.entries + got == entries(200)


def test_checkpoint_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000)
    spool.append(entries(10))
    first = spool.next_batch(4)
    assert first is not None and not first.segment_done
    spool.commit(first)
    uncommitted = spool.next_batch(3)  # read but never acked: must come back after a restart
    assert uncommitted is not None
    spool.close()

    reopened = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000)
    assert reopened.pending_records == 6
    reopened.append(entries(2, start=10))  # goes to a new segment, after the old ones
    got, _ = drain(reopened)
    assert got == entries(8, start=4) and len(segments(tmp_path)) == 0
    reopened.close()


def test_a_second_process_cannot_share_the_directory(spool: Spool) -> None:
    with pytest.raises(SpoolLocked, match="another process"):
        Spool(spool.directory, max_bytes=1000, segment_bytes=1000)


def test_full_spool_refuses_without_writing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=300, segment_bytes=1000)
    spool.append(entries(5))
    with pytest.raises(SpoolFull, match="cannot take"):
        spool.append(entries(5, start=5))
    assert spool.pending_records == 5
    got, _ = drain(spool)
    assert got == entries(5)
    spool.append(entries(5, start=5))  # room again once replayed
    spool.close()


def test_torn_tail_is_skipped_and_later_records_replay(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000)
    spool.append(entries(3))
    spool.close()
    torn = segments(tmp_path)[0]
    with torn.open("ab") as handle:  # a crash in the middle of the next write
        handle.write(encode_record(entries(1, start=99)[0])[:-7])
    reopened = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000)
    assert reopened.pending_records == 3
    reopened.append(entries(2, start=3))
    got, damage = drain(reopened)
    assert got == entries(5)
    assert len(damage) == 1 and damage[0].torn and damage[0].offset == torn_offset(got[:3])
    reopened.close()


def torn_offset(written: list[SpoolEntry]) -> int:
    return sum(len(encode_record(entry)) for entry in written)


@pytest.mark.parametrize("where", ["magic", "length", "crc", "body"])
def test_corrupt_middle_record_is_skipped(tmp_path: Path, where: str) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000)
    spool.append(entries(5))
    spool.close()
    path = segments(tmp_path)[0]
    data = bytearray(path.read_bytes())
    third = torn_offset(entries(2))
    position = {"magic": third + 1, "length": third + 5, "crc": third + 9, "body": third + 14}[where]
    data[position] ^= 0x5A
    path.write_bytes(bytes(data))
    reopened = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000)
    got, damage = drain(reopened)
    assert got == entries(2) + entries(2, start=3)
    assert len(damage) == 1 and not damage[0].torn and damage[0].offset == third
    reopened.close()


def test_garbage_between_records_resynchronises_on_the_magic_marker() -> None:
    good = [encode_record(entry) for entry in entries(3)]
    data = good[0] + b"\x00garbage" + MAGIC + b"\x00\x00" + good[1] + os.urandom(64).replace(MAGIC, b"") + good[2]
    items = [item for item, _ in iter_records(data)]
    assert [i for i in items if isinstance(i, SpoolEntry)] == entries(3)
    assert sum(isinstance(i, Damage) for i in items) == 2


def test_a_length_field_pointing_past_the_end_does_not_hide_later_records() -> None:
    first, second = (encode_record(entry) for entry in entries(2))
    broken = bytearray(first)
    broken[4:8] = (10_000).to_bytes(4, "big")
    items = [item for item, _ in iter_records(bytes(broken) + second)]
    assert items[-1] == entries(2)[1] and isinstance(items[0], Damage)


def test_replay_after_commit_of_a_segment_that_only_held_damage(tmp_path: Path) -> None:
    (tmp_path / "segment-000000000001-0000000000000.log").write_bytes(b"\xff\xff not a record")
    spool = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=1_000_000)
    assert spool.pending_records == 0 and spool.has_data
    got, damage = drain(spool)
    assert got == [] and len(damage) == 1 and not spool.has_data
    spool.append(entries(1))
    assert drain(spool)[0] == entries(1)
    spool.close()
