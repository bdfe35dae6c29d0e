"""Timestamps of the API, compared as instants rather than as strings."""

from functools import lru_cache

import pendulum


@lru_cache(maxsize=4096)
def parse_timestamp(value: str) -> pendulum.DateTime:
    parsed = pendulum.parse(value)
    if not isinstance(parsed, pendulum.DateTime):
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed
