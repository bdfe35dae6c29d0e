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
commit), or, when the state has no cursor for it, at its start position (`_start`); see
`_resume` for the order of the calls and README "Delivery guarantees" for why.
"""

import logging
import queue
import threading
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from airbyte_cdk.models import AirbyteMessage, AirbyteStreamStatus, FailureType, Level
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import liveness, messages
from source_commsmining.api import CmApi, CmStream
from source_commsmining.envelope import BadResponse
from source_commsmining.errors import config_error, describe
from source_commsmining.flat_tables import FLAT_TABLES, RESULTS, batch_rows
from source_commsmining.records import build_records, describe_problems, first_few
from source_commsmining.state import ResultsState, latest_created_at
from source_commsmining.timestamps import instant

PROGRESS_INTERVAL_SECONDS = 10.0
# A stream whose /results keeps answering at the same continuation ("nothing yet, more to come",
# or the same batch after an advance) this many times in a row is stopped for the sync with a
# warning, rather than polled forever; before each repeat it waits the next of these delays, so a
# server that is only catching up gets a few seconds.
STUCK_CALLS = 5
STUCK_WAITS_SECONDS = (0.25, 0.5, 1.0, 2.0)
_ACK_POLL_SECONDS = 0.2
_UNREAD = object()  # a stream's model version before its definition was read
# How far in the future a watermark may be (clock skew between the API and this host) before it is not believed.
_WATERMARK_SKEW = timedelta(minutes=5)


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


class _DaemonPool:
    """Up to `size` daemon threads running submitted calls.

    Not a ThreadPoolExecutor: Python joins its (non-daemon) threads at exit, so a worker in an
    advance or its backoff would keep a process alive whose output nobody reads any more, and
    finish the advance (issue 17, item 2). A daemon worker dies with the process.
    """

    def __init__(self, size: int, name: str):
        self._tasks: "queue.Queue[Optional[Tuple[Callable[..., None], Any]]]" = queue.Queue()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., None], arg: Any) -> None:
        self._tasks.put((fn, arg))

    def shutdown(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            task[0](task[1])


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
        start_position: str = "stream_created",
        start_date: Optional[str] = None,
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
        self._start_position = start_position
        self._start_date = start_date
        # Per CM stream: True while the server's position is known to be exactly the last continuation this sync
        # advanced it to (or the state's); written by the stream's generator, read by the main thread at the end.
        self._positioned: Dict[str, bool] = {}
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
        for cm in self._streams:  # only the sync's last STATE may say where a stream it reads was left
            self._state.confirm(cm, False)
        progress = {cm.key: _Progress() for cm in self._streams}
        errors: List[BaseException] = []
        clean: List[CmStream] = []  # streams whose reading ended without an error
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
                    else:
                        clean.append(event.cm)
        # Every worker is done: the streams that ended cleanly where this sync put them say so (position_confirmed).
        for cm in clean:
            if self._positioned.get(cm.key):
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
        executor = None if self._parallel == 1 else _DaemonPool(self._parallel, "cm-stream")
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
                executor.shutdown()

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

    def _round_threads(self, executor: _DaemonPool, readings: List[_Reading]) -> Iterator[_Event]:
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
            if self._stop.is_set() or not liveness.is_live():
                return False
        return liveness.is_live()

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
        self._positioned[cm.key] = False
        if cursor:
            yield from self._resume(api, cm, cursor)
        else:
            yield from self._start(api, cm)
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
            self._positioned[cm.key] = False  # until the advance is known to have been applied
            self._advance(api, cm, continuation)
            self._positioned[cm.key] = True
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
        elif version.__class__ is float and version.is_integer():
            version = int(version)  # 3.0 is 3 (a JSON encoder may write a whole number so)
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
        """Advances past a delivered batch; a refusal (a 400 the manifest hands back) fails the sync, naming the stream.

        Never once the sync is gone (liveness.py): the authenticator checks again before each retry."""
        liveness.require_live(f"stream_results {cm.key}: the advance past the batch just delivered")
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

    def _start(self, api: CmApi, cm: CmStream) -> Iterator[_Log]:
        """A stream the state has no cursor for (a first sync, a stream newly configured, cleared data): put it at
        its start position before reading, so a failed first sync, re-run, starts from the same place.

        `stream_created` resets it to its definition's `created_at` (where a new stream starts), `date` to the
        configured date; `current` reads from wherever it is, and a failed first sync then loses what it consumed.
        """
        if self._start_position == "current":
            yield _Log(
                f"stream_results {cm.key}: no state for this stream, reading from its current position (start_position "
                "current). If this sync fails before the destination commits its state, the comments it consumed "
                "are not read again.",
                Level.WARN,
            )
            return
        if self._start_position == "date":
            to, where = self._start_date or "", f"the configured start_date_for_streams {self._start_date}"
        else:
            to = api.get_stream(cm).get("created_at")
            where = f"its creation time {to} (start_position stream_created)"
            if instant(to) is None:
                raise config_error(
                    f"stream_results {cm.key}: the stream definition's created_at is {to!r}, not a time, so the stream "
                    "cannot be reset to where it started. Set start_position to date (with start_date_for_streams) or "
                    "to current."
                )
        liveness.require_live(f"stream_results {cm.key}: the reset to the start position")
        refusal = api.reset(cm, to)
        if refusal:
            raise config_error(
                f"stream_results {cm.key}: the state has no position for this stream (first sync, a stream newly added, "
                f"or cleared data), so it is reset to {where} before reading, and the API refused the reset (403: "
                f"{refusal}). {_reset_permissions(cm)} Nothing was read from this stream. Give the token those "
                "permissions, or set start_position to current to read from the stream's current position instead "
                "(then a first sync that fails loses the comments it consumed)."
            )
        self._positioned[cm.key] = True
        yield _Log(f"stream_results {cm.key}: no state for this stream: reset it to {where}, then reading.")

    def _resume(self, api: CmApi, cm: CmStream, cursor: Dict[str, Any]) -> Iterator[_Log]:
        """Puts the server stream at the state's continuation C, never forward past a comment not delivered.

        First `advance(C)`: a no-op on a stream that is at C, in every reading of the API (it is the
        stream's own position). A state with `position_confirmed` says the sync that wrote it left the
        stream exactly at C, so that is all (no reset: UiPath advises against routine resets, and a
        reset makes any other consumer of the stream re-read). A state without it was committed in the
        middle of a sync: the server may be ahead. Advancing to an older token is undocumented: it may
        move the stream back, be refused (400), or be ignored. So, when `rewind_on_resume`, the stream
        is then reset to the state's `created_at` watermark W and advanced to C again, which puts it at
        C in all three readings.

        A reset to W must never move the stream forward past comments it has not delivered (a state
        edited by hand or a stream recreated can carry a W ahead of the stream): before it, `/results`
        is peeked at (a GET consumes nothing) and the reset is made only if W is not after the first
        pending comment (`_reset_is_safe`).

        A refused C (400) is found before any reset. It means the stream is not where the state says
        (ahead, or the token is not one the API knows). A reset to W (if safe) followed by C accepted
        recovers a server that refuses older tokens; anything else fails the stream with a config_error
        saying how to recover, unless the user chose to skip (`skip_uncommitted_on_refused_resume`).
        Never "go on from the watermark": that is how a forged watermark skipped comments (issue 18.6).
        """
        continuation = cursor["continuation"]
        watermark = cursor.get("created_at")
        liveness.require_live(f"stream_results {cm.key}: the advance to the state's continuation")
        refused = self._try_advance(api, cm, continuation)
        if refused is None and cursor.get("position_confirmed") is True:
            self._positioned[cm.key] = True
            yield _Log(
                f"stream_results {cm.key}: the state's position is confirmed (the sync that wrote it ended with the "
                "stream there): advanced to its continuation, no reset."
            )
            return
        if refused is None and not (self._rewind and watermark):
            why = "rewind_on_resume is off" if not self._rewind else "the state has no created_at watermark yet"
            yield _Log(
                f"stream_results {cm.key}: the state was committed in the middle of a sync; {why}, so the stream is only "
                "advanced to its continuation (a server that ignores an older token stays ahead)."
            )
            return
        how = "the API accepted the state's continuation" if refused is None else (
            f"the API refused to advance to the state's continuation ({describe(refused)})"
        )
        reset_refusal, unsafe = None, None
        if self._rewind and watermark:
            unsafe = self._reset_is_unsafe(api, cm, watermark)
            if unsafe is None:
                liveness.require_live(f"stream_results {cm.key}: the reset to the state's watermark")
                reset_refusal = api.reset(cm, watermark)
                if reset_refusal is None:
                    again = self._try_advance(api, cm, continuation)
                    if again is None:
                        self._positioned[cm.key] = True
                        yield _Log(
                            f"stream_results {cm.key}: the state was committed in the middle of a sync ({how}): reset "
                            f"the stream to the watermark {watermark}, then advanced to the continuation."
                        )
                        return
                    refused = refused or again
        if refused is None:
            # Accepted, but the reset could not back it up: right if the server honours an older token.
            reason = unsafe or f"the API refused the reset (403: {reset_refusal}). {_reset_permissions(cm)}"
            yield _Log(
                f"stream_results {cm.key}: the state was committed in the middle of a sync and the stream was advanced "
                f"to its continuation, but not reset to its watermark: {reason} If the server ignored the older "
                "continuation, the comments after the committed state are not delivered again.",
                Level.WARN,
            )
            return
        if self._skip_uncommitted:
            yield _Log(
                f"stream_results {cm.key}: {how}, and the stream cannot be put back where the destination committed. "
                "Going on from the stream's current position as skip_uncommitted_on_refused_resume asks: the comments "
                "after the destination's last commit are not delivered.",
                Level.WARN,
            )
            return
        raise self._refused_resume(cm, watermark, refused, reset_refusal, unsafe)

    @staticmethod
    def _try_advance(api: CmApi, cm: CmStream, continuation: str) -> Optional[BadResponse]:
        """Advance to a state's continuation: None when accepted, the 400 when refused; anything else raises."""
        try:
            api.advance(cm, continuation)
        except BadResponse as error:
            if error.status_code != 400:
                raise
            return error
        return None

    @staticmethod
    def _reset_is_unsafe(api: CmApi, cm: CmStream, watermark: str) -> Optional[str]:
        """Why a reset to `watermark` could move the stream forward past a comment not delivered; None if it cannot.

        A reset goes to the first comment created at or after the watermark. The first comment `/results`
        would serve now (a GET: nothing is consumed) is where the stream is: if the watermark is not after its
        `created_at`, the reset moves the stream back or leaves it. With nothing pending, a watermark not in
        the future is safe. Only `created_at` is compared: `last_modified` may be far later than the comment's
        place in the queue. A re-upload at the head of the queue keeps its old `created_at`, so it can make
        an honest state look unsafe; that costs a reset (a warning) or, if the continuation was refused too, a
        config_error, never a comment.
        """
        when = instant(watermark)
        if when is None:
            return f"its watermark {watermark!r} is not a time."
        if when > datetime.now(timezone.utc) + _WATERMARK_SKEW:
            return f"its watermark {watermark} is in the future (a state edited by hand or from elsewhere?)."
        body = api.results(cm, at_most=1)
        results = body.get("results")
        if not results:
            if body.get("more_results") is False or not body.get("num_filtered"):
                return None
            return "the stream's next comments are filtered out, so its position cannot be compared with the watermark."
        comment = results[0].get("comment") if isinstance(results[0], dict) else None
        comment = comment if isinstance(comment, dict) else {}
        head = instant(comment.get("created_at"))
        if head is not None and when <= head:
            return None
        return (
            f"its watermark {watermark} is after the stream's next comment ({comment.get('created_at')!r}): a reset "
            "would move the stream forward past comments not delivered."
        )

    def _refused_resume(
        self,
        cm: CmStream,
        watermark: Optional[str],
        error: BadResponse,
        refusal: Optional[str] = None,
        unsafe: Optional[str] = None,
    ) -> AirbyteTracedException:
        """The config_error of a stream whose state's continuation the API refuses, with the ways out that apply."""
        by_hand = "reset the stream in Communications Mining by hand to a time before the comments the destination lacks"
        if not watermark:
            why = "the state has no created_at watermark to reset to (no comment of this stream was delivered yet)"
            recover = by_hand
        elif not self._rewind:
            why = "rewind_on_resume is off"
            recover = (
                f"turn rewind_on_resume on (a reset needs the same 'Consume streams' and 'View labels' permissions on "
                f"project '{cm.project}' as reading the stream), or reset the stream in Communications Mining by hand "
                f"to {watermark}"
            )
        elif unsafe:
            why = f"it is not reset to the state's watermark because {unsafe}"
            recover = by_hand
        elif refusal:
            why = f"the API refused to reset it (403: {refusal}) to the state's watermark"
            recover = (
                f"give the token the 'Consume streams' and 'View labels' permissions on project '{cm.project}' (a reset "
                "needs what reading needs) or, if it has them, resolve what the API's refusal says; or reset the stream "
                f"in Communications Mining by hand to {watermark}"
            )
        else:
            why = f"even after a reset to the state's watermark {watermark} the API refused the continuation"
            recover = by_hand
        return AirbyteTracedException(
            message=(
                f"stream_results {cm.key}: the API refused to advance to the state's continuation ({describe(error)}): "
                "the stream is not where the destination committed (it is ahead, or the continuation is not one the API "
                f"knows), and {why}. Nothing was read from this stream and it was not moved forward, so nothing is "
                f"skipped. To deliver the comments after the committed state: {recover}, then sync again; or clear "
                "the stream_results state, so the stream is read again from start_position (stream_created: from its "
                "creation). Each configured stream must be dedicated to this connection: check that no other consumer "
                "reads it. To skip those comments instead: set skip_uncommitted_on_refused_resume to true."
            ),
            internal_message=error.internal_message or error.message,
            failure_type=FailureType.config_error,
        )
