"""Reads `stream_results` so that nothing the server counts as consumed is ever lost; prints its messages.

Reading a Communications Mining stream is destructive: once it is advanced past a comment,
the API will not serve that comment again. So, per configured stream:

    GET /results -> hand the batch to the main thread -> main thread yields its RECORDs, then
    a STATE holding the batch continuation, then flushes stdout -> only then POST /advance.

The work is split so each part can be read and tested alone:

- position_plan.py: where a stream starts (the decision), stream_position.py: its calls;
- stream_reading.py: one stream's generator (GET, hand over, advance; the stuck detector, the model version);
- scheduling.py: runs the generators inline or on worker threads, in rounds that share `max_records_per_sync`;
- this module: `ResultsReader`, which wires them and is the only one that yields messages.

The generator of a stream is resumed only after the main thread printed the previous message,
so after the STATE's yield returns and the flush, the batch and its checkpoint are on the stdout
file descriptor. If the process dies anywhere, the server has consumed at most what was already
printed with its STATE.

Each batch is written to every selected results table: `stream_results` (a record per comment)
and the flat `stream_result_labels` and `stream_result_fields` (flat_tables.py), all RECORDs
first, then one STATE per table, then the flush; a table not selected is not built. The state of
each table is its own (a destination may commit one and not another): see state.py.
"""

import logging
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterator, List, Optional

from airbyte_cdk.models import AirbyteMessage, AirbyteStreamStatus, FailureType, Level
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import messages
from source_commsmining.api import CmApi, CmStream
from source_commsmining.errors import describe
from source_commsmining.flat_tables import FLAT_TABLES, RESULTS
from source_commsmining.reading_events import Batch, Log
from source_commsmining.scheduling import Scheduler
from source_commsmining.state import ResultsState
from source_commsmining.stream_position import Positioning
from source_commsmining.stream_reading import StreamReading

PROGRESS_INTERVAL_SECONDS = 10.0


@dataclass
class _Progress:
    """What one CM stream delivered so far in this sync, for its progress lines."""

    records: int = 0
    batches: int = 0
    rows: Dict[str, int] = field(default_factory=dict)  # flat table -> rows emitted
    position: str = ""
    logged_at: float = field(default_factory=time.monotonic)


def _is_config_error(error: BaseException) -> bool:
    return isinstance(error, AirbyteTracedException) and error.failure_type == FailureType.config_error


class ResultsReader:
    """Reads the configured CM streams into the selected results tables; the only part that yields messages.

    Built per sync with the connector's settings (source.py); `read()` runs the sync and, whatever
    happens, ends with one STATE per selected table.
    """

    def __init__(
        self,
        api_factory: Callable[[], CmApi],
        streams: List[CmStream],
        state: ResultsState,
        *,
        parallel_streams: int = 4,
        max_records: Optional[int] = None,
        positioning: Optional[Positioning] = None,
        start_position: Optional[str] = None,
        flush: Optional[Callable[[], None]] = None,
        logger: Optional[logging.Logger] = None,
    ):
        self._streams = streams
        self._state = state
        self._parallel_streams = parallel_streams
        self._max_records = max_records
        self._flush = flush or (lambda: messages.flush_stdout())  # looked up per call: tests patch it
        self._logger = logger or logging.getLogger("airbyte")
        # The selected results tables, in emission order; stream_results is built always (the flat rows and the
        # watermark come from its records) but emitted only when selected.
        self._tables = [table for table in (RESULTS, *FLAT_TABLES) if table in state.tables]
        self._flat = tuple(table for table in self._tables if table in FLAT_TABLES)
        self._stop = threading.Event()
        positioning = positioning or Positioning()
        if start_position is not None:  # a shorthand for tests
            positioning = replace(positioning, start_position=start_position)
        self._reading = StreamReading(api_factory, positioning, self._flat, self._stop)

    # ------------------------------------------------------------------ main thread
    def _statuses(self, value: AirbyteStreamStatus) -> Iterator[AirbyteMessage]:
        for table in self._tables:
            yield messages.status(value, table)

    def _states(self) -> Iterator[AirbyteMessage]:
        """One STATE per selected table, each its own per-stream state."""
        for table in self._tables:
            yield messages.state(self._state.as_dict(table), table)

    def read(self) -> Iterator[AirbyteMessage]:
        yield from self._statuses(AirbyteStreamStatus.STARTED)
        for warning in self._state.warnings:
            yield messages.log(warning, Level.WARN)
        if not self._streams:
            yield messages.log("stream_results: no Communications Mining streams are configured (`streams` is empty).")
            yield from self._states()
            yield from self._statuses(AirbyteStreamStatus.COMPLETE)
            return
        cursors = {cm.key: self._state.cursors(cm) for cm in self._streams}
        for cm in self._streams:  # only the sync's last STATE may say where a stream it reads was left
            self._state.confirm(cm, False)
        progress = {cm.key: _Progress() for cm in self._streams}
        errors: List[BaseException] = []
        clean: List[CmStream] = []  # streams whose reading ended without an error
        running_sent = False
        scheduler = Scheduler(
            self._streams,
            lambda cm, share: self._reading.events(cm, cursors[cm.key], share),
            parallel_streams=self._parallel_streams,
            max_records=self._max_records,
            stop=self._stop,
        )
        events = scheduler.events()
        with closing(events):
            for event in events:
                if isinstance(event, Batch):
                    if not running_sent:
                        yield from self._statuses(AirbyteStreamStatus.RUNNING)
                        running_sent = True
                    emitted_at = messages.now_ms()
                    if self._tables[0] == RESULTS:
                        for data in event.records:
                            yield messages.record(data, emitted_at)
                    for table in self._flat:
                        for data in event.rows[table]:
                            yield messages.record(data, emitted_at, table)
                    self._state.update(event.cm, event.continuation, event.watermark, self._reading.bases.get(event.cm.key))
                    yield from self._states()
                    # Resumed: the entrypoint has printed the last STATE. Push it to the fd; only then may the stream advance.
                    self._flush()
                    event.delivered.set()
                    log = self._progress(event.cm, progress[event.cm.key], event)
                    if log:
                        yield messages.log(log)
                elif isinstance(event, Log):
                    yield messages.log(event.message, event.level)
                else:
                    yield messages.log(self._progress(event.cm, progress[event.cm.key], None) or "")
                    if event.error is not None:
                        errors.append(event.error)
                        yield messages.log(f"stream_results {event.cm.key} failed: {describe(event.error)}", Level.ERROR)
                    else:
                        clean.append(event.cm)
        # Every worker is done: the streams that ended cleanly where this sync put them say so (position_confirmed).
        for cm in clean:
            if self._reading.positioned.get(cm.key):
                self._state.confirm(cm)
        # A last checkpoint even when no batch came: Airbyte expects one per sync.
        yield from self._states()
        self._flush()
        if errors:
            yield from self._statuses(AirbyteStreamStatus.INCOMPLETE)
            # Every failure was logged above; the sync's one error is a config_error if any stream had one
            # (it says what the user must change; retrying will not help), else the first to arrive.
            reported = next((e for e in errors if _is_config_error(e)), errors[0])
            if isinstance(reported, AirbyteTracedException):
                raise reported
            raise AirbyteTracedException(
                message=f"stream_results failed: {describe(reported)}",
                internal_message=repr(reported),
                failure_type=FailureType.system_error,
            ) from reported
        yield from self._statuses(AirbyteStreamStatus.COMPLETE)

    @staticmethod
    def _progress(cm: CmStream, progress: _Progress, batch: Optional[Batch]) -> Optional[str]:
        """A progress line per CM stream at most every PROGRESS_INTERVAL_SECONDS, and one at its end."""
        if batch is not None:
            progress.records += len(batch.records)
            progress.batches += 1
            progress.position = batch.continuation
            for table, rows in batch.rows.items():
                progress.rows[table] = progress.rows.get(table, 0) + len(rows)
        now = time.monotonic()
        if batch is not None and now - progress.logged_at < PROGRESS_INTERVAL_SECONDS:
            return None
        progress.logged_at = now
        word = "progress" if batch is not None else "finished"
        position = progress.position or "unchanged"
        flat = "".join(f", {rows} rows of {table}" for table, rows in progress.rows.items())
        return (
            f"stream_results {cm.key} {word}: {progress.records} records in {progress.batches} batches{flat}, "
            f"position {position}"
        )
