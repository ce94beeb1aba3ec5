"""Hypothesis strategies more than one suite draws from."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# What a JSON parser may hand a service, NaN and the infinities included (json.dumps writes them).
JSON_SCALARS: st.SearchStrategy[Any] = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)


def json_documents(
    scalars: st.SearchStrategy[Any] = JSON_SCALARS,
    *,
    key_size: int = 10,
    list_size: int = 4,
    object_size: int = 4,
    max_leaves: int = 20,
) -> st.SearchStrategy[Any]:
    """Any JSON value built from `scalars`: lists and objects nested to any depth."""
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=list_size)
            | st.dictionaries(st.text(max_size=key_size), children, max_size=object_size)
        ),
        max_leaves=max_leaves,
    )


# The hostile-input suites' bodies and fields: anything a client might send.
json_values = json_documents()
