"""Timestamps of the API, compared as instants rather than as strings."""

from datetime import datetime, timezone
from functools import lru_cache

import pendulum


@lru_cache(maxsize=4096)
def parse_timestamp(value: str) -> datetime:
    """RFC 3339 as the API writes it (fast path), anything else pendulum can read; naive means UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = pendulum.parse(value)
        if not isinstance(parsed, datetime):
            raise ValueError(f"not a timestamp: {value!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
