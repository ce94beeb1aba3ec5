"""The disk spool: append-only segment files that hold messages while the broker is away.

Layout of the spool directory:
    segment-<seq:12>-<created epoch ms:13>.log   records (see spool_format), oldest = lowest seq
    checkpoint                                    JSON {"segment": s, "offset": o}: every record
                                                  before offset o of segment s, and every segment
                                                  below s, has been acked by the broker
    spool.lock                                    flock: one process per spool directory

Appends go to the active segment with one write and one fsync per call. Replay reads only
sealed segments (the active one is sealed first), oldest first, and `commit` advances the
checkpoint durably before a fully replayed segment is deleted. A process that restarts
never appends to an old segment: it starts a new one, so a torn tail left by a crash stays
behind the records written before it and ahead of nothing.

The class is synchronous and thread-safe (appends come from worker threads); one replayer
at a time calls `next_batch`/`commit`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from services.common.durable import fsync_dir
from services.exposure.spool_format import Damage, SpoolEntry, encode_record, iter_records

SEGMENT_NAME = re.compile(r"^segment-(\d{12})-(\d{13})\.log$")
CHECKPOINT = "checkpoint"
LOCK = "spool.lock"


class SpoolFull(Exception):
    def __init__(self, needed: int, used: int, limit: int) -> None:
        super().__init__(f"the spool holds {used} of {limit} bytes and cannot take {needed} more")


class SpoolLocked(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Segment:
    seq: int
    created_ms: int
    path: Path


@dataclass(slots=True)
class _Active:
    segment: Segment
    fd: int
    size: int = 0
    records: int = 0


@dataclass(frozen=True, slots=True)
class ReplayBatch:
    segment: int
    start_offset: int
    end_offset: int
    entries: list[SpoolEntry]
    damage: list[Damage]
    segment_done: bool


@dataclass(frozen=True, slots=True)
class SpoolStats:
    bytes: int
    records: int
    segments: int
    oldest_age_seconds: float | None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _count_records(data: bytes, offset: int) -> int:
    return sum(1 for item, _ in iter_records(data, offset) if isinstance(item, SpoolEntry))


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._sealed: deque[Segment] = deque()
        self._active: _Active | None = None
        self._replay_offset = 0
        self._cache: tuple[int, bytes] | None = None
        self._bytes = 0
        self._records = 0
        self._next_seq = 1
        self._refusing = False
        self._lock_fd = self._take_directory()
        self._load()

    # --- opening -------------------------------------------------------------------

    def _take_directory(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLocked(f"another process is using the spool directory {self.directory}") from None
        return fd

    def _read_checkpoint(self) -> tuple[int, int]:
        try:
            raw = json.loads((self.directory / CHECKPOINT).read_text())
            return int(raw["segment"]), int(raw["offset"])
        except FileNotFoundError:
            return 0, 0

    def _write_checkpoint(self, segment: int, offset: int) -> None:
        temporary = self.directory / f"{CHECKPOINT}.tmp"
        with temporary.open("w") as handle:
            handle.write(json.dumps({"segment": segment, "offset": offset}))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.directory / CHECKPOINT)
        fsync_dir(self.directory)

    def _list_segments(self) -> list[Segment]:
        found = []
        for path in self.directory.iterdir():
            match = SEGMENT_NAME.match(path.name)
            if match:
                found.append(Segment(int(match[1]), int(match[2]), path))
        return sorted(found, key=lambda segment: segment.seq)

    def _load(self) -> None:
        checkpoint_segment, checkpoint_offset = self._read_checkpoint()
        for segment in self._list_segments():
            if segment.seq < checkpoint_segment:  # replayed; the crash came before the unlink
                segment.path.unlink()
                continue
            self._sealed.append(segment)
            offset = checkpoint_offset if segment.seq == checkpoint_segment else 0
            if len(self._sealed) == 1:
                self._replay_offset = offset
            self._records += _count_records(segment.path.read_bytes(), offset)
            self._bytes += segment.path.stat().st_size
        last = self._sealed[-1].seq if self._sealed else 0
        self._next_seq = max(last, checkpoint_segment) + 1

    # --- appending -------------------------------------------------------------------

    def append(self, entries: list[SpoolEntry]) -> None:
        """Write `entries` durably (one fsync) or raise SpoolFull / OSError having written none
        that will be reported as accepted."""
        data = b"".join(encode_record(entry) for entry in entries)
        with self._lock:
            if self._bytes + len(data) > self.max_bytes:
                self._refusing = True
                raise SpoolFull(len(data), self._bytes, self.max_bytes)
            active = self._active_for(len(data))
            try:
                _write_all(active.fd, data)
                os.fsync(active.fd)
            except OSError:
                # Whatever part reached the file is skipped on replay as damage.
                self._seal_locked()
                self._bytes = sum(s.path.stat().st_size for s in self._sealed)
                raise
            active.size += len(data)
            active.records += len(entries)
            self._bytes += len(data)
            self._records += len(entries)

    def _active_for(self, size: int) -> _Active:
        if self._active is not None and self._active.size and self._active.size + size > self.segment_bytes:
            self._seal_locked()
        if self._active is None:
            seq, self._next_seq = self._next_seq, self._next_seq + 1
            created_ms = time.time_ns() // 1_000_000
            path = self.directory / f"segment-{seq:012d}-{created_ms:013d}.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            fsync_dir(self.directory)
            self._active = _Active(Segment(seq, created_ms, path), fd)
        return self._active

    def seal(self) -> None:
        """Close the active segment so replay may read it; the next append opens a new one."""
        with self._lock:
            self._seal_locked()

    def _seal_locked(self) -> None:
        active, self._active = self._active, None
        if active is None:
            return
        os.close(active.fd)
        if active.size == 0:
            active.segment.path.unlink(missing_ok=True)
        else:
            self._sealed.append(active.segment)

    # --- replaying -------------------------------------------------------------------

    def next_batch(self, max_records: int) -> ReplayBatch | None:
        """Up to `max_records` records from the oldest unreplayed position; None when empty."""
        with self._lock:
            if not self._sealed and self._active is not None and self._active.size:
                self._seal_locked()
            if not self._sealed:
                return None
            segment, start = self._sealed[0], self._replay_offset
        data = self._segment_bytes(segment)
        entries: list[SpoolEntry] = []
        damage: list[Damage] = []
        end = start
        for item, after in iter_records(data, start):
            if isinstance(item, Damage):
                damage.append(item)
            else:
                entries.append(item)
            end = after
            if len(entries) >= max_records:
                break
        return ReplayBatch(segment.seq, start, end, entries, damage, segment_done=end >= len(data))

    def _segment_bytes(self, segment: Segment) -> bytes:
        if self._cache is None or self._cache[0] != segment.seq:
            self._cache = (segment.seq, segment.path.read_bytes())
        return self._cache[1]

    def commit(self, batch: ReplayBatch) -> None:
        """Record that `batch` is acked by the broker: advance the checkpoint, then delete the
        segment if the batch finished it."""
        with self._lock:
            head = self._sealed[0]
            if head.seq != batch.segment or self._replay_offset != batch.start_offset:
                raise RuntimeError("commit of a batch that is not the next one in the spool")
            if batch.segment_done:
                self._write_checkpoint(head.seq + 1, 0)
                size = head.path.stat().st_size
                head.path.unlink()
                fsync_dir(self.directory)
                self._sealed.popleft()
                self._bytes -= size
                self._refusing = False
                self._replay_offset = 0
                self._cache = None
            else:
                self._write_checkpoint(head.seq, batch.end_offset)
                self._replay_offset = batch.end_offset
            self._records -= len(batch.entries)

    # --- state -----------------------------------------------------------------------

    @property
    def pending_records(self) -> int:
        return self._records

    @property
    def full(self) -> bool:
        """A write was refused for lack of room and no segment has been freed since."""
        return self._refusing

    @property
    def has_data(self) -> bool:
        """Segments left to replay or delete (possibly holding only damaged bytes)."""
        return bool(self._sealed) or (self._active is not None and self._active.size > 0)

    def stats(self) -> SpoolStats:
        with self._lock:
            segments = list(self._sealed)
            if self._active is not None and self._active.size:
                segments.append(self._active.segment)
            oldest = min((s.created_ms for s in segments), default=None)
            age = None if oldest is None else max(0.0, time.time() - oldest / 1000)
            return SpoolStats(self._bytes, self._records, len(segments), age)

    def close(self) -> None:
        with self._lock:
            if self._active is not None:
                self._seal_locked()
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
