"""The `stream_results` state: one checkpoint per Communications Mining stream.

Shape (per-partition, as Airbyte's other partitioned streams write it):

    {"states": [{"partition": {"project": "acme", "dataset": "collections", "stream": "triage"},
                 "cursor": {"continuation": "<batch token>", "created_at": "<watermark>"}}]}

`continuation` is the token of the last batch emitted; `created_at` the creation time of the
newest comment delivered, the watermark a reset goes back to. `position_confirmed: true`, only
in a sync's last STATE, says that sync ended with the CM stream advanced exactly to this
continuation and no further, so the next sync need not reset it (ResultsReader._resume). State for streams no longer
configured is carried along untouched, so removing and re-adding a stream loses nothing.

Only a value that parses as a time is ever a watermark: a comment whose `created_at` is not one
is delivered as sent but leaves the watermark where it was, and a state whose watermark is not
one (edited by hand, or written before this rule) is read as a state without a watermark, with a
warning (`ResultsState.warnings`), rather than failing every sync from then on.
"""

import copy
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import jsonschema

from source_commsmining.api import CmStream
from source_commsmining.errors import config_error
from source_commsmining.timestamps import instant

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
                        },
                    },
                },
            },
        }
    },
}


_CLEAR_STATE = (
    "Clear the stream_results state in Airbyte (the connection's Settings > Clear data, for stream_results) and "
    "sync again: each Communications Mining stream is then read from its current position. Comments that earlier "
    "syncs consumed but the destination did not commit are read again only if you reset the stream in "
    "Communications Mining to before them."
)


def _shown(value: Any, limit: int = 200) -> str:
    try:
        text = json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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
    """Thread-confined to the main thread: only it updates and serialises the state."""

    def __init__(
        self,
        cursors: Optional[Dict[str, Dict[str, Any]]] = None,
        partitions: Optional[Dict[str, Dict[str, str]]] = None,
        warnings: Optional[List[str]] = None,
    ):
        self._cursors: Dict[str, Dict[str, Any]] = cursors or {}
        self._partitions: Dict[str, Dict[str, str]] = partitions or {}
        # Said once at the start of the sync (the reader logs them): what in the given state was set aside.
        self.warnings: List[str] = warnings or []

    @classmethod
    def parse(cls, raw: Optional[Mapping[str, Any]]) -> "ResultsState":
        if not raw:
            return cls()
        legacy = _legacy_shape(raw)
        if legacy is not None:
            raise config_error(f"The state given for stream_results is {legacy}. {_CLEAR_STATE}")
        try:
            jsonschema.validate(raw, STATE_SCHEMA)
        except jsonschema.ValidationError as error:
            path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            message = (
                f"The state given for stream_results is not one this connector wrote ({path}: {error.message}). "
                f"It may have been edited by hand or come from another connector. {_CLEAR_STATE}"
            )
            raise config_error(message)
        cursors: Dict[str, Dict[str, Any]] = {}
        partitions: Dict[str, Dict[str, str]] = {}
        warnings: List[str] = []
        for entry in raw["states"]:
            partition = entry["partition"]
            cm = CmStream(partition["project"], partition["dataset"], partition["stream"])
            cursor = dict(entry["cursor"])
            watermark = cursor.get("created_at")
            if watermark is not None and instant(watermark) is None:
                cursor["created_at"] = None
                warnings.append(
                    f"stream_results {cm.key}: the state's created_at watermark {watermark!r} is not a time, so it is set "
                    "aside and this stream is resumed as from a state without a watermark (no reset back to it; only an "
                    "advance to the state's continuation). The next comment delivered sets a new watermark."
                )
            cursors[cm.key] = cursor
            partitions[cm.key] = cm.as_partition()
        return cls(cursors, partitions, warnings)

    def cursor(self, cm: CmStream) -> Optional[Dict[str, Any]]:
        cursor = self._cursors.get(cm.key)
        return dict(cursor) if cursor else None

    def update(self, cm: CmStream, continuation: str, created_at: Optional[str]) -> None:
        """A batch's checkpoint: a fresh cursor, so without `position_confirmed` (more may follow it)."""
        previous = self._cursors.get(cm.key) or {}
        watermark = max_timestamp(previous.get("created_at"), created_at)
        self._cursors[cm.key] = {"continuation": continuation, "created_at": watermark}
        self._partitions[cm.key] = cm.as_partition()

    def confirm(self, cm: CmStream, confirmed: bool = True) -> None:
        """Marks `cm`'s cursor as where the stream was left (for the sync's last STATE), or, with False, unmarks
        it (a sync reading `cm` starts so); no cursor, nothing to mark."""
        cursor = self._cursors.get(cm.key)
        if cursor:
            cursor = {key: value for key, value in cursor.items() if key != "position_confirmed"}
            self._cursors[cm.key] = {**cursor, "position_confirmed": True} if confirmed else cursor

    def as_dict(self) -> Dict[str, Any]:
        return {
            "states": [
                {"partition": dict(self._partitions[key]), "cursor": copy.copy(cursor)}
                for key, cursor in self._cursors.items()
            ]
        }


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
        at = instant(value)
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
