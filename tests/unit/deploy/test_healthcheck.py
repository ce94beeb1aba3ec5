from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.healthcheck import http_probe, probe_for, scheduler_probe


@pytest.mark.parametrize(
    ("command", "found"),
    [
        (["python", "-m", "services.assignment"], True),
        (["python", "-m", "services.metrics", "ingest"], True),
        (["/usr/bin/java", "-cp", "x", "org.apache.spark.deploy.worker.Worker", "spark://m:7077"], True),
        (["python", "-m", "services.metrics", "run", "--experiment", "k"], True),
        (["sleep", "infinity"], False),
    ],
)
def test_every_image_command_has_its_own_probe(command: list[str], found: bool) -> None:
    assert (probe_for(command) is not None) is found


def test_the_scheduler_is_probed_through_its_status_file() -> None:
    assert probe_for(["python", "-m", "services.metrics", "run", "--all-running", "--every", "900"]) is scheduler_probe


def test_http_probe_reports_the_port_it_reads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ASSAY_ASSIGNMENT_PORT", str(server.server_address[1]))
        assert http_probe("ASSAY_ASSIGNMENT_PORT", 8001, "/readyz")() is None
        assert "404" in (http_probe("ASSAY_ASSIGNMENT_PORT", 8001, "/healthz")() or "")
    finally:
        server.shutdown()
        server.server_close()
