"""`make compose-test`: the docker-compose stack on a real Docker engine, end to end.

Builds the image offline (deploy/offline), brings the stack up, drives an experiment through
the public APIs and the Python SDK, checks the scorecard, repeats the job on the `cluster`
profile, scales exposure and ingest out, and tears everything down. Where no Docker engine
can run it says why and exits 0.
"""
