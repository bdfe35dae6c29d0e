"""The `comments` stream's incoming state, checked before the CDK's cursor reads it (a state migration).

The CDK's DatetimeBasedCursor would take any cursor it can parse and fail with "Something went
wrong" on one it cannot; and a cursor in the future (a comment the export dated 2099) would make
every later sync export nothing. Here:

- a cursor that is not a time, or a state of the wrong shape, is a config_error saying what was
  received and how to clear it (as stream_results' state.py does);
- a cursor more than MAX_SKEW past now is ignored with a warning: that source is exported again
  from `start_date` (dedup on uid absorbs what was already delivered), so nothing is skipped;
- the global cursor the CDK keeps beside the per-source ones is dropped: the CDK would start a source
  new since the last sync there, after the other sources' latest comment, skipping its history.

And so that no sync writes such a cursor in the first place, `bound_cursor` bounds what the CDK's
cursor observes (`CursorBound`): a comment dated past its export's `to_timestamp` (or now +
MAX_SKEW) is delivered as it is, and the cursor takes the bound instead of its date. The CDK's
DatetimeBasedCursor has no option for this (its end_datetime bounds the slices, not the values it
observes), and a transformation would change the record.
"""

import logging
import threading
from dataclasses import InitVar, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional

from airbyte_cdk.sources.declarative.migrations.state_migration import StateMigration
from airbyte_cdk.sources.types import Config, Record

from source_commsmining.errors import config_error
from source_commsmining.state import json_path
from source_commsmining.timestamps import iso_instant

CURSOR = "timestamp"
MAX_SKEW = timedelta(days=1)
CLEAR_COMMENTS_STATE = (
    "Clear the state of the `comments` stream (in Airbyte: the connection's Settings > Clear data for `comments`) "
    "and sync again: it then exports every comment from `start_date`."
)




@dataclass
class CommentsStateCheck(StateMigration):
    config: Config
    parameters: InitVar[Mapping[str, Any]]

    def __post_init__(self, parameters: Mapping[str, Any]) -> None:
        pass

    def should_migrate(self, stream_state: Mapping[str, Any]) -> bool:
        return bool(stream_state)

    def migrate(self, stream_state: Mapping[str, Any]) -> Mapping[str, Any]:
        now = datetime.now(timezone.utc)
        state = dict(stream_state)
        if CURSOR in state:
            if self._future(state[CURSOR], "the stream's cursor", now):
                state.pop(CURSOR)
        for key in ("state",):
            inner = state.get(key)
            if inner is None:
                continue
            if not isinstance(inner, dict):
                raise _bad(f"`{key}` is {_shown(inner)}, not an object holding a `{CURSOR}`")
            if CURSOR in inner and self._future(inner[CURSOR], "the global cursor", now):
                state[key] = {k: v for k, v in inner.items() if k != CURSOR}
        if "states" in state:
            entries = state["states"]
            if not isinstance(entries, list):
                raise _bad(f"`states` is {_shown(entries)}, not a list of per-source cursors")
            kept: List[Any] = []
            for index, entry in enumerate(entries):
                cursor = entry.get("cursor") if isinstance(entry, dict) else None
                if not isinstance(cursor, dict):
                    raise _bad(f"`states[{index}]` is {_shown(entry)}, not {{\"partition\": ..., \"cursor\": {{\"{CURSOR}\": ...}}}}")
                partition = entry.get("partition")
                if not isinstance(partition, dict):
                    # The CDK would key it as it is, match no source, and read that source as if it had no state.
                    where = json_path(["states", index, "partition"], "stream_state")
                    raise _bad(
                        f"it is of the wrong shape at {where} (in its state message): {_json_type(partition)} "
                        f"({_shown(partition)}) where an object naming the source is expected "
                        f"({{\"parent_slice\": {{}}, \"source_id\": ...}})"
                    )
                if CURSOR in cursor and self._future(cursor[CURSOR], f"`states[{index}]` ({_shown(entry.get('partition'))})", now):
                    continue  # that source starts over from start_date
                kept.append(entry)
            state["states"] = kept
            if not state.get("use_global_cursor"):
                # The CDK starts a source without an entry (one new since the last sync) at this global cursor, the
                # latest comment of every other source: it would skip the new source's history. Without it, such a
                # source starts at `start_date`, as a first sync does. (Kept when the CDK went over to a global cursor.)
                state.pop("state", None)
        return state

    @staticmethod
    def _future(value: Any, where: str, now: datetime) -> bool:
        parsed = iso_instant(value)
        if parsed is None:
            raise _bad(f"{where} is {_shown(value)}, not a time such as 2024-01-01T00:00:00.000000Z")
        if parsed > now + MAX_SKEW:
            logging.getLogger("airbyte").warning(
                f"comments: {where} in the state is {value}, in the future (a comment dated ahead of time); it is "
                "ignored and that source is exported again from `start_date` (dedup on uid absorbs what was delivered)."
            )
            return True
        return False


def _json_type(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number", type(None): "null"}.get(
        type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad(what: str):
    return config_error(f"The state passed for the `comments` stream cannot be read: {what}. {CLEAR_COMMENTS_STATE}")


# The slice's end (the export's to_timestamp): DatetimeBasedCursor's default partition_field_end.
SLICE_END = "end_time"
_CURSOR_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # the manifest's datetime_format for `comments`


class CursorBound:
    """The `comments` cursor's `observe`, bounded: a record's `timestamp` past min(its slice's end, now +
    MAX_SKEW) is observed as that bound. The record itself (already queued for output) is never changed:
    the cursor is given a copy. One warning per source names the source and the first such value.

    Called for every record: a value whose date is two days or more before the bound is passed on
    after one string comparison (the UTC offsets the API may use move a time by less than a day)."""

    def __init__(self, observe: Callable[[Record], None]):
        self._observe = observe
        self._limits: Dict[str, Any] = {}  # slice end -> (its time, the date string below which no value can pass it)
        self._last: Any = (None, None)
        self._warned: set = set()
        self._lock = threading.Lock()  # partitions of several sources are observed in parallel

    def __call__(self, record: Record) -> None:
        data = record.data
        value = data.get(CURSOR) if type(data) is dict or isinstance(data, Mapping) else None
        if type(value) is str:
            stream_slice = record.associated_slice
            last = self._last  # (slice, its limits): a partition's records come one after another
            end, clearly_before = last[1] if last[0] is stream_slice else self._limits_of(stream_slice)
            if value[:10] >= clearly_before:
                stamp = iso_instant(value)
                if stamp is not None:
                    bound = _bound(end)
                    if stamp > bound:
                        self._warn(record, value, bound)
                        record = Record(data={**data, CURSOR: bound.strftime(_CURSOR_FORMAT)}, stream_name=record.stream_name,
                                        associated_slice=record.associated_slice)
        self._observe(record)

    def _limits_of(self, stream_slice: Any) -> Any:
        cursor_slice = getattr(stream_slice, "cursor_slice", None) or {}
        end_value = cursor_slice.get(SLICE_END)
        limits = self._limits.get(end_value) if isinstance(end_value, str) else None
        if limits is None:
            end = iso_instant(end_value)
            limits = (end, (_bound(end) - timedelta(days=2)).strftime("%Y-%m-%d"))
            if end is not None:
                self._limits[end_value] = limits
        if limits[0] is not None:
            self._last = (stream_slice, limits)
        return limits

    def _warn(self, record: Record, value: Any, bound: datetime) -> None:
        data = record.data
        source_id = (record.associated_slice or {}).get("source_id") if record.associated_slice is not None else None
        key = source_id or f"{data.get('project')}/{data.get('source')}"
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        logging.getLogger("airbyte").warning(
            f"comments: source {data.get('project')}/{data.get('source')} (id {source_id}) sent comment {data.get('uid')} "
            f"dated {value}, after the end of its export ({bound.strftime(_CURSOR_FORMAT)}; the export ends at the sync's "
            f"start, at most {MAX_SKEW} ahead of now). The comment is delivered as it is; the source's cursor is kept at "
            "that end, not moved to the comment's date, so later syncs still export the source's new comments. Later "
            "comments of this source dated ahead are treated the same, without another warning."
        )


def _bound(end: Optional[datetime]) -> datetime:
    """The latest time the cursor may take in a slice ending at `end` (None: unknown): min(end, now + MAX_SKEW)."""
    latest = datetime.now(timezone.utc) + MAX_SKEW
    return latest if end is None or end > latest else end


def bound_cursor(cursor: Any) -> None:
    """Bounds what `cursor` (the built `comments` stream's, whose `observe` the CDK calls for every record it
    reads) takes from a record; see CursorBound. Pinned in unit_tests/test_cdk_contract.py."""
    if not isinstance(cursor.observe, CursorBound):
        cursor.observe = CursorBound(cursor.observe)
