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
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from airbyte_cdk.models import AirbyteMessage, AirbyteStreamStatus, FailureType, Level
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import messages
from source_commsmining.api import CmApi, CmStream
from source_commsmining.envelope import BadResponse
from source_commsmining.errors import describe
from source_commsmining.records import build_records
from source_commsmining.state import ResultsState, latest_created_at

PROGRESS_INTERVAL_SECONDS = 10.0
# A stream whose /results keeps answering "nothing yet, more to come" at the same continuation this
# many times in a row is stopped for the sync with a warning, rather than polled forever.
STUCK_CALLS = 5
_ACK_POLL_SECONDS = 0.2


@dataclass
class _Batch:
    cm: CmStream
    records: List[Dict[str, Any]]
    continuation: str
    watermark: Optional[str]
    delivered: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Log:
    message: str
    level: Level = Level.INFO


@dataclass
class _Done:
    cm: CmStream
    error: Optional[BaseException] = None


_Event = Union[_Batch, _Log, _Done]


@dataclass
class _Progress:
    records: int = 0
    batches: int = 0
    position: str = ""
    logged_at: float = field(default_factory=time.monotonic)


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
        flush: Optional[Callable[[], None]] = None,
        logger: Optional[logging.Logger] = None,
    ):
        self._api_factory = api_factory
        self._streams = streams
        self._state = state
        self._parallel = max(1, min(parallel_streams, len(streams) or 1))
        self._max_records = max_records
        self._rewind = rewind_on_resume
        self._flush = flush or (lambda: messages.flush_stdout())  # looked up per call: tests patch it
        self._logger = logger or logging.getLogger("airbyte")
        self._events: "queue.Queue[_Event]" = queue.Queue()
        self._stop = threading.Event()
        self._emitted = 0  # written by the main thread only

    # ------------------------------------------------------------------ main thread
    def read(self) -> Iterator[AirbyteMessage]:
        yield messages.status(AirbyteStreamStatus.STARTED)
        if not self._streams:
            yield messages.log("stream_results: no Communications Mining streams are configured (`streams` is empty).")
            yield messages.state(self._state.as_dict())
            yield messages.status(AirbyteStreamStatus.COMPLETE)
            return
        cursors = {cm.key: self._state.cursor(cm) for cm in self._streams}
        progress = {cm.key: _Progress() for cm in self._streams}
        errors: List[BaseException] = []
        running_sent = False
        # One stream at a time needs no threads: reading inline spares a thread hand-off per batch.
        events = self._events_inline(cursors) if self._parallel == 1 else self._events_from_threads(cursors)
        with closing(events):
            for event in events:
                if isinstance(event, _Batch):
                    if not running_sent:
                        yield messages.status(AirbyteStreamStatus.RUNNING)
                        running_sent = True
                    emitted_at = messages.now_ms()
                    for data in event.records:
                        yield messages.record(data, emitted_at)
                    self._state.update(event.cm, event.continuation, event.watermark)
                    yield messages.state(self._state.as_dict())
                    # Resumed: the entrypoint has printed the STATE. Push it to the fd; only then may the stream advance.
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
        yield messages.state(self._state.as_dict())
        self._flush()
        if errors:
            yield messages.status(AirbyteStreamStatus.INCOMPLETE)
            first = errors[0]
            if isinstance(first, AirbyteTracedException):
                raise first
            raise AirbyteTracedException(
                message=f"stream_results failed: {describe(first)}",
                internal_message=repr(first),
                failure_type=FailureType.system_error,
            ) from first
        yield messages.status(AirbyteStreamStatus.COMPLETE)

    def _events_inline(self, cursors: Dict[str, Optional[Dict[str, Any]]]) -> Iterator[_Event]:
        """Reads the streams one after the other in the calling (main) thread."""
        for cm in self._streams:
            try:
                yield from self._partition_events(cm, cursors[cm.key])
            except Exception as error:
                yield _Done(cm, error)
            else:
                yield _Done(cm)

    def _events_from_threads(self, cursors: Dict[str, Optional[Dict[str, Any]]]) -> Iterator[_Event]:
        """Reads up to `parallel_streams` streams at once, one worker thread each."""
        executor = ThreadPoolExecutor(max_workers=self._parallel, thread_name_prefix="cm-stream")
        try:
            for cm in self._streams:
                executor.submit(self._run_worker, cm, cursors[cm.key])
            pending = len(self._streams)
            while pending:
                event = self._events.get()
                if isinstance(event, _Done):
                    pending -= 1
                yield event
        finally:
            # Any worker still waiting for its batch to be delivered gives up without advancing.
            self._stop.set()
            executor.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _progress(cm: CmStream, progress: _Progress, batch: Optional[_Batch]) -> Optional[str]:
        """A progress line per CM stream at most every PROGRESS_INTERVAL_SECONDS, and one at its end."""
        if batch is not None:
            progress.records += len(batch.records)
            progress.batches += 1
            progress.position = batch.continuation
        now = time.monotonic()
        if batch is not None and now - progress.logged_at < PROGRESS_INTERVAL_SECONDS:
            return None
        progress.logged_at = now
        word = "progress" if batch is not None else "finished"
        position = progress.position or "unchanged"
        return (
            f"stream_results {cm.key} {word}: {progress.records} records in {progress.batches} batches, "
            f"position {position}"
        )

    # ------------------------------------------------------------------ one CM stream
    def _run_worker(self, cm: CmStream, cursor: Optional[Dict[str, Any]]) -> None:
        events = self._partition_events(cm, cursor)
        try:
            for event in events:
                self._events.put(event)
                if isinstance(event, _Batch) and not self._wait_delivered(event):
                    events.close()  # the sync is stopping: never advance past what was not delivered
                    return
            self._events.put(_Done(cm))
        except BaseException as error:  # reported to the main thread, which fails the sync
            self._events.put(_Done(cm, error))

    def _wait_delivered(self, batch: _Batch) -> bool:
        while not batch.delivered.wait(_ACK_POLL_SECONDS):
            if self._stop.is_set():
                return False
        return True

    def _partition_events(self, cm: CmStream, cursor: Optional[Dict[str, Any]]) -> Iterator[_Event]:
        """GET -> yield the batch -> (once it is delivered) advance -> repeat.

        The end: `more_results: false` after a batch, or an empty batch that skips nothing
        (num_filtered 0) or leaves the continuation where it was. A missing `more_results` is
        unknown, not the end. An empty batch with a new continuation (all filtered out) is advanced
        past; empty batches with `more_results: true` that never move the continuation stop the
        stream after STUCK_CALLS calls, with a warning naming the continuation.

        A yielded _Batch must be delivered (its `delivered` set) before this generator is
        resumed; if it was not, the generator stops without advancing.
        """
        api = self._api_factory()
        if cursor:
            yield from self._resume(api, cm, cursor)
        last_continuation = cursor["continuation"] if cursor else None
        unmoved = 0  # consecutive empty batches with more_results true that left the continuation where it was
        while not self._stop.is_set():
            if self._max_records is not None and self._emitted >= self._max_records:
                yield _Log(f"stream_results {cm.key}: stopping at the cap of {self._max_records} records per sync.")
                return
            body = api.results(cm)
            results = body["results"]
            continuation = body["continuation"]
            more = body.get("more_results")  # True, False, or missing: unknown (read on until the stream says)
            if not isinstance(results, list) or not isinstance(continuation, str) or not continuation:
                raise BadResponse(
                    message=f"/results for {cm.key} returned a malformed batch (results or continuation of the wrong type).",
                    failure_type=FailureType.system_error,
                )
            if not results:
                if continuation == last_continuation:
                    if more is not True:
                        return  # nothing new and the position has not moved: the end of the stream
                    unmoved += 1
                    if unmoved >= STUCK_CALLS:
                        yield _Log(
                            f"stream_results {cm.key}: stuck at continuation {continuation}: {unmoved} /results calls in a "
                            "row returned no results and more_results true without moving it. Stopping this stream for "
                            "this sync; the next sync tries again from there.",
                            Level.WARN,
                        )
                        return
                    continue
                if not (more or body.get("num_filtered")):
                    return  # an empty batch that skips nothing: the end of the stream
            unmoved = 0
            records = build_records(body, cm.project, cm.dataset, cm.stream)
            batch = _Batch(cm, records, continuation, latest_created_at(records))
            yield batch
            if not batch.delivered.is_set():
                return
            self._advance(api, cm, continuation)
            last_continuation = continuation
            if more is False:
                return

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
            ) from error

    def _resume(self, api: CmApi, cm: CmStream, cursor: Dict[str, Any]) -> Iterator[_Log]:
        """Puts the server stream at the state's position, back or forward.

        Advancing to an older token is undocumented; a server may refuse it (400, which the manifest's
        advance error handler hands back as BadResponse). That only warns: the stream goes on from
        where it is, as the message says.
        """
        watermark = cursor.get("created_at")
        rewound = False
        if self._rewind and watermark:
            rewound = api.reset(cm, watermark)
            if not rewound:
                yield (
                    _Log(
                        f"stream_results {cm.key}: the API token may not reset streams (403; it needs the 'Modify streams' "
                        "permission), so the stream cannot be moved back to the state the destination committed. Going on "
                        "from the continuation only: if an earlier sync's records were not committed by the destination, "
                        "they will not be read again.",
                        Level.WARN,
                    )
                )
        try:
            api.advance(cm, cursor["continuation"])
        except BadResponse as error:
            yield (
                _Log(
                    f"stream_results {cm.key}: the API refused to advance to the state's continuation ({error.message}). "
                    + (
                        "Going on from the reset watermark; a few comments may be delivered again."
                        if rewound
                        else "Going on from the stream's current position; comments after the destination's last commit may be missing."
                    ),
                    Level.WARN,
                )
            )

