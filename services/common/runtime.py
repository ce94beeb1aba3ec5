"""Process start-up shared by every service entry point."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import multiprocessing.process
import os
import shutil
import signal
import socket
import tempfile
import threading
import time

import uvicorn
from starlette.types import ASGIApp

from services.common.metrics import MULTIPROCESS_DIR_VARIABLE

log = logging.getLogger("assay.runtime")
SUPERVISE_SECONDS = 0.5
QUICK_DEATH_SECONDS = 5.0  # a worker that dies sooner than this counts as a failed start
QUICK_DEATHS_TO_GIVE_UP = 3
PR_SET_PDEATHSIG = 1  # prctl(2)


def tune_garbage_collector() -> None:
    """Objects alive after start-up (modules, app, config) are moved out of the collector's
    reach, and young collections run less often: request handling allocates many short-lived
    objects, and frequent full scans show up as tail latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def serve(app: ASGIApp, host: str, port: int, *, graceful_seconds: int = 5) -> None:
    """Run `app` with uvicorn the way every Assay service runs: our JSON logging (no uvicorn
    log config, no access log of its own), a tuned collector, a bounded graceful shutdown."""
    tune_garbage_collector()
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=graceful_seconds)  # fmt: skip


def _listening_socket(host: str, port: int, *, shared: bool = True) -> socket.socket:
    """A socket bound with SO_REUSEPORT (`shared`): each worker has its own, and the kernel
    spreads new connections over them. (One shared socket lets whichever worker wakes first
    accept a whole burst of connections: measured, all six of a client's connections on one
    worker.) Unshared, the bind fails while any other socket holds the address."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _die_with(supervisor: int) -> None:
    """Have Linux send this worker SIGTERM when the supervisor dies, even by SIGKILL: an
    orphaned worker would go on serving and hold its spool slot against the next start."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # gone before the request took effect
        raise SystemExit(0)


def _run_worker(factory: str, host: str, port: int, graceful_seconds: int, supervisor: int) -> None:
    """One worker process: its own listening socket, uvicorn serving `factory`'s app."""
    _die_with(supervisor)
    config = uvicorn.Config(factory, factory=True, host=host, port=port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=graceful_seconds)  # fmt: skip
    uvicorn.Server(config).run(sockets=[_listening_socket(host, port)])


class _Workers:
    """The supervisor's view of its worker processes."""

    def __init__(self, factory: str, host: str, port: int, graceful_seconds: int) -> None:
        self.args = (factory, host, port, graceful_seconds, os.getpid())
        self.context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state shared
        self.processes: list[multiprocessing.process.BaseProcess] = []
        self.started: list[float] = []
        self.quick_deaths = 0

    def start(self, index: int) -> None:
        process = self.context.Process(target=_run_worker, args=self.args, name=f"assay-worker-{index}")
        process.start()
        if index < len(self.processes):
            self.processes[index], self.started[index] = process, time.monotonic()
        else:
            self.processes.append(process)
            self.started.append(time.monotonic())

    def replace_dead(self) -> None:
        """Start a new worker in place of each dead one; give up (SystemExit) when workers keep
        dying right after they start (a broken app or an address taken by another program)."""
        for index, process in enumerate(self.processes):
            if process.is_alive():
                continue
            lived = time.monotonic() - self.started[index]
            facts = {"pid": process.pid, "exitcode": process.exitcode, "lived_seconds": round(lived, 1)}
            log.warning("worker died; starting another", extra=facts)
            self.quick_deaths = self.quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
            if self.quick_deaths >= QUICK_DEATHS_TO_GIVE_UP:
                raise SystemExit(f"workers keep dying at start-up (exit code {process.exitcode}); see the log above")
            self.start(index)

    def stop(self, grace: float) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def serve_workers(factory: str, host: str, port: int, workers: int, *, graceful_seconds: int = 5) -> None:
    """Run `workers` uvicorn worker processes on one port; each builds its app by calling
    `factory` ("module:function"), which sets up its own logging and collector.

    Each worker listens on a socket of its own (SO_REUSEPORT). This process supervises them:
    it starts a new worker in place of one that dies, and on SIGTERM or SIGINT it asks every
    worker to shut down gracefully. Prometheus metrics run in multiprocess mode: every worker
    writes its samples to files in a directory made fresh for this run (workers are spawned,
    so they see the variable at import), and `/metrics`, served by whichever worker takes the
    scrape, adds up all of them. The directory is removed on exit.
    """
    # The address must be free: an unshared bind fails even against another program's
    # SO_REUSEPORT socket (an old instance still running would otherwise take half the load).
    _listening_socket(host, port, shared=False).close()
    directory = tempfile.mkdtemp(prefix="assay-prometheus-")
    os.environ[MULTIPROCESS_DIR_VARIABLE] = directory
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    pool = _Workers(factory, host, port, graceful_seconds)
    try:
        for index in range(workers):
            pool.start(index)
        log.info("serving with worker processes", extra={"workers": workers, "port": port})
        while not stopping.wait(SUPERVISE_SECONDS):
            pool.replace_dead()
    finally:
        pool.stop(graceful_seconds + 5)
        shutil.rmtree(directory, ignore_errors=True)
