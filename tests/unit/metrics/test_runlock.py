"""The metrics job's run lock: one run at a time per data directory, a clear error when a run
waits too long, a scheduler that stops while waiting, and a lock that dies with its holder."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from services.metrics.job.runlock import RunLockAbandoned, RunLockTimeout, lock_path, run_lock


def test_a_second_holder_waits_until_the_first_releases(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = lock_path(tmp_path / "state")
    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait(5)
        with run_lock(path, timeout=10, poll=0.01) as waited:
            order.append(f"second after {waited:.2f}")

    caplog.set_level(logging.INFO, logger="services.metrics.job")
    thread = threading.Thread(target=second)
    thread.start()
    with run_lock(path, timeout=1) as waited:
        assert waited < 0.5 and path.read_text().startswith("pid ")
        inside.set()
        time.sleep(0.3)
        order.append("first done")
    thread.join(10)
    assert order[0] == "first done" and order[1].startswith("second after 0.")
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("waiting for another metrics run to finish") == 1
    assert "another metrics run finished; this one starts" in messages


def test_waiting_too_long_is_a_clear_error(tmp_path: Path) -> None:
    path = lock_path(tmp_path / "state")
    with run_lock(path, timeout=1):
        started = time.monotonic()
        with pytest.raises(RunLockTimeout, match=r"another metrics run has held .*run\.lock for over 0 s \(pid "):
            with run_lock(path, timeout=0.2, poll=0.05):
                pytest.fail("the lock was taken twice")
        assert time.monotonic() - started < 5


def test_a_stop_while_waiting_gives_up(tmp_path: Path) -> None:
    path = lock_path(tmp_path / "state")
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    with run_lock(path, timeout=1), pytest.raises(RunLockAbandoned):
        with run_lock(path, timeout=60, stop=stop, poll=0.05):
            pytest.fail("the lock was taken twice")


def test_a_killed_holder_leaves_the_lock_free(tmp_path: Path) -> None:
    path = lock_path(tmp_path / "state")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from services.metrics.job.runlock import run_lock\n"
         f"with run_lock(Path({str(path)!r}), timeout=5):\n    print('held', flush=True)\n    time.sleep(120)\n"],
        stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        with pytest.raises(RunLockTimeout):
            with run_lock(path, timeout=0.1, poll=0.05):
                pytest.fail("the lock was taken twice")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    with run_lock(path, timeout=0.1) as waited:
        assert waited < 0.1
