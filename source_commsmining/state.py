"""The state of the results tables: one checkpoint per table per Communications Mining stream.

The reader writes up to three tables from one read of each CM stream (`stream_results` and the
flat `stream_result_labels` and `stream_result_fields`); each selected table has its own state,
of the same shape (per-partition, as Airbyte's other partitioned streams write it):

    {"states": [{"partition": {"project": "acme", "dataset": "collections", "stream": "triage"},
                 "cursor": {"continuation": "<batch token>", "created_at": "<watermark>", "batches": 42,
                            "epoch": "9c0f3a51d2e4b786"}}]}

`continuation` is the token of the last batch emitted; `created_at` the creation time of the
newest comment delivered, the watermark a reset goes back to; `batches` how many batches of that
CM stream were emitted in all (across syncs, counted on from the cursor a sync resumed from).
`position_confirmed: true`, only in a sync's last STATE, says that sync ended with the CM stream
advanced exactly to this continuation and no further, so the next sync need not reset it
(position_plan.decide).

Why `batches`: each batch's STATE is emitted once per selected table, and a destination may commit
one table's state and not another's. A CM stream is read once for all tables, so where a sync
resumes it is decided from every selected table's cursor together (position_plan.decide: never
past the oldest committed one); the tables that were ahead get some rows again, which dedup on
their primary key removes. Tokens are opaque, so `batches` orders the cursors: the fewest batches
is the oldest. A cursor written before `batches` existed counts as the oldest (its age is unknown;
only `stream_results` can have one, as the flat tables are newer). A selected table with no cursor
(newly selected) does not move the stream: it gets rows from where the others resume.

`batches` orders positions only along one line of reading: a sync that resumes from a cursor counts
on from it, but a stream started anew (no cursor, or cursors that cannot be ordered) begins a new
count, which says nothing about where the cursors left behind were. So each such start draws a new
`epoch`, which the cursors counted from it carry; cursors of different epochs are not ordered by
`batches` (position_plan resets the stream to the oldest of their watermarks).

A CM stream no longer configured is dropped from the state with one warning: a stream added again
later has no state, so it is started as a first sync starts it, which loses nothing.

Only a value that parses as a time is ever a watermark: a comment whose `created_at` is not one
is delivered as sent but leaves the watermark where it was, and a state whose watermark is not
one (edited by hand, or written before this rule) is read as a state without a watermark, with a
warning (`ResultsState.warnings`), rather than failing every sync from then on.
"""

import copy
import json
import secrets
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import jsonschema

from source_commsmining.api import CmStream
from source_commsmining.errors import config_error
from source_commsmining.flat_tables import RESULTS
from source_commsmining.position_plan import age
from source_commsmining.records import first_few
from source_commsmining.timestamps import instant

POSITION_CONFIRMED = "position_confirmed"

STATE_SCHEMA = {
    "type": "object",
    "required": ["states"],
    "properties": {
        "states": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["partition", "cursor"],
                "properties": {
                    "partition": {
                        "type": "object",
                        "required": ["project", "dataset", "stream"],
                        "properties": {k: {"type": "string", "minLength": 1} for k in ("project", "dataset", "stream")},
                    },
                    "cursor": {
                        "type": "object",
                        "required": ["continuation"],
                        "properties": {
                            "continuation": {"type": "string", "minLength": 1},
                            "created_at": {"type": ["string", "null"]},
                            "position_confirmed": {"type": "boolean"},
                            "batches": {"type": "integer", "minimum": 0},
                            "epoch": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


_CLEAR_STATE = (
    "Clear the stream_results state in Airbyte (the connection's Settings > Clear data, for stream_results and, if "
    "selected, stream_result_labels and stream_result_fields) and "
    "sync again: each Communications Mining stream is then started as start_position says (a stream read since "
    "its creation is refused unless start_position names a choice). Comments that earlier syncs consumed but the "
    "destination did not commit are read again only with a take_over choice or a reset by hand to before them."
)


def _shown(value: Any, limit: int = 200) -> str:
    try:
        text = json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def json_path(path: Iterable[Any], root: str = "$") -> str:
    """`$[0].stream.stream_state`: where in a JSON document a path of keys and indexes leads."""
    return root + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)


def _legacy_shape(raw: Any) -> Optional[str]:
    """What a state of another shape than this connector's looks like, in words; None if it is not one."""
    if not isinstance(raw, Mapping):
        return f"a {type(raw).__name__} ({_shown(raw)}) instead of an object"
    if "states" not in raw:
        keys = ", ".join(sorted(map(str, raw))) or "none"
        return (
            f"an object without `states` (keys: {keys}; {_shown(raw)}), the shape of a single-cursor or legacy "
            "per-stream state, not the per-stream list this connector writes"
        )
    states = raw.get("states")
    if isinstance(states, list) and any(
        isinstance(entry, Mapping) and isinstance(entry.get("partition"), Mapping) and "cm_stream" in entry["partition"]
        for entry in states
    ):
        return (
            "the declarative stream's own per-partition state ({\"partition\": {\"cm_stream\": ...}}), which this "
            f"connector does not write for stream_results ({_shown(raw)})"
        )
    return None


class ResultsState:
    """The cursors of the selected results tables. Thread-confined to the main thread: only it updates and serialises them."""

    def __init__(
        self,
        cursors: Optional[Dict[str, Dict[str, Any]]] = None,
        partitions: Optional[Dict[str, Dict[str, str]]] = None,
        warnings: Optional[List[str]] = None,
        *,
        tables: Optional[Mapping[str, Dict[str, Dict[str, Any]]]] = None,
    ):
        # table -> CM stream key -> cursor. `cursors` alone is the state of stream_results only.
        self._tables: Dict[str, Dict[str, Dict[str, Any]]] = (
            {name: dict(table) for name, table in tables.items()} if tables is not None else {RESULTS: cursors or {}}
        )
        self._partitions: Dict[str, Dict[str, str]] = partitions or {}
        self._written: Dict[str, Dict[str, Any]] = {}  # CM stream key -> the cursor of this sync's last batch
        # Said once at the start of the sync (the reader logs them): what in the given state was set aside.
        self.warnings: List[str] = warnings or []

    @property
    def tables(self) -> List[str]:
        return list(self._tables)

    @classmethod
    def parse(
        cls, raw: Optional[Mapping[str, Any]], configured: Optional[Iterable[CmStream]] = None
    ) -> "ResultsState":
        """The state of stream_results alone (see `parse_tables`)."""
        return cls.parse_tables({RESULTS: raw}, configured)

    @classmethod
    def parse_tables(
        cls, raws: Mapping[str, Optional[Mapping[str, Any]]], configured: Optional[Iterable[CmStream]] = None
    ) -> "ResultsState":
        """The states given for the selected results tables (table -> its stream state, None without one).

        With `configured`, the cursors of CM streams not in it are dropped, with one warning for all.
        """
        keep = None if configured is None else {cm.key for cm in configured}
        tables: Dict[str, Dict[str, Dict[str, Any]]] = {}
        partitions: Dict[str, Dict[str, str]] = {}
        warnings: List[str] = []
        dropped: Dict[str, List[str]] = {}
        for table, raw in raws.items():
            cursors = _parse_table(table, raw, partitions, warnings)
            if keep is not None:
                for key in [key for key in cursors if key not in keep]:
                    dropped.setdefault(key, []).append(table)
                    del cursors[key]
            tables[table] = cursors
        if dropped:
            warnings.append(
                f"The state holds {len(dropped)} Communications Mining stream(s) that are no longer configured, dropped "
                f"from the state: {first_few(sorted(dropped))}. Configured again later, such a stream has no state and "
                "is read as on a first sync."
            )
            for key in dropped:
                partitions.pop(key, None)
        return cls(partitions=partitions, warnings=warnings, tables=tables)

    def cursors(self, cm: CmStream) -> Dict[str, Optional[Dict[str, Any]]]:
        """Each selected table's committed cursor for `cm` (None: none), as position_plan.decide takes them."""
        return {table: copy.copy(cursors[cm.key]) if cm.key in cursors else None for table, cursors in self._tables.items()}

    def update(self, cm: CmStream, continuation: str, created_at: Optional[str], base: Optional[Mapping[str, Any]] = None) -> None:
        """A batch of `cm` at `continuation` was emitted to every selected table: one new cursor for all.

        Counted on from `base` (the cursor the sync resumed `cm` from: position_plan's Outcome.base) for the
        sync's first batch of `cm`, from the previous batch's after that; None starts a new epoch.
        """
        previous = self._written.get(cm.key, base) or {}
        watermark = max_timestamp(previous.get("created_at"), created_at)
        batches = age(previous) + 1 if previous else 1
        epoch = previous.get("epoch") if previous.get("epoch").__class__ is str else secrets.token_hex(8)
        cursor = {"continuation": continuation, "created_at": watermark, "batches": max(batches, 1), "epoch": epoch}
        self._written[cm.key] = cursor
        for table in self._tables.values():
            table[cm.key] = dict(cursor)
        self._partitions[cm.key] = cm.as_partition()

    def confirm(self, cm: CmStream, confirmed: bool = True) -> None:
        """Marks `cm`'s cursor, in every selected table, as the position the CM stream was left at (for the
        sync's last STATE), or, with False, unmarks it (a sync reading `cm` starts so); no cursor, nothing to mark."""
        for table in self._tables.values():
            if cm.key in table:
                if confirmed:
                    table[cm.key][POSITION_CONFIRMED] = True
                else:
                    table[cm.key].pop(POSITION_CONFIRMED, None)

    def as_dict(self, table: str = RESULTS) -> Dict[str, Any]:
        """One table's stream state."""
        return {
            "states": [
                {"partition": dict(self._partitions[key]), "cursor": copy.copy(cursor)}
                for key, cursor in self._tables[table].items()
            ]
        }


def _parse_table(
    table: str, raw: Optional[Mapping[str, Any]], partitions: Dict[str, Dict[str, str]], warnings: List[str]
) -> Dict[str, Dict[str, Any]]:
    """One table's cursors by CM stream key; a state this connector did not write is a config_error."""
    if not raw:
        return {}
    legacy = _legacy_shape(raw)
    if legacy is not None:
        raise config_error(f"The state given for {table} is {legacy}. {_CLEAR_STATE}")
    try:
        jsonschema.validate(raw, STATE_SCHEMA)
    except jsonschema.ValidationError as error:
        message = (
            f"The state given for {table} is of the wrong shape at {json_path(error.absolute_path, 'stream_state')} "
            f"(in its state message): {error.message}. It is not one this connector wrote. "
            f"It may have been edited by hand or come from another connector. {_CLEAR_STATE}"
        )
        raise config_error(message)
    cursors: Dict[str, Dict[str, Any]] = {}
    for index, entry in enumerate(raw["states"]):
        partition = entry["partition"]
        cm = CmStream(partition["project"], partition["dataset"], partition["stream"])
        if cm.key in cursors:
            raise config_error(
                f"The state given for {table} holds Communications Mining stream {cm.key} twice (entry {index + 1} of "
                f"{len(raw['states'])}: {_shown(entry)}; the first: {_shown(cursors[cm.key])}). This connector writes "
                f"one entry per stream, and which of the two the destination committed cannot be told. {_CLEAR_STATE}"
            )
        cursor = dict(entry["cursor"])
        watermark = cursor.get("created_at")
        if watermark is not None and instant(watermark) is None:
            cursor["created_at"] = None
            warnings.append(
                f"{table} {cm.key}: the state's created_at watermark {watermark!r} is not a time, so it is set "
                "aside and this stream is resumed as from a state without a watermark (no reset back to it; only an "
                "advance to the state's continuation). The next comment delivered sets a new watermark."
            )
        cursors[cm.key] = cursor
        partitions[cm.key] = cm.as_partition()
    return cursors


def latest_created_at(records: Iterable[Mapping[str, Any]], untimed: Optional[List[Tuple[Any, Any]]] = None) -> Optional[str]:
    """The newest `created_at` among a batch's records that is a time (the watermark a reset goes back to).

    A record whose `created_at` is not a time is left out, and (uid, value) is added to `untimed`.
    """
    latest: Optional[str] = None
    latest_instant = None
    for record in records:
        value = record.get("created_at")
        if value is None:
            continue
        at = instant(value, cached=False)  # each record's own time: met once
        if at is None:
            if untimed is not None:
                untimed.append((record.get("uid"), value))
            continue
        if latest_instant is None or at > latest_instant:
            latest, latest_instant = value, at
    return latest


def max_timestamp(a: Optional[str], b: Optional[str]) -> Optional[str]:
    """The later of two API timestamps (compared as instants); a value that is not a time never wins."""
    a_at, b_at = instant(a), instant(b)
    if a_at is None:
        return b if b_at is not None else None
    if b_at is None:
        return a
    return a if a_at >= b_at else b
