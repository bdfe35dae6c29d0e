"""SourceCommsmining: the manifest, plus the Python that makes `stream_results` safe to read."""

import json
import logging

import jsonschema
from typing import Any, Dict, Generator, Iterable, Iterator, List, Mapping, Optional

from airbyte_cdk.models import (
    AirbyteCatalog,
    AirbyteConnectionStatus,
    AirbyteMessage,
    AirbyteStateBlob,
    AirbyteStateMessage,
    AirbyteStateType,
    AirbyteStreamState,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteStream,
    StreamDescriptor,
    SyncMode,
    Type,
)
from airbyte_cdk.sources.connector_state_manager import ConnectorStateManager
from airbyte_cdk.sources.declarative.yaml_declarative_source import YamlDeclarativeSource
from airbyte_cdk.sources.streams.concurrent.abstract_stream import AbstractStream
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import backlog
from source_commsmining.api import CmApi
from source_commsmining.check import check_connection
from source_commsmining.comments_state import bound_cursor
from source_commsmining.config import as_migrated, validate_config
from source_commsmining.errors import config_error
from source_commsmining.flat_tables import TABLES as RESULTS_TABLES
from source_commsmining.history import HISTORY
from source_commsmining.position_plan import IF_UNREAD
from source_commsmining.stream_position import Positioning
from source_commsmining.records import first_few
from source_commsmining.results_reader import ResultsReader
from source_commsmining.state import ResultsState, json_path
from source_commsmining.shared_pages import SharedPages

CHECK_MAX_RETRIES = 2
COMMENTS = "comments"
# No state this connector (or the CDK) writes comes near this depth; deeper ones make the CDK's parsing recurse out.
MAX_STATE_DEPTH = 64
_TOO_DEEP = object()
CLEAR_STATE_HINT = (
    "Clear the state of the connection's streams (in Airbyte: the connection's Settings > Clear data, or clear "
    "`stream_results` alone) and sync again: stream_results then starts each Communications Mining stream as "
    "start_position says."
)


class SourceCommsmining(YamlDeclarativeSource):
    """Works both ways the Airbyte Source contract is used.

    The console script (run.py) builds it with the catalog, config and state of the run, as the
    CDK's declarative sources want. The CDK's standard tests and other callers build it with no
    arguments and pass the config (and catalog and state) to spec/check/discover/read. The CDK's
    declarative source builds its streams, requesters and state manager from the constructor's
    arguments only, so a call whose arguments differ runs on a source built with them (`_for`).
    """

    # The entrypoint's own spec check gives messages that do not name the field; ours does (validate()).
    check_config_against_spec = False

    def __init__(
        self,
        catalog: Optional[ConfiguredAirbyteCatalog] = None,
        config: Optional[Mapping[str, Any]] = None,
        state: Optional[List[AirbyteStateMessage]] = None,
        config_path: Optional[str] = None,
    ) -> None:
        super().__init__(path_to_yaml="manifest.yaml", catalog=catalog, config=config, state=state, config_path=config_path)
        self._built_for = (catalog, list(state or []))

    def _for(
        self,
        config: Mapping[str, Any],
        catalog: Optional[ConfiguredAirbyteCatalog] = None,
        state: Optional[List[AirbyteStateMessage]] = None,
        *,
        with_catalog_and_state: bool = False,
    ) -> "SourceCommsmining":
        """This source if it was built with these arguments, else a source built with them.

        Why rebuild: the CDK's declarative source builds its streams, requesters, config
        transformations and state manager from the constructor's arguments only (its discover and
        read use `self._config`, not the config they are passed). A caller that builds the source
        with no arguments (the CDK's standard tests) would otherwise run on an empty config. The
        console script builds it with the run's arguments, so there this returns `self`.

        `config` is either the config this source was built with (transformed, as `configure`
        returns it) or a raw one: a raw one is built into a new source, which applies the
        manifest's config transformations.
        """
        same = config is self._config or config == self._config
        if same and with_catalog_and_state:
            same = (catalog, list(state or [])) == self._built_for
        if same:
            return self
        return type(self)(catalog=catalog, config=config, state=state)

    def configure(self, config: Mapping[str, Any], temp_dir: str) -> Mapping[str, Any]:
        """As the CDK's declarative source, without writing `config.json` (the token in clear) to `temp_dir`.

        Nothing reads that file, and a process killed before the temporary directory's cleanup
        would leave it on disk. A source built without a config (the CDK's standard tests) is given
        the raw one here: it is returned as the manifest's config_migrations would leave it
        (config.as_migrated), so that the entrypoint validates the shape the spec describes.
        """
        return self._config or as_migrated(config)

    @classmethod
    def read_state(cls, state_path: str) -> List[AirbyteStateMessage]:
        """The CDK's reading, refusing what it would silently ignore: a legacy dict, LEGACY or typeless messages."""
        if state_path:
            with open(state_path) as file:
                try:
                    raw = json.load(file)
                except json.JSONDecodeError:
                    raw = None  # the CDK's own reading says what is wrong with the file
                except RecursionError:
                    raw = _TOO_DEEP
            if raw is _TOO_DEEP or _nested_deeper_than(raw, MAX_STATE_DEPTH):
                # Python's JSON reader, and the CDK's reading after it, would fail with a bare RecursionError.
                raise config_error(
                    f"The state file {state_path} is nested more than {MAX_STATE_DEPTH} levels deep: it is not a state "
                    f"this connector wrote (its states are a few levels deep). {CLEAR_STATE_HINT}"
                )
            _refuse_legacy_state(raw)
            _refuse_misshapen_state(raw, state_path)
        return super().read_state(state_path)

    def _validate(self):
        spec = self.spec(logging.getLogger("airbyte")).connectionSpecification
        return validate_config(dict(self._config), spec)

    def _api(self, config: Mapping[str, Any]) -> CmApi:
        return CmApi.from_manifest(self._constructor, self.resolved_manifest["definitions"], config)

    def _positioning(self) -> Positioning:
        return Positioning(
            rewind=bool(self._config.get("rewind_on_resume", True)),
            skip_uncommitted=bool(self._config.get("skip_uncommitted_on_refused_resume", False)),
            start_position=self._config.get("start_position") or IF_UNREAD,
            start_date=self._config.get("start_date_for_streams"),
        )

    def streams(self, config: Mapping[str, Any]) -> List[AbstractStream]:  # type: ignore[override]
        source = self._for(config)
        if source is not self:
            return source.streams(source._config)
        streams = super().streams(config)
        for stream in streams:
            if stream.name == COMMENTS:
                bound_cursor(stream.cursor)  # a comment dated 2099 never becomes the cursor (comments_state.py)
        return streams

    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        source = self._for(config)
        if source is not self:
            return source.check(logger, source._config)
        cm_streams = self._validate()
        check_config = {**self._config, "max_retries": min(int(self._config.get("max_retries", 8)), CHECK_MAX_RETRIES)}
        return check_connection(self._api(check_config), self._config["api_endpoint"], cm_streams, logger, self._positioning())

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteCatalog:
        source = self._for(config)
        if source is not self:
            return source.discover(logger, source._config)
        self._validate()
        catalog = super().discover(logger, config)
        for stream in catalog.streams:
            if stream.name in RESULTS_TABLES:
                # Full refresh would overwrite the table with only what is new since the last sync: a loss.
                stream.supported_sync_modes = [SyncMode.incremental]
                stream.source_defined_cursor = True
                stream.default_cursor_field = ["created_at"]
                stream.is_resumable = True
        return catalog

    def read(
        self,
        logger: logging.Logger,
        config: Mapping[str, Any],
        catalog: ConfiguredAirbyteCatalog,
        state: Optional[List[AirbyteStateMessage]] = None,
    ) -> Iterator[AirbyteMessage]:
        source = self._for(config, catalog, state, with_catalog_and_state=True)
        if source is not self:
            yield from source.read(logger, source._config, catalog, state)
            return
        cm_streams = self._validate()
        results = [s for s in catalog.streams if s.stream.name in RESULTS_TABLES]
        others = ConfiguredAirbyteCatalog(streams=[s for s in catalog.streams if s.stream.name not in RESULTS_TABLES])
        results_state = None
        _refuse_ambiguous_state(state or [])
        if results:
            for configured in results:
                if configured.sync_mode != SyncMode.incremental:
                    raise config_error(
                        f"{configured.stream.name} can only be synced incrementally (append, or append + dedup on its "
                        "primary key): reading stream_results and its flat tables consumes the Communications Mining "
                        "streams, so a full refresh would replace the table with just what is new since the last sync."
                    )
            # Refuse a state that does not fit before touching anything.
            manager = ConnectorStateManager(state)
            selected = {s.stream.name for s in results}
            results_state = ResultsState.parse_tables(
                {table: manager.get_stream_state(table, None) for table in RESULTS_TABLES if table in selected}, cm_streams
            )
        history, rest = SharedPages.split(others)
        waiting = backlog.start(backlog.Backlog()) if history else None
        try:
            failure = yield from self._read_declarative(logger, config, others, state, history, rest, waiting)
        finally:
            backlog.stop()
        if results_state is not None:
            reader = ResultsReader(
                api_factory=lambda: self._api(self._config),
                streams=cm_streams,
                state=results_state,
                parallel_streams=int(self._config.get("parallel_streams", 4)),
                max_records=self._config.get("max_records_per_sync"),
                positioning=self._positioning(),
                logger=logger,
            )
            yield from reader.read()
        if failure is not None:
            raise failure

    def _read_declarative(
        self,
        logger: logging.Logger,
        config: Mapping[str, Any],
        others: ConfiguredAirbyteCatalog,
        state: Optional[List[AirbyteStateMessage]],
        history: List[ConfiguredAirbyteStream],
        rest: List[ConfiguredAirbyteStream],
        waiting: Optional[backlog.Backlog],
    ) -> Generator[AirbyteMessage, None, Optional[AirbyteTracedException]]:
        """The CDK's read of the declarative streams; returns its failure (stream_results is still read after it)."""
        try:
            if any(s.stream.name == HISTORY[1] for s in history):
                # dataset_comment_labels from the pages of dataset_comments (shared_pages.py): the CDK reads
                # dataset_comments alone, from the state they share, on a source built for that catalog and state.
                # (dataset_comments alone needs none of this: the CDK reads it as any declarative stream.)
                manager = ConnectorStateManager(state)
                shared = SharedPages(history, {s.stream.name: manager.get_stream_state(s.stream.name, None) for s in history}, logger)
                others = ConfiguredAirbyteCatalog(streams=rest + [shared.configured()])
                state = [m for m in state or [] if _state_name(m) not in HISTORY] + (
                    [_stream_state(HISTORY[0], shared.state)] if shared.state else []
                )
                inner = type(self)(catalog=others, config=self._config, state=state)
                yield from shared.messages(_written(super(SourceCommsmining, inner).read(logger, inner._config, others, state), waiting))
            elif others.streams:
                yield from _written(super().read(logger, config, others, state), waiting)
        except AirbyteTracedException as error:
            return error
        return None


def _written(messages: Iterable[AirbyteMessage], waiting: Optional[backlog.Backlog]) -> Iterator[AirbyteMessage]:
    """The CDK's messages; each dataset_comments record, once handled, lets one more through the backlog."""
    if waiting is None:
        yield from messages
        return
    for message in messages:
        yield message
        if message.type == Type.RECORD and message.record.stream == HISTORY[0]:
            waiting.leave()


def _state_name(message: AirbyteStateMessage) -> Optional[str]:
    stream = message.stream if message.type == AirbyteStateType.STREAM else None
    return stream.stream_descriptor.name if stream is not None else None


def _stream_state(name: str, value: Mapping[str, Any]) -> AirbyteStateMessage:
    return AirbyteStateMessage(
        type=AirbyteStateType.STREAM,
        stream=AirbyteStreamState(stream_descriptor=StreamDescriptor(name=name), stream_state=AirbyteStateBlob(value)),
    )


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests lists/objects more than `limit` levels (iteratively: no recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _refuse_ambiguous_state(state: List[AirbyteStateMessage]) -> None:
    """Two states for one stream, or a state with a namespace: the CDK would keep the last, or none, silently.

    This connector's streams have no namespace, so Airbyte hands their state back without one; a
    namespaced state was written for another connection or edited, and read as "no state" it would
    restart streams from scratch (or, for stream_results, from where the CM stream happens to be).
    """
    seen: Dict[Any, int] = {}
    for message in state:
        if message.type == AirbyteStateType.GLOBAL and message.global_ is not None:
            descriptors = [s.stream_descriptor for s in message.global_.stream_states or []]
        elif message.type == AirbyteStateType.STREAM and message.stream is not None:
            descriptors = [message.stream.stream_descriptor]
        else:
            continue
        for descriptor in descriptors:
            key = (descriptor.name, descriptor.namespace)
            seen[key] = seen.get(key, 0) + 1
    namespaced = sorted(f"{namespace}.{name}" for name, namespace in seen if namespace is not None)
    if namespaced:
        raise config_error(
            f"The state passed to this sync holds {len(namespaced)} stream state(s) with a namespace "
            f"({first_few(namespaced)}). This connector's streams have no namespace, so Airbyte never writes such a "
            f"state for them: it comes from another connection or was edited, and would be ignored. {CLEAR_STATE_HINT}"
        )
    twice = sorted(f"{name} ({count} times)" for (name, _), count in seen.items() if count > 1)
    if twice:
        raise config_error(
            f"The state passed to this sync holds more than one state message for {len(twice)} stream(s): "
            f"{first_few(twice)}. Airbyte keeps one per stream, and which one the destination committed cannot be "
            f"told. {CLEAR_STATE_HINT}"
        )


def _refuse_legacy_state(raw: Any) -> None:
    """The CDK reads only per-stream (and global) state messages: say so instead of dropping the rest."""
    if isinstance(raw, dict):
        keys = ", ".join(sorted(map(str, raw))[:5]) or "no keys"
        raise config_error(
            f"The state passed to this sync is a single object ({keys}): the legacy state shape, which this connector "
            f"does not read. It reads a list of per-stream state messages. {CLEAR_STATE_HINT}"
        )
    if not isinstance(raw, list):
        return
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            continue
        kind = message.get("type")
        if kind is None or str(kind).upper() == "LEGACY":
            received = "has no `type`" if kind is None else "has type LEGACY"
            fields = ", ".join(sorted(map(str, message))) or "nothing"
            raise config_error(
                f"State message {index} {received} (it holds: {fields}); this connector reads only STREAM state "
                f"messages (and GLOBAL ones without shared state), and would otherwise ignore it and read as if "
                f"there were no state. {CLEAR_STATE_HINT}"
            )


_DESCRIPTOR = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": ["string", "null"]}},
}
_STREAM_STATE = {
    "type": "object",
    "required": ["stream_descriptor"],
    "properties": {"stream_descriptor": _DESCRIPTOR, "stream_state": {"type": ["object", "null"]}},
}
# The shape of a state file the CDK reads (a list of STREAM or GLOBAL state messages), down to each
# stream's state, which must be an object: what the CDK would otherwise refuse with an empty path or a
# Python TypeError. What a stream's state holds is checked by its reader (state.ResultsState for the results tables).
STATE_FILE_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": ["STREAM", "GLOBAL"]}},
        "allOf": [
            {"if": {"properties": {"type": {"const": "STREAM"}}}, "then": {"required": ["stream"], "properties": {"stream": _STREAM_STATE}}},
            {
                "if": {"properties": {"type": {"const": "GLOBAL"}}},
                "then": {
                    "required": ["global"],
                    "properties": {
                        "global": {
                            "type": "object",
                            "required": ["stream_states"],
                            "properties": {
                                "shared_state": {"type": ["object", "null"]},
                                "stream_states": {"type": "array", "items": _STREAM_STATE},
                            },
                        }
                    },
                },
            },
        ],
    },
}
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number", type(None): "null"}


def _refuse_misshapen_state(raw: Any, state_path: str) -> None:
    """A state file that is not a list of state messages down to each stream's state object: a config_error
    saying where in the file and what was found, instead of the CDK's schema error or a TypeError."""
    if raw is None:
        return  # `null`, like `[]`: no state (the CDK reads both so)
    errors = list(jsonschema.Draft7Validator(STATE_FILE_SCHEMA).iter_errors(raw))
    if not errors:
        return
    first = min(error.absolute_path[0] if error.absolute_path else -1 for error in errors)  # the first message at fault
    error = jsonschema.exceptions.best_match(e for e in errors if (e.absolute_path[0] if e.absolute_path else -1) == first)
    found = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
    if error.validator == "required":
        problem = error.message.replace("is a required property", "is missing")
    elif error.validator in ("enum", "const"):
        problem = f"{json.dumps(error.instance)[:60]} is not STREAM or GLOBAL"
    else:
        expected = " or ".join(_JSON_TYPES.get({"object": dict, "array": list, "string": str, "null": type(None)}.get(t), t)
                               for t in ([error.validator_value] if isinstance(error.validator_value, str) else error.validator_value))
        problem = f"{found} ({json.dumps(error.instance, default=str)[:60]}) where {expected} is expected"
    raise config_error(
        f"The state file {state_path} is of the wrong shape at {json_path(error.absolute_path)}: {problem}. A state "
        "file is a list of state messages ({\"type\": \"STREAM\", \"stream\": {\"stream_descriptor\": {\"name\": ...}, "
        "\"stream_state\": {...}}}), as Airbyte passes them; this one was edited by hand or written by something else. "
        f"{CLEAR_STATE_HINT} Run by hand, remove the file (or pass no --state) to sync without state."
    )
