"""`python -m bench.noop_app`: the floor for `/v1/assign` throughput.

A FastAPI app that accepts the `/v1/assign` body (parsed into a plain pydantic model, no
auth, no middleware, no Redis) and answers a constant JSON document, served by uvicorn with
the same settings as the assignment service. Port from `ASSAY_NOOP_PORT`.
"""

from __future__ import annotations

import os
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

CONSTANT_ANSWER = {
    "unit_id": "noop", "degraded": False,
    "assignments": {"bench-checkout": {"variant": "control", "reason": "sticky"}},
}  # fmt: skip


class NoopAssignRequest(BaseModel):
    unit_id: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    experiments: list[str] | None = None


def create_app() -> FastAPI:
    app = FastAPI(title="Assay benchmark no-op")

    @app.get("/healthz")
    async def get_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/assign")
    async def assign_unit(body: NoopAssignRequest) -> dict[str, Any]:
        return CONSTANT_ANSWER

    return app


def main() -> None:
    # Same uvicorn settings as `python -m services.assignment`.
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=int(os.environ.get("ASSAY_NOOP_PORT", "8099")),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
