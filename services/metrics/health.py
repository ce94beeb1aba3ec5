"""A small HTTP surface for the ingest process: `/healthz` (JSON) and `/metrics` (Prometheus).

Standard library server on a daemon thread, so the consumer loop stays single-threaded;
it only reads the loop's counters. Port `ASSAY_METRICS_PORT` (0 turns it off).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

Snapshot = Callable[[], dict[str, Any]]


class IngestCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        state = self.snapshot()
        counters = state["counters"]
        messages = CounterMetricFamily("assay_ingest_messages", "Messages written to the lake or quarantined",
                                       labels=["outcome"])  # fmt: skip
        messages.add_metric(["exposure"], counters["exposures"])
        messages.add_metric(["event"], counters["events"])
        messages.add_metric(["quarantined"], counters["quarantined"])
        yield messages
        yield CounterMetricFamily("assay_ingest_files", "Parquet files published", value=counters["files"])
        yield CounterMetricFamily("assay_ingest_flushes", "Batches made durable", value=counters["flushes"])
        yield CounterMetricFamily("assay_ingest_commit_failures", "Offset commits that failed",
                                  value=counters["commit_failures"])  # fmt: skip
        yield GaugeMetricFamily("assay_ingest_last_flush_timestamp_seconds", "Unix time of the last flush",
                                value=state["last_flush_at"] or 0)  # fmt: skip


def _handler(snapshot: Snapshot, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                body, kind = json.dumps({"status": "ok", **snapshot()}).encode(), "application/json"
            elif self.path == "/metrics":
                body, kind = generate_latest(registry), CONTENT_TYPE_LATEST
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # probes would flood the log
            return

    return Handler


class HealthServer:
    def __init__(self, host: str, port: int, snapshot: Snapshot) -> None:
        registry = CollectorRegistry()
        registry.register(IngestCollector(snapshot))
        self.server = ThreadingHTTPServer((host, port), _handler(snapshot, registry))
        self.thread = threading.Thread(target=self.server.serve_forever, name="ingest-health", daemon=True)

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
