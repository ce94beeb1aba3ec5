"""A real HTTP server that records what the SDK delivers and can misbehave on cue.

It stands in for the exposure service in SDK delivery tests (retries, backoff, 413
splitting, back-pressure), where the behaviour must be scripted exactly.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A script maps the n-th request (0-based) to (status, headers); None means "accept".
Script = Callable[[int, list[dict[str, Any]]], tuple[int, dict[str, str]] | None]


class Recorder:
    def __init__(self, script: Script | None = None) -> None:
        self.script = script
        self.requests = 0
        self.delivered: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def handle(self, kind: str, items: list[dict[str, Any]]) -> tuple[int, dict[str, str], dict[str, Any]]:
        self.gate.wait(timeout=30)
        with self.lock:
            index = self.requests
            self.requests += 1
        scripted = self.script(index, items) if self.script else None
        if scripted is not None:
            status, headers = scripted
            return status, headers, {"detail": "scripted failure"}
        with self.lock:
            self.delivered.update(item["event_id"] for item in items)
            self.kinds[kind] += len(items)
        return 202, {}, {"accepted": len(items), "rejected": []}


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            kind = self.path.rsplit("/", 1)[-1]
            status, headers, payload = recorder.handle(kind, body[kind])
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def recording_server(script: Script | None = None) -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder(script)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    finally:
        recorder.gate.set()
        server.shutdown()
        server.server_close()
