"""One metrics run at a time over a data directory.

The scheduler (`run --every`) and a run started by hand (an operator, a deployment test)
share the lake, the state and the results. Two runs at once would each publish what they
computed, and the later publish wins even when it read the lake earlier: a run that listed
the lake before the newest events landed could replace a document that counts them. So a run
takes an exclusive `flock` on `state/run.lock` before it fixes its as-of and holds it until it
has published its documents and kept its state; a second run waits, saying so in its log.
The kernel drops the lock with the process, so a run killed at any point never leaves it held.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.common.durable import ensure_dir

log = logging.getLogger("services.metrics.job")

LOCK_FILE = "run.lock"
HOLDER_BYTES = 200


class RunLockTimeout(RuntimeError):
    """Another run held the lock longer than this one was willing to wait."""


class RunLockAbandoned(RuntimeError):
    """The wait was given up because the process is stopping (SIGTERM to the scheduler)."""


def lock_path(state_dir: Path) -> Path:
    return state_dir / LOCK_FILE


@contextmanager
def run_lock(path: Path, timeout: float, stop: threading.Event | None = None, poll: float = 0.5) -> Iterator[float]:
    """Hold the run lock at `path` for the block; yields the seconds spent waiting for it.

    Raises RunLockTimeout after `timeout` seconds of waiting, RunLockAbandoned when `stop`
    is set while waiting."""
    ensure_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = _acquire(fd, path, timeout, stop, poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode(), 0)
        yield waited
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, path: Path, timeout: float, stop: threading.Event | None, poll: float) -> float:
    started = time.monotonic()
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = time.monotonic() - started
            if announced:
                log.info("another metrics run finished; this one starts", extra={"waited_seconds": round(waited, 3)})
            return waited
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        waited = time.monotonic() - started
        if not announced:
            log.info("waiting for another metrics run to finish", extra={"lock": str(path), "holder": _holder(fd)})
            announced = True
        if waited >= timeout:
            raise RunLockTimeout(
                f"another metrics run has held {path} for over {timeout:.0f} s ({_holder(fd) or 'holder unknown'})"
            )
        pause = min(poll, max(timeout - waited, 0.0))
        if stop is not None:
            if stop.wait(pause):
                raise RunLockAbandoned("stopping while waiting for another metrics run")
        else:
            time.sleep(pause)


def _holder(fd: int) -> str:
    """What the holding run wrote into the lock file (its pid and since when), for the log."""
    try:
        return os.pread(fd, HOLDER_BYTES, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
