"""The governed metric catalog and the KPI tree, as JSON (admin keys)."""

from __future__ import annotations

from typing import Annotated, Any

from assay.timefmt import utc_now_rfc3339
from fastapi import APIRouter, HTTPException, Path

from services.common.catalog import Catalog, catalog_version
from services.common.definitions import DefinitionHistory
from services.common.errors import AUTHENTICATED, INVALID, STORE_UNAVAILABLE, error
from services.common.registry.reader import RegistryReader
from services.scorecard.api.deps import AdminKey, CatalogDep, DefinitionsDep, RegistryDep
from services.scorecard.catalog_views import experiments_by_role, kpi_tree, metric_detail, metric_public

router = APIRouter(prefix="/v1", tags=["catalog"], responses={**AUTHENTICATED, **INVALID, **STORE_UNAVAILABLE})
MetricPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$", examples=["conversion"])]


@router.get("/metrics")
async def list_metrics(
    principal: AdminKey, catalog: CatalogDep, registry: RegistryDep, definitions: DefinitionsDep
) -> dict[str, Any]:
    await definitions.record(catalog.metrics, utc_now_rfc3339())
    experiments = await registry.list_experiments()
    return {
        "catalog_version": catalog_version(catalog.metrics),
        "metrics": [
            {**metric_public(metric), "experiments": experiments_by_role(metric.name, experiments)}
            for metric in catalog.metrics
        ],
    }


async def load_metric(
    name: str, catalog: Catalog, registry: RegistryReader, definitions: DefinitionHistory
) -> dict[str, Any]:
    metric = catalog.get(name)
    if metric is None:
        raise HTTPException(404, f"the metric catalog has no metric '{name}'; GET /v1/metrics lists them")
    await definitions.record([metric], utc_now_rfc3339())
    versions = await definitions.versions(name)
    return metric_detail(metric, catalog, versions, await registry.list_experiments())


@router.get("/metrics/{name}", responses={404: error("the catalog has no metric of this name")})
async def get_metric(
    name: MetricPath, principal: AdminKey, catalog: CatalogDep, registry: RegistryDep, definitions: DefinitionsDep
) -> dict[str, Any]:
    return await load_metric(name, catalog, registry, definitions)


@router.get("/kpi-tree")
async def get_kpi_tree(principal: AdminKey, catalog: CatalogDep, registry: RegistryDep) -> dict[str, Any]:
    return kpi_tree(catalog, await registry.list_experiments())
