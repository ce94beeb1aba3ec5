"""Deployment helpers: embedded servers and the local process runner."""
