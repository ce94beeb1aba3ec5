"""Experiment registry endpoints (admin keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query

from services.assignment.api.deps import AdminKey, CacheDep, RegistryDep
from services.assignment.changes import RegistryError
from services.assignment.registry import Registry
from services.assignment.schemas import (
    AuditEntry,
    ExperimentCreate,
    ExperimentPublic,
    ExperimentUpdate,
    OverrideSet,
    StatusChange,
    check_unit_id,
)
from services.common.errors import AUTHENTICATED, INVALID, STORE_UNAVAILABLE, TOO_LARGE, Responses, error

router = APIRouter(
    prefix="/v1/experiments", tags=["experiments"],
    responses={**AUTHENTICATED, **INVALID, **TOO_LARGE, **STORE_UNAVAILABLE},
)  # fmt: skip
KeyPath = Annotated[str, Path(min_length=1, max_length=64, examples=["checkout-button"])]
UnitPath = Annotated[str, Path(min_length=1, max_length=256)]
NEW_EXPERIMENT = {
    "key": "checkout-button", "name": "Green checkout button", "owner": "payments",
    "hypothesis": "A green button raises conversion",
    "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
    "metrics": {"primary": ["conversion"], "secondary": ["revenue"], "guardrails": ["latency_ms"]},
}  # fmt: skip
NOT_FOUND: Responses = {404: error("no such experiment")}
CONFLICT: Responses = {**NOT_FOUND, 409: error("conflicts with the experiment's state or version")}


def _http(exc: RegistryError) -> HTTPException:
    return HTTPException(exc.status_code, exc.message)


def _unit(unit_id: str) -> str:
    try:
        return check_unit_id(unit_id)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


async def _refreshed(cache: CacheDep, registry: Registry, doc: ExperimentPublic) -> ExperimentPublic:
    # This process sees its own write at once; others follow via pub/sub.
    await cache.reload()
    return doc


@router.post("", status_code=201, responses={409: error("an experiment with this key exists")})
async def create_experiment(
    body: Annotated[ExperimentCreate, Body(openapi_examples={"two variants": {"value": NEW_EXPERIMENT}})],
    principal: AdminKey, registry: RegistryDep, cache: CacheDep,
) -> ExperimentPublic:  # fmt: skip
    try:
        doc = await registry.create(body, principal.key_id)
    except RegistryError as exc:
        raise _http(exc) from exc
    return await _refreshed(cache, registry, doc)


@router.get("")
async def list_experiments(principal: AdminKey, registry: RegistryDep) -> list[ExperimentPublic]:
    return await registry.list_experiments()


@router.get("/{key}", responses=NOT_FOUND)
async def get_experiment(key: KeyPath, principal: AdminKey, registry: RegistryDep) -> ExperimentPublic:
    try:
        return await registry.get_experiment(key)
    except RegistryError as exc:
        raise _http(exc) from exc


@router.patch("/{key}", responses=CONFLICT)
async def update_experiment(
    key: KeyPath, body: ExperimentUpdate, principal: AdminKey, registry: RegistryDep, cache: CacheDep
) -> ExperimentPublic:
    try:
        doc = await registry.update(key, body, principal.key_id)
    except RegistryError as exc:
        raise _http(exc) from exc
    return await _refreshed(cache, registry, doc)


@router.post("/{key}/status", responses=CONFLICT)
async def change_experiment_status(
    key: KeyPath, body: StatusChange, principal: AdminKey, registry: RegistryDep, cache: CacheDep
) -> ExperimentPublic:
    try:
        doc = await registry.change_status(key, body, principal.key_id)
    except RegistryError as exc:
        raise _http(exc) from exc
    return await _refreshed(cache, registry, doc)


@router.get("/{key}/audit", responses=NOT_FOUND)
async def get_experiment_audit(
    key: KeyPath, principal: AdminKey, registry: RegistryDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AuditEntry]:  # fmt: skip
    try:
        return await registry.audit(key, limit)
    except RegistryError as exc:
        raise _http(exc) from exc


@router.get("/{key}/overrides", responses=NOT_FOUND)
async def list_overrides(key: KeyPath, principal: AdminKey, registry: RegistryDep) -> dict[str, str]:
    try:
        await registry.get_experiment(key)
    except RegistryError as exc:
        raise _http(exc) from exc
    return await registry.overrides(key)


@router.put("/{key}/overrides/{unit_id}", responses=CONFLICT)
async def set_override(
    key: KeyPath, unit_id: UnitPath, body: OverrideSet, principal: AdminKey,
    registry: RegistryDep, cache: CacheDep,
) -> dict[str, str]:  # fmt: skip
    try:
        await registry.set_override(key, _unit(unit_id), body.variant, principal.key_id)
    except RegistryError as exc:
        raise _http(exc) from exc
    await cache.reload()
    return {"experiment": key, "unit_id": unit_id, "variant": body.variant}


@router.delete("/{key}/overrides/{unit_id}", status_code=204, responses=CONFLICT)
async def delete_override(
    key: KeyPath, unit_id: UnitPath, principal: AdminKey, registry: RegistryDep, cache: CacheDep
) -> None:
    try:
        await registry.delete_override(key, _unit(unit_id), principal.key_id)
    except RegistryError as exc:
        raise _http(exc) from exc
    await cache.reload()
