"""Both dataset history streams from the same pages: one read of `dataset_comments` serves `dataset_comment_labels`.

When `dataset_comment_labels` is selected, SourceCommsmining.read has the CDK read `dataset_comments`
alone (on a source built for that catalog and state: about 0.9 s of start-up more) and emits, from
each of its records, the record (if selected) and its label rows (history.label_rows), and from each
of its STATE messages one for each selected stream (the same cursor: the same pages were read). Each
stream keeps its own state; when the two states differ (one was cleared, or selected later), the read
starts over for both (None), which is what the one without state needs.
"""

import logging
from dataclasses import replace
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Tuple

from airbyte_cdk.models import (
    AirbyteMessage,
    AirbyteRecordMessage,
    ConfiguredAirbyteCatalog,
    ConfiguredAirbyteStream,
    StreamDescriptor,
    SyncMode,
    Type,
)

from source_commsmining.history import COMMENTS, HISTORY, LABELS, label_rows


class SharedPages:
    """Reads the selected history streams from one read of `dataset_comments` (see the module's docstring)."""

    def __init__(self, selected: List[ConfiguredAirbyteStream], states: Mapping[str, Any], logger: logging.Logger):
        self.selected = {configured.stream.name: configured for configured in selected}
        self._logger = logger
        self._warned = False
        wanted = [states.get(name) for name in self.selected]
        full_refresh = any(configured.sync_mode == SyncMode.full_refresh for configured in selected)
        # One read for both: from the state they share, or from the start when they do not share one.
        self.state = None if full_refresh or any(state != wanted[0] for state in wanted) else wanted[0]
        if len(wanted) > 1 and self.state is None and any(wanted) and not full_refresh:
            logger.info(f"{COMMENTS} and {LABELS} have different states: both are read again from `start_date`.")

    @classmethod
    def split(cls, catalog: ConfiguredAirbyteCatalog) -> Tuple[List[ConfiguredAirbyteStream], List[ConfiguredAirbyteStream]]:
        """(the selected history streams, every other selected stream)."""
        history = [s for s in catalog.streams if s.stream.name in HISTORY]
        return history, [s for s in catalog.streams if s.stream.name not in HISTORY]

    def configured(self) -> ConfiguredAirbyteStream:
        """`dataset_comments` as the CDK reads it for both: incremental from the shared state."""
        first = next(iter(self.selected.values()))
        stream = self.selected.get(COMMENTS, first).stream
        if COMMENTS not in self.selected:
            stream = replace(stream, name=COMMENTS)
        return ConfiguredAirbyteStream(stream=stream, sync_mode=SyncMode.incremental,
                                       destination_sync_mode=first.destination_sync_mode, cursor_field=["created_at"])

    def messages(self, messages: Iterable[AirbyteMessage]) -> Iterator[AirbyteMessage]:
        want_comments, want_labels = COMMENTS in self.selected, LABELS in self.selected
        for message in messages:
            kind = message.type
            if kind == Type.RECORD and message.record.stream == COMMENTS:
                if want_comments:
                    yield message
                if want_labels:
                    rows, skipped = label_rows(message.record.data)
                    if skipped:
                        self._warn(message.record.data, skipped)
                    emitted_at = message.record.emitted_at
                    for row in rows:
                        yield AirbyteMessage(type=Type.RECORD,
                                             record=AirbyteRecordMessage(stream=LABELS, data=row, emitted_at=emitted_at))
            elif kind == Type.STATE and _state_stream(message) == COMMENTS:
                for name in self.selected:
                    yield _renamed_state(message, name)
            elif kind == Type.TRACE and _trace_stream(message) == COMMENTS:
                for name in self.selected:
                    yield _renamed_trace(message, name)
            else:
                yield message

    def _warn(self, record: Mapping[str, Any], skipped: int) -> None:
        if not self._warned:
            self._warned = True
            self._logger.warning(
                f"{LABELS}: {skipped} label(s) of comment {record.get('uid')} in {record.get('project')}/"
                f"{record.get('dataset')} have no name this connector can read (neither a string nor a list of levels); "
                f"they are left out of {LABELS} and stay in {COMMENTS}. Later ones are left out without another warning."
            )


def _state_stream(message: AirbyteMessage) -> Optional[str]:
    stream = message.state.stream if message.state is not None else None
    return stream.stream_descriptor.name if stream is not None else None


def _trace_stream(message: AirbyteMessage) -> Optional[str]:
    trace = message.trace
    if trace is None:
        return None
    for part in (trace.stream_status, trace.error):
        descriptor = getattr(part, "stream_descriptor", None)
        if descriptor is not None:
            return descriptor.name
    return None


def _renamed_state(message: AirbyteMessage, name: str) -> AirbyteMessage:
    state = message.state
    stream = replace(state.stream, stream_descriptor=StreamDescriptor(name=name))
    return AirbyteMessage(type=Type.STATE, state=replace(state, stream=stream))


def _renamed_trace(message: AirbyteMessage, name: str) -> AirbyteMessage:
    trace = message.trace
    descriptor = StreamDescriptor(name=name)
    parts = {field: replace(getattr(trace, field), stream_descriptor=descriptor)
             for field in ("stream_status", "error") if getattr(trace, field, None) is not None}
    return AirbyteMessage(type=Type.TRACE, trace=replace(trace, **parts))
