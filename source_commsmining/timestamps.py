"""Timestamps of the API, compared as instants rather than as strings."""

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Optional

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


def instant(value: Any, cached: bool = True) -> Optional[datetime]:
    """The time a `created_at` (from the API or a state) stands for; None when it is not one.

    A value that is not a time (`"yesterday"`, year 0, an integer) must never become a watermark:
    a reset to it fails, and comparing it with a real one raises. `cached=False` for a value met
    once (a record's `created_at`): a cache miss and eviction cost more than the parse itself.
    """
    if value.__class__ is not str or not value:
        return None
    try:
        return parse_timestamp(value) if cached else parse_timestamp.__wrapped__(value)
    except (ValueError, TypeError, OverflowError):
        return None


def iso_instant(value: Any) -> Optional[datetime]:
    """An RFC 3339 time as the API and the CDK's cursors write it (`Z` or an offset; naive means UTC); None for
    anything else: a window bound or a cursor is compared exactly, never guessed from a looser form."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
