"""The demo's progress output: redrawn lines on a terminal, one plain line per step in logs and CI."""

from __future__ import annotations

import io
import json

import httpx
import pytest

from deploy import demo


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def accepting_client() -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"accepted": len(json.loads(request.content)["exposures"])})

    return httpx.Client(transport=httpx.MockTransport(handler), base_url="http://exposure.test")


def test_piped_output_has_no_carriage_returns_and_one_line_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    with accepting_client() as client:
        accepted = demo.send(client, "exposures", [{"i": i} for i in range(2500)])
    demo.progress("checkout-button: 2500 exposures accepted")
    assert accepted == 2500
    assert "\r" not in out.getvalue()
    assert out.getvalue() == "  · checkout-button: 2500 exposures accepted\n"


def test_a_terminal_gets_the_redrawn_line_erased_before_the_next_step(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Terminal()
    monkeypatch.setattr("sys.stdout", out)
    with accepting_client() as client:
        demo.send(client, "exposures", [{"i": i} for i in range(2500)])
    frames = out.getvalue()
    assert frames.count("\r  · sending exposures: ") == 3 and "2500/2500" in frames
    assert frames.endswith("\r" + " " * 60 + "\r") and "\n" not in frames
