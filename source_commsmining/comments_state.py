"""The `comments` stream's incoming state, checked before the CDK's cursor reads it (a state migration).

The CDK's DatetimeBasedCursor would take any cursor it can parse and fail with "Something went
wrong" on one it cannot; and a cursor in the future (a comment the export dated 2099) would make
every later sync export nothing. Here:

- a cursor that is not a time, or a state of the wrong shape, is a config_error saying what was
  received and how to clear it (as stream_results' state.py does);
- a cursor more than MAX_SKEW past now is ignored with a warning: that source is exported again
  from `start_date` (dedup on uid absorbs what was already delivered), so nothing is skipped.
"""

import logging
from dataclasses import InitVar, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, List, Mapping, Optional

from airbyte_cdk.sources.declarative.migrations.state_migration import StateMigration
from airbyte_cdk.sources.types import Config

from source_commsmining.errors import config_error

CURSOR = "timestamp"
MAX_SKEW = timedelta(days=1)
CLEAR_COMMENTS_STATE = (
    "Clear the state of the `comments` stream (in Airbyte: the connection's Settings > Clear data for `comments`) "
    "and sync again: it then exports every comment from `start_date`."
)


def _parse(value: Any) -> Optional[datetime]:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


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
                if CURSOR in cursor and self._future(cursor[CURSOR], f"`states[{index}]` ({_shown(entry.get('partition'))})", now):
                    continue  # that source starts over from start_date
                kept.append(entry)
            state["states"] = kept
        return state

    @staticmethod
    def _future(value: Any, where: str, now: datetime) -> bool:
        parsed = _parse(value)
        if parsed is None:
            raise _bad(f"{where} is {_shown(value)}, not a time such as 2024-01-01T00:00:00.000000Z")
        if parsed > now + MAX_SKEW:
            logging.getLogger("airbyte").warning(
                f"comments: {where} in the state is {value}, in the future (a comment dated ahead of time); it is "
                "ignored and that source is exported again from `start_date` (dedup on uid absorbs what was delivered)."
            )
            return True
        return False


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad(what: str):
    return config_error(f"The state passed for the `comments` stream cannot be read: {what}. {CLEAR_COMMENTS_STATE}")
