"""The experiment registry in Redis: documents, overrides and audit log.

Every write runs as one optimistic transaction (WATCH the registry, compute the change
with the pure rules in `changes`, MULTI/EXEC), bumps the config version and publishes it, so
every assignment process refreshes its cached config.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from assay.timefmt import utc_now_rfc3339
from redis.exceptions import WatchError

from services.assignment.changes import (
    build_created,
    build_status_change,
    build_updated,
    check_metrics,
    check_override_variant,
)
from services.assignment.schemas import ExperimentCreate, ExperimentUpdate, StatusChange
from services.common.catalog import Catalog, load_catalog
from services.common.registry import keys
from services.common.registry.errors import RegistryError, not_found
from services.common.registry.models import AuditEntry, ExperimentPublic, parse_docs
from services.common.registry.reader import RegistryReader

MAX_WRITE_ATTEMPTS = 20
Docs = dict[str, ExperimentPublic]
# A write plan: the new document, what changed, and extra commands for the transaction.
Plan = tuple[ExperimentPublic, dict[str, Any], Callable[[Any], None] | None]


class Registry(RegistryReader):
    """The registry's only writer; reads come from the shared `RegistryReader`."""

    def __init__(
        self, redis: aioredis.Redis, *, catalog: Catalog | None = None, max_audit_entries: int = 10_000
    ) -> None:
        super().__init__(redis)
        self.catalog = catalog or load_catalog()
        self.max_audit_entries = max_audit_entries

    async def create(self, body: ExperimentCreate, actor: str) -> ExperimentPublic:
        check_metrics(body.metrics, self.catalog)

        def plan(docs: Docs, now: str) -> Plan:
            doc = build_created(body, docs, now)
            return doc, {"created": doc.model_dump(mode="json")}, None

        return await self._write(body.key, "create", actor, plan)

    async def update(self, key: str, body: ExperimentUpdate, actor: str) -> ExperimentPublic:
        if body.metrics is not None:
            check_metrics(body.metrics, self.catalog)

        def plan(docs: Docs, now: str) -> Plan:
            doc, changes = build_updated(_current(docs, key), body, docs, now)
            return doc, changes, None

        return await self._write(key, "update", actor, plan, reason=body.reason)

    async def change_status(self, key: str, change: StatusChange, actor: str) -> ExperimentPublic:
        def plan(docs: Docs, now: str) -> Plan:
            if change.status == "running" and _current(docs, key).status == "draft":
                check_metrics(_current(docs, key).metrics, self.catalog)  # the catalog may have changed since
            doc, changes = build_status_change(_current(docs, key), change, now)
            return doc, changes, None

        return await self._write(key, "status", actor, plan, reason=change.reason)

    async def set_override(self, key: str, unit_id: str, variant: str, actor: str) -> ExperimentPublic:
        def plan(docs: Docs, now: str) -> Plan:
            current = _current(docs, key)
            check_override_variant(current, variant)
            doc = current.model_copy(update={"version": current.version + 1, "updated_at": now})
            return (
                doc,
                {"override": {"unit_id": unit_id, "to": variant}},
                (lambda pipe: pipe.hset(keys.overrides_key(key), unit_id, variant)),
            )

        return await self._write(key, "override_set", actor, plan)

    async def delete_override(self, key: str, unit_id: str, actor: str) -> ExperimentPublic:
        if not await self.redis.hexists(keys.overrides_key(key), unit_id):
            await self.get_experiment(key)
            raise RegistryError(404, f"unit '{unit_id}' has no override in experiment '{key}'")

        def plan(docs: Docs, now: str) -> Plan:
            current = _current(docs, key)
            doc = current.model_copy(update={"version": current.version + 1, "updated_at": now})
            return (
                doc,
                {"override": {"unit_id": unit_id, "to": None}},
                (lambda pipe: pipe.hdel(keys.overrides_key(key), unit_id)),
            )

        return await self._write(key, "override_delete", actor, plan)

    async def overrides(self, key: str) -> dict[str, str]:
        raw = await self.redis.hgetall(keys.overrides_key(key))
        return {str(unit): str(variant) for unit, variant in raw.items()}

    async def audit(self, key: str, limit: int) -> list[AuditEntry]:
        await self.get_experiment(key)
        raw = await self.redis.lrange(keys.audit_key(key), -limit, -1)
        return [AuditEntry.model_validate_json(item) for item in raw]

    async def _write(
        self, key: str, action: str, actor: str,
        plan: Callable[[Docs, str], Plan], reason: str = "",
    ) -> ExperimentPublic:  # fmt: skip
        for _ in range(MAX_WRITE_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(keys.EXPERIMENTS)
                    docs = parse_docs(await pipe.hgetall(keys.EXPERIMENTS))
                    doc, changes, extra = plan(docs, utc_now_rfc3339())
                    if not changes:
                        return doc
                    entry = AuditEntry(at=doc.updated_at, actor=actor, action=action,
                                       changes=changes, reason=reason, version=doc.version)  # fmt: skip
                    pipe.multi()
                    pipe.hset(keys.EXPERIMENTS, key, doc.model_dump_json())
                    pipe.rpush(keys.audit_key(key), entry.model_dump_json())
                    pipe.ltrim(keys.audit_key(key), -self.max_audit_entries, -1)
                    if extra is not None:
                        extra(pipe)
                    pipe.incr(keys.CONFIG_VERSION)
                    results = await pipe.execute()
                except WatchError:
                    continue
            await self.redis.publish(keys.CONFIG_CHANNEL, json.dumps({"version": results[-1], "key": key}))
            return doc
        raise RegistryError(409, "too many concurrent changes to the registry; retry the request")


def _current(docs: Docs, key: str) -> ExperimentPublic:
    if key not in docs:
        raise not_found(key)
    return docs[key]
