"""Worker processes (`services.common.runtime.serve_workers`) and their metrics files: the
supervisor gives up on workers that cannot start, refuses a taken address, and a restarted
worker forgets the live gauges of the dead one. (The service under load, a dead worker
replaced and the spool slots: tests/faults/test_exposure_workers.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from deploy.embedded import free_port
from services.common import metrics
from services.common.metrics import MULTIPROCESS_DIR_VARIABLE, forget_dead_workers, render

REPO = Path(__file__).resolve().parents[3]


def serve_workers_in_a_process(factory: str, port: int, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    code = f"from services.common.runtime import serve_workers; serve_workers({factory!r}, '127.0.0.1', {port}, 2)"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_the_supervisor_gives_up_when_workers_cannot_start() -> None:
    finished = serve_workers_in_a_process("no_such_module_here:create_app", free_port())
    assert finished.returncode != 0
    assert "workers keep dying at start-up" in finished.stderr


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "so_reuseport"])
def test_a_taken_address_is_refused_before_any_worker_starts(reuse_port: bool) -> None:
    """Also against a socket that allows sharing (an old instance still running): the new
    one must not quietly take half of its connections."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        finished = serve_workers_in_a_process("services.exposure.__main__:worker_app", taken.getsockname()[1])
    assert finished.returncode != 0
    assert "Address already in use" in finished.stderr
    assert "assay-worker" not in finished.stderr


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_new_worker_forgets_the_live_gauges_of_dead_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROCESS_DIR_VARIABLE, str(tmp_path))
    gone, alive = dead_pid(), os.getpid()
    for pid in (gone, alive):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    assert forget_dead_workers() == [gone]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{gone}.db", f"counter_{alive}.db", f"gauge_livesum_{alive}.db"]
    )  # a dead worker's counts stay in the totals


def test_without_workers_nothing_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_DIR_VARIABLE, raising=False)
    assert forget_dead_workers() == []


def test_render_adds_up_every_workers_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers' files, written the way prometheus-client writes them in multiprocess mode
    (a child process per worker), are rendered as one total by any process."""
    writer = (
        "import os, sys; os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]\n"
        "from prometheus_client import CollectorRegistry, Counter, Gauge\n"
        "r = CollectorRegistry(); Counter('assay_test_items_total', 'items', registry=r).inc(int(sys.argv[2]))\n"
        "Gauge('assay_test_spool_bytes', 'bytes', registry=r, multiprocess_mode='livesum').set(int(sys.argv[2]))\n"
    )
    for amount in ("3", "4"):
        subprocess.run([sys.executable, "-c", writer, str(tmp_path), amount], check=True)
    monkeypatch.setenv(MULTIPROCESS_DIR_VARIABLE, str(tmp_path))
    body, _ = render(CollectorRegistry())
    text = body.decode()
    assert "assay_test_items_total 7.0" in text
    # livesum: render does not check liveness (forget_dead_workers removes dead workers' files)
    assert "assay_test_spool_bytes 7.0" in text
    assert metrics.multiprocess_directory() == tmp_path
