"""The `stream_results` state: one checkpoint per Communications Mining stream.

Shape (per-partition, as Airbyte's other partitioned streams write it):

    {"states": [{"partition": {"project": "acme", "dataset": "collections", "stream": "triage"},
                 "cursor": {"continuation": "<batch token>", "created_at": "<watermark>"}}]}

`continuation` is the token of the last batch emitted; `created_at` the creation time of the
newest comment delivered, the watermark a reset goes back to. State for streams no longer
configured is carried along untouched, so removing and re-adding a stream loses nothing.
"""

import copy
from typing import Any, Dict, Mapping, Optional

import jsonschema

from source_commsmining.api import CmStream
from source_commsmining.errors import config_error
from source_commsmining.timestamps import parse_timestamp

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
                        },
                    },
                },
            },
        }
    },
}


class ResultsState:
    """Thread-confined to the main thread: only it updates and serialises the state."""

    def __init__(self, cursors: Optional[Dict[str, Dict[str, Any]]] = None, partitions: Optional[Dict[str, Dict[str, str]]] = None):
        self._cursors: Dict[str, Dict[str, Any]] = cursors or {}
        self._partitions: Dict[str, Dict[str, str]] = partitions or {}

    @classmethod
    def parse(cls, raw: Optional[Mapping[str, Any]]) -> "ResultsState":
        if not raw:
            return cls()
        try:
            jsonschema.validate(raw, STATE_SCHEMA)
        except jsonschema.ValidationError as error:
            path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            message = (
                f"The state given for stream_results is not one this connector wrote ({path}: {error.message}). "
                "It may have been edited by hand or come from another connector. Clear the stream_results state "
                "in Airbyte to start from each Communications Mining stream's current position."
            )
            raise config_error(message)
        cursors: Dict[str, Dict[str, Any]] = {}
        partitions: Dict[str, Dict[str, str]] = {}
        for entry in raw["states"]:
            partition = entry["partition"]
            cm = CmStream(partition["project"], partition["dataset"], partition["stream"])
            cursors[cm.key] = dict(entry["cursor"])
            partitions[cm.key] = cm.as_partition()
        return cls(cursors, partitions)

    def cursor(self, cm: CmStream) -> Optional[Dict[str, Any]]:
        cursor = self._cursors.get(cm.key)
        return dict(cursor) if cursor else None

    def update(self, cm: CmStream, continuation: str, created_at: Optional[str]) -> None:
        previous = self._cursors.get(cm.key) or {}
        watermark = max_timestamp(previous.get("created_at"), created_at)
        self._cursors[cm.key] = {"continuation": continuation, "created_at": watermark}
        self._partitions[cm.key] = cm.as_partition()

    def as_dict(self) -> Dict[str, Any]:
        return {
            "states": [
                {"partition": dict(self._partitions[key]), "cursor": copy.copy(cursor)}
                for key, cursor in self._cursors.items()
            ]
        }


def latest_created_at(records) -> Optional[str]:
    """The newest `created_at` among a batch's records (the watermark a reset goes back to)."""
    latest: Optional[str] = None
    for record in records:
        latest = max_timestamp(latest, record.get("created_at"))
    return latest


def max_timestamp(a: Optional[str], b: Optional[str]) -> Optional[str]:
    """The later of two API timestamps (RFC 3339 in UTC, as the API writes them), or either one."""
    if not a:
        return b
    if not b:
        return a
    return a if parse_timestamp(a) >= parse_timestamp(b) else b
