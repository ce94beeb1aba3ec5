"""Local evaluation: poll `/v1/config` (with ETag) and evaluate in-process with the same
bucketing code as the assignment service."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from assay.evaluation import UNKNOWN_EXPERIMENT, Assignment, apply_sticky, consults_sticky, evaluate
from assay.models import ExperimentConfig
from assay.sticky import StickyStore

log = logging.getLogger("assay.sdk")


class ConfigPoller:
    """Keeps the latest running-experiment configs; keeps the last good copy on errors."""

    def __init__(self, http: httpx.Client, interval: float) -> None:
        self.http = http
        self.interval = interval
        self.experiments: dict[str, ExperimentConfig] = {}
        self.etag: str | None = None
        self.fetches = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """One poll; True when the config changed."""
        headers = {"If-None-Match": self.etag} if self.etag else {}
        try:
            response = self.http.get("/v1/config", headers=headers)
            self.fetches += 1
            if response.status_code == 304:
                return False
            response.raise_for_status()
            body = response.json()
            self.experiments = {e["key"]: ExperimentConfig.model_validate(e) for e in body.get("experiments", [])}
            self.etag = response.headers.get("etag")
            return True
        except Exception as exc:  # the app must keep running on the last good config
            self.errors += 1
            log.warning("assay config poll failed: %s", type(exc).__name__)
            return False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="assay-config-poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def decide_locally(
    experiments: Mapping[str, ExperimentConfig],
    experiment: str,
    unit_id: str,
    attributes: Mapping[str, Any] | None,
    store: StickyStore | None,
) -> Assignment:
    """The service's rule (`apply_sticky`: override > stored > fresh evaluation) over a local
    store: look the unit up, and store the fresh variant only when nothing is stored yet."""
    config = experiments.get(experiment)
    if config is None:
        return UNKNOWN_EXPERIMENT
    fresh = evaluate(config, unit_id, attributes)
    if store is None or not consults_sticky(fresh):
        return fresh
    known = apply_sticky(config, fresh, store.get(unit_id, experiment))
    if known is not fresh or fresh.variant is None:
        return known
    variant, newly_stored = store.set_if_absent(unit_id, experiment, fresh.variant)
    return apply_sticky(config, fresh, variant, newly_stored)
