"""One CM stream's reading in a sync: GET /results -> hand the batch over -> (once delivered) advance -> repeat.

A generator, so that whoever runs it (inline in the main thread, or a worker thread: see
scheduling.py) resumes it only after the batch it yielded was printed with its STATE and
flushed; it never advances past a batch that was not delivered. It also decides where a stream
ends, stops a stream that does not move (the stuck detector), reads the model version once, and
builds the batch's records and flat-table rows in the thread that read it.
"""

import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from airbyte_cdk.models import FailureType, Level

from source_commsmining import liveness
from source_commsmining.api import CmApi, CmStream
from source_commsmining.depth_check import check_depth
from source_commsmining.envelope import BadResponse
from source_commsmining.flat_tables import batch_rows
from source_commsmining.reading_events import Batch, Event, Log, Paused, Share
from source_commsmining.records import build_records, describe_problems, first_few
from source_commsmining.state import latest_created_at
from source_commsmining.stream_position import Positioning

# A stream whose /results keeps answering at the same continuation ("nothing yet, more to come",
# or the same batch after an advance) this many times in a row is stopped for the sync with a
# warning, rather than polled forever; before each repeat it waits the next of these delays, so a
# server that is only catching up gets a few seconds.
STUCK_CALLS = 5
STUCK_WAITS_SECONDS = (0.25, 0.5, 1.0, 2.0)
_UNREAD = object()  # a stream's model version before its definition was read


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


class StreamReading:
    """Reads the sync's CM streams, one generator per stream (`events`), with the sync's settings.

    `positioned[cm.key]` is True while the server's position is known to be exactly the last
    continuation this sync advanced the stream to (or the state's): written by the stream's
    generator, read by the output once every stream is done, to confirm the position in the last STATE.
    `bases[cm.key]`: the cursor the stream resumed from (None: started anew), read by the output at its first batch.
    """

    def __init__(
        self,
        api_factory: Callable[[], CmApi],
        positioning: Positioning,
        flat_tables: Tuple[str, ...],
        stop: threading.Event,
    ):
        self._api_factory = api_factory
        self._positioning = positioning
        self._flat = flat_tables
        self._stop = stop  # set when the sync stops: a stream waiting to read again gives up
        self.positioned: Dict[str, bool] = {}
        # The cursor each stream's batches count on from (position_plan.Outcome.base), written before its first batch.
        self.bases: Dict[str, Optional[Dict[str, Any]]] = {}

    def events(self, cm: CmStream, cursors: Mapping[str, Optional[Dict[str, Any]]], share: Share) -> Iterator[Event]:
        """Put the stream in place (stream_position.py, from the selected tables' `cursors`), then
        GET -> yield the batch -> (once it is delivered) advance -> repeat.

        The end: `more_results: false` after a batch, or an empty batch that skips nothing
        (num_filtered 0) or leaves the continuation where it was. A missing `more_results` is
        unknown, not the end. An empty batch with a new continuation (all filtered out) is advanced
        past; batches that do not move the continuation (empty with `more_results: true`, or the
        same batch again after an advance) are asked again after the STUCK_WAITS_SECONDS pauses and
        stop the stream at the STUCK_CALLS-th, with a warning naming the continuation.

        A yielded Batch must be delivered (its `delivered` set) before this generator is
        resumed; if it was not, the generator stops without advancing. When its `share` of the
        cap is used up it yields Paused (after the last advance) until given a new share or closed.
        """
        api = self._api_factory()
        model_version: Any = _UNREAD
        self.positioned[cm.key] = False
        outcome = yield from self._positioning.place(api, cm, cursors)
        self.positioned[cm.key] = outcome.confirmed
        self.bases[cm.key] = outcome.base
        last_continuation = outcome.base["continuation"] if outcome.base else None
        unmoved = 0  # consecutive /results answers that left the continuation where it was
        while not self._stop.is_set():
            while share.left is not None and share.left <= 0:
                yield Paused(cm)
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
                    yield Log(
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
            batch = Batch(cm, records, continuation, latest_created_at(records, untimed))
            batch.rows, unflattened = batch_rows(records, self._flat)
            repeated = _repeated_uids(records)
            # Before anything of the batch is delivered.
            check_depth(records, lambda: f"GET /results [{api.context(cm)}]")
            if problems or untimed or unflattened or repeated:
                yield Log(self._odd_batch(cm, batch, problems, untimed, unflattened, repeated), Level.WARN)
            yield batch
            if not batch.delivered.is_set():
                return
            if share.left is not None:
                share.left -= len(records)
            self.positioned[cm.key] = False  # until the advance is known to have been applied
            self._advance(api, cm, continuation)
            self.positioned[cm.key] = True
            last_continuation = continuation
            if more is False:
                return

    @staticmethod
    def _model_version(api: CmApi, cm: CmStream) -> Iterator[Log]:
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
        if version.__class__ is int and not -(2**63) <= version < 2**63:
            version = str(version)  # beyond what a record column (and orjson) can hold: not a version
        if version is not None and version.__class__ is not int:
            yield Log(
                f"stream_results {cm.key}: the stream definition's model.version is {version!r}, not a number; "
                "model_version is left empty.",
                Level.WARN,
            )
            version = None
        return version

    @staticmethod
    def _odd_batch(
        cm: CmStream,
        batch: Batch,
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
