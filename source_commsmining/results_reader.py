"""Reads `stream_results` so that nothing the server counts as consumed is ever lost.

Reading a Communications Mining stream is destructive: once it is advanced past a comment,
the API will not serve that comment again. So, per configured stream:

    GET /results -> hand the batch to the main thread -> main thread yields its RECORDs, then
    a STATE holding the batch continuation, then flushes stdout -> only then POST /advance.

With one stream to read (or `parallel_streams: 1`) all of it runs inline in the main thread;
otherwise each stream gets a worker thread (up to `parallel_streams` at once) that fetches and
advances while the main thread alone prints. Either way one generator per stream,
`_partition_events`, holds the logic.

The main thread is the only one that yields messages; the generator is resumed by `launch()`
only after it printed the previous message, so after the STATE's yield returns and the flush,
the batch and its checkpoint are on the stdout file descriptor. If the process dies anywhere,
the server has consumed at most what was already printed with its STATE.

Each batch is written to every selected results table: `stream_results` (a record per comment)
and the flat `stream_result_labels` and `stream_result_fields` (flat_tables.py), all RECORDs
first, then one STATE per table, then the flush; a table not selected is not built. The state of
each table is its own (a destination may commit one and not another): see state.py.

With `max_records_per_sync` (comments, whatever the tables), the streams share the cap in rounds (`_scheduled_events`), so no
stream is starved by the ones read before it.

At the start of a sync each stream is put where the given state says (the destination's last
commit): reset to the state's `created_at` watermark (when `rewind_on_resume`), then advance
to its continuation. See README "Delivery guarantees".
"""

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from airbyte_cdk.models import AirbyteMessage, AirbyteStreamStatus, FailureType, Level
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import messages
from source_commsmining.api import CmApi, CmStream
from source_commsmining.envelope import BadResponse
from source_commsmining.errors import describe
from source_commsmining.flat_tables import FLAT_TABLES, RESULTS, batch_rows
from source_commsmining.records import build_records, describe_problems, first_few
from source_commsmining.state import ResultsState, latest_created_at

PROGRESS_INTERVAL_SECONDS = 10.0
# A stream whose /results keeps answering at the same continuation ("nothing yet, more to come",
# or the same batch after an advance) this many times in a row is stopped for the sync with a
# warning, rather than polled forever; before each repeat it waits the next of these delays, so a
# server that is only catching up gets a few seconds.
STUCK_CALLS = 5
STUCK_WAITS_SECONDS = (0.25, 0.5, 1.0, 2.0)
_ACK_POLL_SECONDS = 0.2
_UNREAD = object()  # a stream's model version before its definition was read


@dataclass
class _Batch:
    cm: CmStream
    records: List[Dict[str, Any]]
    continuation: str
    watermark: Optional[str]
    delivered: threading.Event = field(default_factory=threading.Event)
    # The rows of the selected flat tables, by table (built in the stream's own thread).
    rows: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)


@dataclass
class _Log:
    message: str
    level: Level = Level.INFO


@dataclass
class _Done:
    cm: CmStream
    error: Optional[BaseException] = None


@dataclass
class _Paused:
    """The stream used its share of the record cap for this round (see `_scheduled_events`)."""

    cm: CmStream


_Event = Union[_Batch, _Log, _Done, _Paused]


@dataclass
class _Share:
    """Records a stream may still start batches for in this round; None: no cap."""

    left: Optional[int] = None


@dataclass
class _Reading:
    """One CM stream across the rounds of a sync: its generator and its share."""

    cm: CmStream
    share: _Share
    events: Iterator[_Event]
    paused: bool = False


@dataclass
class _Progress:
    records: int = 0
    batches: int = 0
    rows: Dict[str, int] = field(default_factory=dict)  # flat table -> rows emitted
    position: str = ""
    logged_at: float = field(default_factory=time.monotonic)


def _is_config_error(error: BaseException) -> bool:
    return isinstance(error, AirbyteTracedException) and error.failure_type == FailureType.config_error


def _reset_permissions(cm: CmStream) -> str:
    """UiPath's reset page: a reset needs what consuming needs; "Modify streams" only changes a stream's definition."""
    return (
        f"A reset needs the 'Consume streams' and 'View labels' permissions on project '{cm.project}' (the same as "
        "reading the stream); if the token has them, the API refused the reset for the reason it gives."
    )


def _repeated_uids(records: List[Dict[str, Any]]) -> List[Tuple[Any, int]]:
    """(uid, times) of the uids that come more than once in one batch, in batch order."""
    if len(records) < 2:
        return []
    seen: Dict[Any, int] = {}
    for record in records:
        uid = record["uid"]
        seen[uid] = seen.get(uid, 0) + 1
    if len(seen) == len(records):
        return []
    return [(uid, count) for uid, count in seen.items() if count > 1]


class ResultsReader:
    def __init__(
        self,
        api_factory: Callable[[], CmApi],
        streams: List[CmStream],
        state: ResultsState,
        *,
        parallel_streams: int = 4,
        max_records: Optional[int] = None,
        rewind_on_resume: bool = True,
        skip_uncommitted_on_refused_resume: bool = False,
        flush: Optional[Callable[[], None]] = None,
        logger: Optional[logging.Logger] = None,
    ):
        self._api_factory = api_factory
        self._streams = streams
        self._state = state
        self._parallel = max(1, min(parallel_streams, len(streams) or 1))
        self._max_records = max_records
        self._rewind = rewind_on_resume
        self._skip_uncommitted = skip_uncommitted_on_refused_resume
        self._flush = flush or (lambda: messages.flush_stdout())  # looked up per call: tests patch it
        self._logger = logger or logging.getLogger("airbyte")
        # The selected results tables, in emission order; stream_results is built always (the flat rows and the
        # watermark come from its records) but emitted only when selected.
        self._tables = [table for table in (RESULTS, *FLAT_TABLES) if table in state.tables]
        self._flat = tuple(table for table in self._tables if table in FLAT_TABLES)
        self._events: "queue.Queue[_Event]" = queue.Queue()
        self._stop = threading.Event()
        self._emitted = 0  # written by the main thread only

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
        cursors = {cm.key: self._state.cursor(cm) for cm in self._streams}
        progress = {cm.key: _Progress() for cm in self._streams}
        errors: List[BaseException] = []
        running_sent = False
        events = self._scheduled_events(cursors)
        with closing(events):
            for event in events:
                if isinstance(event, _Batch):
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
                    self._state.update(event.cm, event.continuation, event.watermark)
                    yield from self._states()
                    # Resumed: the entrypoint has printed the last STATE. Push it to the fd; only then may the stream advance.
                    self._flush()
                    self._emitted += len(event.records)
                    event.delivered.set()
                    log = self._progress(event.cm, progress[event.cm.key], event)
                    if log:
                        yield messages.log(log)
                elif isinstance(event, _Log):
                    yield messages.log(event.message, event.level)
                else:
                    yield messages.log(self._progress(event.cm, progress[event.cm.key], None) or "")
                    if event.error is not None:
                        errors.append(event.error)
                        yield messages.log(f"stream_results {event.cm.key} failed: {describe(event.error)}", Level.ERROR)
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

    def _scheduled_events(self, cursors: Dict[str, Optional[Dict[str, Any]]]) -> Iterator[_Event]:
        """Reads every stream, in rounds when `max_records_per_sync` caps the sync.

        Without a cap there is one round and each stream is read to its end. With a cap, a
        first-come cap would let the streams read first (config order, `parallel_streams` at a
        time) fill it every sync and starve the others. So the cap is shared out instead: each
        round, every stream still open gets an equal share of what is left of the cap (rounded up),
        and reads until its own records in the round reach it (its last call asks the API for only
        what the share has left, so it stops at a batch boundary without going over) or its end. What streams
        that ended did not use is shared again among the others in the next round, until the cap
        is reached or every stream has ended. Each stream's share depends only on the cap and on
        what the streams returned, never on thread timing: the same data gives the same split.
        """
        readings = []
        for cm in self._streams:
            share = _Share()
            readings.append(_Reading(cm, share, self._partition_events(cm, cursors[cm.key], share)))
        # One stream at a time needs no threads: reading inline spares a thread hand-off per batch.
        executor = None if self._parallel == 1 else ThreadPoolExecutor(self._parallel, thread_name_prefix="cm-stream")
        try:
            while readings:
                if self._max_records is not None:
                    left = self._max_records - self._emitted
                    if left <= 0:
                        for reading in readings:  # paused at a batch boundary, after its last advance
                            reading.events.close()
                            yield _Log(f"stream_results {reading.cm.key}: stopping at the cap of {self._max_records} records per sync.")
                            yield _Done(reading.cm)
                        return
                    for reading in readings:
                        reading.share.left = -(-left // len(readings))
                yield from self._round_inline(readings) if executor is None else self._round_threads(executor, readings)
                readings = [reading for reading in readings if reading.paused]
        finally:
            if executor is not None:
                # Any worker still waiting for its batch to be delivered gives up without advancing.
                self._stop.set()
                executor.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _round_inline(readings: List[_Reading]) -> Iterator[_Event]:
        """One round, the streams one after the other in the calling (main) thread."""
        for reading in readings:
            reading.paused = False
            try:
                for event in reading.events:
                    if isinstance(event, _Paused):
                        reading.paused = True
                        break
                    yield event
            except Exception as error:
                yield _Done(reading.cm, error)
                continue
            if not reading.paused:
                yield _Done(reading.cm)

    def _round_threads(self, executor: ThreadPoolExecutor, readings: List[_Reading]) -> Iterator[_Event]:
        """One round, up to `parallel_streams` streams at once, one worker thread each."""
        for reading in readings:
            reading.paused = False
            executor.submit(self._run_worker, reading)
        pending = len(readings)
        while pending:
            event = self._events.get()
            if isinstance(event, (_Done, _Paused)):
                pending -= 1
            if not isinstance(event, _Paused):
                yield event

    @staticmethod
    def _progress(cm: CmStream, progress: _Progress, batch: Optional[_Batch]) -> Optional[str]:
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

    # ------------------------------------------------------------------ one CM stream
    def _run_worker(self, reading: _Reading) -> None:
        events = reading.events
        try:
            for event in events:
                if isinstance(event, _Paused):
                    reading.paused = True  # read by the main thread after it gets the event
                    self._events.put(event)
                    return
                self._events.put(event)
                if isinstance(event, _Batch) and not self._wait_delivered(event):
                    events.close()  # the sync is stopping: never advance past what was not delivered
                    return
            self._events.put(_Done(reading.cm))
        except BaseException as error:  # reported to the main thread, which fails the sync
            self._events.put(_Done(reading.cm, error))

    def _wait_delivered(self, batch: _Batch) -> bool:
        while not batch.delivered.wait(_ACK_POLL_SECONDS):
            if self._stop.is_set():
                return False
        return True

    def _partition_events(self, cm: CmStream, cursor: Optional[Dict[str, Any]], share: _Share) -> Iterator[_Event]:
        """GET -> yield the batch -> (once it is delivered) advance -> repeat.

        The end: `more_results: false` after a batch, or an empty batch that skips nothing
        (num_filtered 0) or leaves the continuation where it was. A missing `more_results` is
        unknown, not the end. An empty batch with a new continuation (all filtered out) is advanced
        past; batches that do not move the continuation (empty with `more_results: true`, or the
        same batch again after an advance) are asked again after the STUCK_WAITS_SECONDS pauses and
        stop the stream at the STUCK_CALLS-th, with a warning naming the continuation.

        A yielded _Batch must be delivered (its `delivered` set) before this generator is
        resumed; if it was not, the generator stops without advancing. When its `share` of the
        cap is used up it yields _Paused (after the last advance) until given a new share or closed.
        """
        api = self._api_factory()
        model_version: Any = _UNREAD
        if cursor:
            yield from self._resume(api, cm, cursor)
        last_continuation = cursor["continuation"] if cursor else None
        unmoved = 0  # consecutive /results answers that left the continuation where it was
        while not self._stop.is_set():
            while share.left is not None and share.left <= 0:
                yield _Paused(cm)
            body = api.results(cm, at_most=share.left)  # a share of the cap is never overshot by a batch
            results = body["results"]
            continuation = body["continuation"]
            more = body.get("more_results")  # True, False, or missing: unknown (read on until the stream says)
            if not isinstance(results, list) or not isinstance(continuation, str) or not continuation:
                raise BadResponse(
                    message=f"/results for {cm.key} returned a malformed batch (results or continuation of the wrong type).",
                    failure_type=FailureType.system_error,
                )
            moved = continuation != last_continuation
            if not results and not moved and more is not True:
                return  # nothing new and the position has not moved: the end of the stream
            if moved:
                unmoved = 0
            else:
                # Empty with more_results true, or (a server that ignored the last advance) the same
                # batch again: read on a few times (a non-empty one is delivered again, at least once
                # is safe), then stop rather than loop.
                unmoved += 1
                if unmoved >= STUCK_CALLS:
                    yield _Log(
                        f"stream_results {cm.key}: stuck at continuation {continuation}: {unmoved} /results answers in a "
                        "row did not move the stream past it. Stopping this stream for this sync; "
                        "the next sync tries again from there.",
                        Level.WARN,
                    )
                    return
                self._stop.wait(STUCK_WAITS_SECONDS[min(unmoved, len(STUCK_WAITS_SECONDS)) - 1])
                if not results:
                    continue
            if not results and not (more or body.get("num_filtered")):
                return  # an empty batch that skips nothing: the end of the stream
            if model_version is _UNREAD and any(r.get("prediction") is not None for r in results if r.__class__ is dict):
                model_version = yield from self._model_version(api, cm)
            problems: List[Tuple[Any, List[str]]] = []
            records = build_records(
                body, cm.project, cm.dataset, cm.stream, None if model_version is _UNREAD else model_version, problems
            )
            untimed: List[Tuple[Any, Any]] = []
            batch = _Batch(cm, records, continuation, latest_created_at(records, untimed))
            batch.rows, unflattened = batch_rows(records, self._flat)
            repeated = _repeated_uids(records)
            if problems or untimed or unflattened or repeated:
                yield _Log(self._odd_batch(cm, batch, problems, untimed, unflattened, repeated), Level.WARN)
            yield batch
            if not batch.delivered.is_set():
                return
            if share.left is not None:
                share.left -= len(records)
            self._advance(api, cm, continuation)
            last_continuation = continuation
            if more is False:
                return

    @staticmethod
    def _model_version(api: CmApi, cm: CmStream) -> Iterator[_Log]:
        """The stream definition's `model.version` (the /results body carries none); None without a model.

        Read once per stream per sync, at its first batch with a prediction (a stream without a
        model never costs the call). A failure fails the stream before that batch is delivered or
        advanced past, like a failed /results.
        """
        model = api.get_stream(cm).get("model")
        version = model.get("version") if isinstance(model, dict) else None
        if version.__class__ is str and version.strip().isdigit():
            version = int(version)  # the API's models say integer; a numeric string is read as one
        if version is not None and version.__class__ is not int:
            yield _Log(
                f"stream_results {cm.key}: the stream definition's model.version is {version!r}, not a number; "
                "model_version is left empty.",
                Level.WARN,
            )
            version = None
        return version

    @staticmethod
    def _odd_batch(
        cm: CmStream,
        batch: _Batch,
        problems: List[Tuple[Any, List[str]]],
        untimed: List[Tuple[Any, Any]],
        unflattened: List[Tuple[Any, int]] = (),
        repeated: List[Tuple[Any, int]] = (),
    ) -> str:
        """One warning for a batch's comments of an unexpected shape (never one per record)."""
        parts = []
        if repeated:
            shown = first_few([f"{uid} ({count} times)" for uid, count in repeated])
            parts.append(
                f"{len(repeated)} uid(s) come more than once in this batch, all delivered (a destination deduplicating on "
                f"the primary key keeps one row each): {shown}"
            )
        if problems:
            parts.append(
                f"{len(problems)} comment(s) have a field of a shape the API does not use, so these promoted columns are "
                f"left empty (the whole comment and prediction are delivered as sent): {describe_problems(problems)}"
            )
        if untimed:
            shown = first_few([f"{uid} ({value!r})" for uid, value in untimed])
            parts.append(
                f"{len(untimed)} comment(s) have a created_at that is not a time, delivered as sent but not taken as the "
                f"stream's watermark: {shown}"
            )
        if unflattened:
            shown = first_few([f"{uid} ({count})" for uid, count in unflattened])
            parts.append(
                f"{len(unflattened)} comment(s) have predicted labels, fields or taxonomies of a shape the API does not use "
                "(no name to key them by), left out of the flat tables (stream_results.prediction holds them whole): "
                f"{shown}"
            )
        return (
            f"stream_results {cm.key}, batch of {len(batch.records)} at continuation {batch.continuation}: " + ". ".join(parts) + "."
        )

    @staticmethod
    def _advance(api: CmApi, cm: CmStream, continuation: str) -> None:
        """Advances past a delivered batch; a refusal (a 400 the manifest hands back) fails the sync, naming the stream."""
        try:
            api.advance(cm, continuation)
        except BadResponse as error:
            raise BadResponse(
                message=f"stream_results {cm.key}: could not advance past the batch just delivered: {error.message}. "
                "Its records and state were delivered; the next sync starts again from that state.",
                internal_message=error.internal_message,
                failure_type=error.failure_type,
                status_code=error.status_code,
            ) from error

    def _resume(self, api: CmApi, cm: CmStream, cursor: Dict[str, Any]) -> Iterator[_Log]:
        """Puts the server stream at the state's position, back or forward.

        Advancing to an older token is undocumented; a server may refuse it (400, which the manifest's
        advance error handler hands back as BadResponse). After a reset that costs nothing (the stream
        goes on from the watermark). Without one, a refusal means the stream is ahead of what the
        destination committed and cannot be moved back: going on would skip the comments in between,
        so the stream fails with a config_error saying how to recover them, unless the user chose to
        skip them (`skip_uncommitted_on_refused_resume`). Any other bad answer (a 2xx saying "error",
        a body that is not JSON) fails the sync: going on from an unknown position could skip
        comments silently.
        """
        watermark = cursor.get("created_at")
        rewound, refusal = False, None
        if self._rewind and watermark:
            refusal = api.reset(cm, watermark)
            rewound = refusal is None
            if refusal:
                yield (
                    _Log(
                        f"stream_results {cm.key}: the API refused to reset the stream (403: {refusal}), so it cannot be "
                        f"moved back to the state the destination committed. {_reset_permissions(cm)} Going on from the "
                        "continuation only, which moves it back if the server accepts the older token.",
                        Level.WARN,
                    )
                )
        try:
            api.advance(cm, cursor["continuation"])
        except BadResponse as error:
            if error.status_code != 400:
                raise
            if not rewound and not self._skip_uncommitted:
                raise self._refused_resume(cm, watermark, error, refusal) from error
            refused = f"stream_results {cm.key}: the API refused to advance to the state's continuation ({describe(error)}). "
            going_on = (
                "Going on from the reset watermark; a few comments may be delivered again."
                if rewound
                else "Going on from the stream's current position as skip_uncommitted_on_refused_resume asks: the "
                "comments after the destination's last commit are not delivered."
            )
            yield _Log(refused + going_on, Level.WARN)

    def _refused_resume(
        self, cm: CmStream, watermark: Optional[str], error: BadResponse, refusal: Optional[str] = None
    ) -> AirbyteTracedException:
        """The config_error of a stream that cannot be put back where the destination committed, with the ways out that apply."""
        if not watermark:
            why = "the state has no created_at watermark to reset to (no comment of this stream was delivered yet)"
            recover = "reset the stream in Communications Mining by hand to a time before the sync the destination did not commit"
        elif not self._rewind:
            why = "rewind_on_resume is off"
            recover = (
                f"turn rewind_on_resume on (a reset needs the same 'Consume streams' and 'View labels' permissions on "
                f"project '{cm.project}' as reading the stream), or reset the stream in Communications Mining by hand to {watermark}"
            )
        else:
            why = f"the API refused to reset it (403: {refusal or 'no message'})"
            recover = (
                f"give the token the 'Consume streams' and 'View labels' permissions on project '{cm.project}' (a reset "
                "needs what reading needs) or, if it has them, resolve what the API's refusal says; or reset the stream "
                f"in Communications Mining by hand to {watermark}"
            )
        return AirbyteTracedException(
            message=(
                f"stream_results {cm.key}: the stream in Communications Mining is ahead of the state the destination "
                f"committed, and it cannot be moved back: {why}, and the API refused to advance to the state's older "
                f"continuation ({describe(error)}). Nothing was read from this stream, so nothing is skipped. To deliver "
                f"the comments after the committed state: {recover}, then sync again. To skip them instead: set "
                "skip_uncommitted_on_refused_resume to true."
            ),
            internal_message=error.internal_message or error.message,
            failure_type=FailureType.config_error,
        )

