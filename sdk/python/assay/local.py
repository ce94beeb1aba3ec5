"""Local evaluation: poll `/v1/config` (with ETag) and evaluate in-process with the same
bucketing code as the assignment service."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from assay.evaluation import UNKNOWN_EXPERIMENT, Decision, evaluate
from assay.models import ExperimentConfig
from assay.sticky import StickyStore

log = logging.getLogger("assay.sdk")
STORE_FREE_REASONS = frozenset({"not_running", "override"})


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
            self.experiments = {
                e["key"]: ExperimentConfig.model_validate(e) for e in body.get("experiments", [])
            }
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
) -> Decision:
    """Same order as the service: not running -> override -> stored -> eligibility -> hash."""
    config = experiments.get(experiment)
    if config is None:
        return UNKNOWN_EXPERIMENT
    decision = evaluate(config, unit_id, attributes)
    if store is None or decision.reason in STORE_FREE_REASONS:
        return decision
    stored = store.get(unit_id, experiment)
    if stored is not None and stored in config.variant_keys():
        return Decision(stored, "sticky")
    if decision.variant is None:
        return decision
    variant, newly_stored = store.set_if_absent(unit_id, experiment, decision.variant)
    return Decision(variant, "hash" if newly_stored else "sticky")
