"""Exposure service: ingests SDK exposures and events into Kafka, with a disk spool."""
