"""Scorecard service: statistics engine, API and HTML pages."""
