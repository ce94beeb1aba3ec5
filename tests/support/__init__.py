"""What the test suites share, in one place: registered as a pytest plugin by tests/conftest.py.

- `fixtures`: every shared fixture (the session Redis, broker, SparkSession and services, and
  the per-test Redis and broker a test may kill), so no suite copies or re-imports another's.
- `services`: keys, service environments, HTTP clients and request bodies for the services.
- `kafka`: starting a Tansu broker and reading topics back.
- `ingest`: producing to the topics, the metrics ingest process and reading the lake.
- `eventually`: waiting for a condition, in place of hand-written polling loops.
- `strategies`: Hypothesis strategies more than one suite draws from.
"""
