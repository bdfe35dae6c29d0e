"""Runs the sync's stream readers: inline or on worker threads, in rounds that share the record cap.

With one stream to read (or `parallel_streams: 1`) every stream's generator runs inline in the
main thread; otherwise each gets a worker thread (up to `parallel_streams` at once) that fetches
and advances while the main thread alone prints. Either way the main thread receives the events
one at a time, in `Scheduler.events`, and a stream's generator is resumed only after the main
thread has handled the batch it yielded.
"""

import queue
import threading
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Tuple

from source_commsmining import liveness
from source_commsmining.api import CmStream
from source_commsmining.reading_events import Batch, Done, Event, Log, Paused, Share

# How often a worker waiting for its batch to be delivered checks that the sync is still going.
_ACK_POLL_SECONDS = 0.2


@dataclass
class _Reading:
    """One CM stream across the rounds of a sync: its generator and its share."""

    cm: CmStream
    share: Share
    events: Iterator[Event]
    paused: bool = False


class _DaemonPool:
    """Up to `size` daemon threads running submitted calls.

    Not a ThreadPoolExecutor: Python joins its (non-daemon) threads at exit, so a worker in an
    advance or its backoff would keep a process alive whose output nobody reads any more, and
    finish the advance. A daemon worker dies with the process.
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


class Scheduler:
    """Reads every stream, in rounds when `max_records` caps the sync.

    `read_stream(cm, share)` makes a stream's event generator (stream_reading.py); `stop` is set
    when the scheduling ends, so a worker or a stream still waiting gives up without advancing.
    The cap counts the records of the batches the main thread delivered (their `delivered` set).
    """

    def __init__(
        self,
        streams: List[CmStream],
        read_stream: Callable[[CmStream, Share], Iterator[Event]],
        *,
        parallel_streams: int,
        max_records: Optional[int],
        stop: threading.Event,
    ):
        self._streams = streams
        self._read_stream = read_stream
        self._parallel = max(1, min(parallel_streams, len(streams) or 1))
        self._max_records = max_records
        self._stop = stop
        self._events: "queue.Queue[Event]" = queue.Queue()
        self._delivered = 0  # records of delivered batches; counted in the main thread only

    def events(self) -> Iterator[Event]:
        """Every stream's events, for the main thread to handle one at a time.

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
            share = Share()
            readings.append(_Reading(cm, share, self._read_stream(cm, share)))
        # One stream at a time needs no threads: reading inline spares a thread hand-off per batch.
        executor = None if self._parallel == 1 else _DaemonPool(self._parallel, "cm-stream")
        try:
            while readings:
                if self._max_records is not None:
                    left = self._max_records - self._delivered
                    if left <= 0:
                        for reading in readings:  # paused at a batch boundary, after its last advance
                            reading.events.close()
                            yield Log(f"stream_results {reading.cm.key}: stopping at the cap of {self._max_records} records per sync.")
                            yield Done(reading.cm)
                        return
                    for reading in readings:
                        reading.share.left = -(-left // len(readings))
                round_events = self._round_inline(readings) if executor is None else self._round_threads(executor, readings)
                with closing(round_events):
                    for event in round_events:
                        yield event
                        if event.__class__ is Batch and event.delivered.is_set():
                            self._delivered += len(event.records)
                readings = [reading for reading in readings if reading.paused]
        finally:
            if executor is not None:
                # Any worker still waiting for its batch to be delivered gives up without advancing.
                self._stop.set()
                executor.shutdown()

    @staticmethod
    def _round_inline(readings: List[_Reading]) -> Iterator[Event]:
        """One round, the streams one after the other in the calling (main) thread."""
        for reading in readings:
            reading.paused = False
            try:
                for event in reading.events:
                    if isinstance(event, Paused):
                        reading.paused = True
                        break
                    yield event
            except Exception as error:
                yield Done(reading.cm, error)
                continue
            if not reading.paused:
                yield Done(reading.cm)

    def _round_threads(self, executor: _DaemonPool, readings: List[_Reading]) -> Iterator[Event]:
        """One round, up to `parallel_streams` streams at once, one worker thread each."""
        for reading in readings:
            reading.paused = False
            executor.submit(self._run_worker, reading)
        pending = len(readings)
        while pending:
            event = self._events.get()
            if isinstance(event, (Done, Paused)):
                pending -= 1
            if not isinstance(event, Paused):
                yield event

    # ------------------------------------------------------------------ worker threads
    def _run_worker(self, reading: _Reading) -> None:
        events = reading.events
        try:
            for event in events:
                if isinstance(event, Paused):
                    reading.paused = True  # read by the main thread after it gets the event
                    self._events.put(event)
                    return
                self._events.put(event)
                if isinstance(event, Batch) and not self._wait_delivered(event):
                    events.close()  # the sync is stopping: never advance past what was not delivered
                    return
            self._events.put(Done(reading.cm))
        except BaseException as error:  # reported to the main thread, which fails the sync
            self._events.put(Done(reading.cm, error))

    def _wait_delivered(self, batch: Batch) -> bool:
        while not batch.delivered.wait(_ACK_POLL_SECONDS):
            if self._stop.is_set() or not liveness.is_live():
                return False
        return liveness.is_live()
