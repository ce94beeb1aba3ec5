"""Every suite's shared fixtures and helpers live in tests/support/, loaded here as a plugin."""

import pytest

# Helpers there assert too (create_running, the readers); rewrite them for readable failures.
pytest.register_assert_rewrite("tests.support")

pytest_plugins = ["tests.support.fixtures"]
