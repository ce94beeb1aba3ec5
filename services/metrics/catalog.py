"""The metric catalog moved to `services.common.catalog` (every service reads it); this name
stays so code written against the old path keeps working."""

from services.common.catalog import (
    DEFINITION_FIELDS,
    METRIC_TYPES,
    Catalog,
    CatalogError,
    EventMeasure,
    MetricDefinition,
    catalog_version,
    load_catalog,
    parse_catalog,
)

__all__ = ["DEFINITION_FIELDS", "METRIC_TYPES", "Catalog", "CatalogError", "EventMeasure", "MetricDefinition",
           "catalog_version", "load_catalog", "parse_catalog"]  # fmt: skip
