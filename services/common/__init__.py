"""Shared plumbing for every Assay service: settings, auth, logging, metrics, HTTP."""
