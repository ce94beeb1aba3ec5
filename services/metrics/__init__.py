"""Metrics: ingest (Kafka -> Parquet lake), metric catalog, Spark job (lake -> sufficient statistics)."""
