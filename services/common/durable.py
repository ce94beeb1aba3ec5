"""Crash-safe file writes: temporary name, fsync the file, rename, fsync the directory.

A reader (or a restarted writer) sees either the old file or the complete new one, never a
partial file under the final name. Temporary names start with '.', so readers skip them.
Shared by the metrics ingest and job (lake, results) and the exposure spool (checkpoints), so
"durably written" means the same sequence of fsyncs everywhere.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def temp_path_for(final: Path) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")


def remove_stale_temps(directory: Path, older_than_seconds: float) -> list[Path]:
    """Delete this module's temporary files in `directory` (not below it) that are older than
    `older_than_seconds`: what a writer killed between creating and renaming one left behind.
    Younger ones may belong to a writer still at work, so they stay."""
    cutoff = time.time() - older_than_seconds
    removed = []
    for path in directory.glob(f".*{TEMP_SUFFIX}"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:  # another cleaner, or its writer renamed it meanwhile
            continue
    return removed


def fsync_dir(directory: Path) -> None:
    """Persist the directory's entries (a created or renamed name), which fsyncing the file
    alone does not."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> None:
    """mkdir -p, fsyncing each parent whose entry was created so the new path survives a crash."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        fsync_dir(path.parent)


def write_atomic(final: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write through `write(file)` to a temporary file, then publish it as `final`."""
    ensure_dir(final.parent)
    temp = temp_path_for(final)
    try:
        with temp.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)
    return final


def write_bytes_atomic(final: Path, data: bytes) -> Path:
    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return write_atomic(final, write)


def append_durably(path: Path, data: bytes) -> None:
    """Append and fsync (quarantine files); a torn last line after a crash is tolerated."""
    created = not path.exists()
    ensure_dir(path.parent)
    with path.open("ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        fsync_dir(path.parent)
