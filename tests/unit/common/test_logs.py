"""One log entry is one line, whatever a client put in a path or an id."""

from __future__ import annotations

import json
import logging

from services.common.logs import JsonFormatter


def test_client_text_with_line_breaks_stays_on_one_line() -> None:
    hostile = "/v1/experiments/\u00e5\u2028x\x85y\r\nz\x1c\u2029"
    record = logging.makeLogRecord({"msg": "request", "levelname": "INFO", "path": hostile})
    line = JsonFormatter("test").format(record)
    assert line.isascii() and len(line.splitlines()) == 1
    assert json.loads(line)["path"] == hostile
