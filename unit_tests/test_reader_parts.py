"""The parts of the results reader, each alone: the scheduler with fake stream generators, a
stream's start position and reading with a fake API (no HTTP, no ResultsReader around them).
"""

import threading
from typing import Dict, List, Optional

import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining.api import CmStream, Refusal
from source_commsmining.flat_tables import RESULTS
from source_commsmining.reading_events import Batch, Done, Log, Paused, Share
from source_commsmining.scheduling import Scheduler
from source_commsmining.stream_position import Positioning
from source_commsmining.stream_reading import StreamReading
from unit_tests.conftest import RESET_NEEDS as NEEDS, comment

A, B, C = (CmStream("acme", "collections", name) for name in ("a", "b", "c"))


# ---------------------------------------------------------------- the scheduler, with fake streams


def _fake_stream(cm: CmStream, share: Share, size: int, batch: int, closed: List[str]):
    """Like a stream's reader: batches of at most its share, Paused when the share is used up."""
    read = 0
    try:
        while read < size:
            while share.left is not None and share.left <= 0:
                yield Paused(cm)
            n = min(batch, size - read, share.left if share.left is not None else batch)
            yield Batch(cm, [{"uid": f"{cm.stream}.{read + i}"} for i in range(n)], f"{cm.stream}-{read + n}", None)
            read += n
            if share.left is not None:
                share.left -= n
    finally:
        closed.append(cm.stream)


def _drain(scheduler: Scheduler) -> List:
    events = []
    for event in scheduler.events():
        events.append(event)
        if isinstance(event, Batch):
            event.delivered.set()
    return events


@pytest.mark.parametrize("parallel", [1, 3], ids=["inline", "threads"])
def test_the_cap_is_shared_out_in_rounds_and_what_an_ended_stream_left_goes_to_the_others(parallel):
    """Cap 12 over a (100), b (2), c (100): shares of 4 each; b ends at 2, so the 2 left go 1 and 1 to a and c."""
    sizes, closed = {"a": 100, "b": 2, "c": 100}, []
    scheduler = Scheduler(
        [A, B, C],
        lambda cm, share: _fake_stream(cm, share, sizes[cm.stream], 5, closed),
        parallel_streams=parallel,
        max_records=12,
        stop=threading.Event(),
    )
    events = _drain(scheduler)
    per_stream: Dict[str, List[int]] = {}
    for event in events:
        if isinstance(event, Batch):
            per_stream.setdefault(event.cm.stream, []).append(len(event.records))
    assert per_stream == {"a": [4, 1], "b": [2], "c": [4, 1]}  # the same split with or without threads
    assert not any(isinstance(event, Paused) for event in events)  # the scheduler keeps its pauses to itself
    done = [event.cm.stream for event in events if isinstance(event, Done)]
    assert sorted(done) == ["a", "b", "c"] and all(event.error is None for event in events if isinstance(event, Done))
    assert sorted(closed) == ["a", "b", "c"]  # the capped streams' generators are closed, not left pending
    stops = [event.message for event in events if isinstance(event, Log)]
    assert sorted(stops) == [f"stream_results acme/collections/{name}: stopping at the cap of 12 records per sync." for name in "ac"]


@pytest.mark.parametrize("parallel", [1, 2], ids=["inline", "threads"])
def test_without_a_cap_every_stream_is_read_to_its_end_in_one_round(parallel):
    sizes, closed = {"a": 7, "b": 3}, []
    scheduler = Scheduler(
        [A, B],
        lambda cm, share: _fake_stream(cm, share, sizes[cm.stream], 5, closed),
        parallel_streams=parallel,
        max_records=None,
        stop=threading.Event(),
    )
    events = _drain(scheduler)
    assert sum(len(e.records) for e in events if isinstance(e, Batch)) == 10
    assert sorted(e.cm.stream for e in events if isinstance(e, Done)) == ["a", "b"]


def test_a_worker_whose_batch_is_never_delivered_stops_its_stream_without_resuming_it():
    """Threads: the main thread stops (closes the events) before delivering; the stream's generator is closed at
    the batch it yielded, so it never gets to advance past it."""
    resumed, closed = [], threading.Event()

    def stream(cm: CmStream, share: Share):
        try:
            yield Batch(cm, [{"uid": "x"}], "c1", None)
            resumed.append(cm.stream)  # a real reader advances here
        finally:
            closed.set()

    stop = threading.Event()
    events = Scheduler([A, B], stream, parallel_streams=2, max_records=None, stop=stop).events()
    first = next(events)
    assert isinstance(first, Batch) and not first.delivered.is_set()
    events.close()
    assert stop.is_set() and closed.wait(5)
    assert resumed == []


def test_a_failing_stream_is_reported_as_its_done_and_the_others_read_on():
    def stream(cm: CmStream, share: Share):
        if cm is A:
            raise RuntimeError("a broke")
        yield Batch(cm, [{"uid": "b.0"}], "b-1", None)

    events = _drain(Scheduler([A, B], stream, parallel_streams=1, max_records=None, stop=threading.Event()))
    errors = {e.cm.stream: e.error for e in events if isinstance(e, Done)}
    assert isinstance(errors["a"], RuntimeError) and errors["b"] is None
    assert [e.cm.stream for e in events if isinstance(e, Batch)] == ["b"]


# ---------------------------------------------------------------- a stream's position and reading, with a fake API


class FakeApi:
    """Answers /results from a list of bodies; records every call in order."""

    def __init__(self, bodies=(), *, refuse_reset: Optional[str] = None, created_at: str = "2024-01-01T00:00:00Z"):
        self.bodies = list(bodies)
        self.refuse_reset = refuse_reset
        self.definition = {"created_at": created_at}
        self.calls: List[tuple] = []

    def results(self, cm: CmStream, at_most: Optional[int] = None):
        self.calls.append(("results", at_most))
        return self.bodies.pop(0)

    def advance(self, cm: CmStream, continuation: str) -> None:
        self.calls.append(("advance", continuation))

    def reset(self, cm: CmStream, to: str) -> Optional[Refusal]:
        self.calls.append(("reset", to))
        return Refusal(403, self.refuse_reset) if self.refuse_reset else None

    def get_stream(self, cm: CmStream):
        self.calls.append(("get_stream",))
        return self.definition


def _body(indexes, continuation: str, more: Optional[bool], num_filtered: int = 0):
    results = [{"comment": comment(i), "prediction": None, "continuation": f"r{i}"} for i in indexes]
    return {"status": "ok", "results": results, "num_filtered": num_filtered, "more_results": more, "continuation": continuation}


def _run(generator):
    """Runs a Positioning generator to its end: (its log lines, what it returned)."""
    logs = []
    while True:
        try:
            logs.append(next(generator))
        except StopIteration as end:
            return logs, end.value


def _resume(api, cursor):
    logs, outcome = _run(Positioning().place(api, A, {RESULTS: cursor}))
    return logs, outcome.confirmed


def test_a_confirmed_state_position_is_only_advanced_to_never_reset():
    api = FakeApi()
    logs, positioned = _resume(api, {"continuation": "c7", "created_at": "2024-02-01T00:00:07Z", "position_confirmed": True})
    assert positioned is True and api.calls == [("advance", "c7")]
    assert "confirmed" in logs[0].message


def test_a_mid_sync_state_is_not_reset_past_a_pending_comment_older_than_its_watermark():
    """The peek shows the stream's next comment created before the watermark: a reset would skip it."""
    api = FakeApi([_body([3], "c4", True)])
    logs, positioned = _resume(api, {"continuation": "c7", "created_at": "2024-02-01T00:00:07Z"})
    assert positioned is False
    assert api.calls == [("advance", "c7"), ("results", 1)]  # no reset
    assert logs[-1].level.name == "WARN" and "would move the stream forward" in logs[-1].message


def test_a_mid_sync_state_is_reset_to_its_watermark_and_advanced_again():
    api = FakeApi([_body([9], "c10", True)])
    logs, positioned = _resume(api, {"continuation": "c7", "created_at": "2024-02-01T00:00:07Z"})
    assert positioned is True
    assert api.calls == [("advance", "c7"), ("results", 1), ("reset", "2024-02-01T00:00:07Z"), ("advance", "c7")]


def test_start_position_current_touches_nothing_and_says_what_a_failed_sync_loses():
    api = FakeApi()
    logs, outcome = _run(Positioning(start_position="current").place(api, A, {}))
    assert outcome.confirmed is False and api.calls == []
    assert "are not read again" in logs[0].message


def test_a_refused_reset_to_the_start_position_is_a_config_error_naming_the_permissions():
    api = FakeApi([_body([3], "c4", True)], refuse_reset="forbidden")
    with pytest.raises(AirbyteTracedException) as raised:
        _run(Positioning(start_position="take_over_from_creation").place(api, A, {}))
    assert raised.value.failure_type.value == "config_error" and NEEDS in raised.value.message
    assert api.calls == [("get_stream",), ("results", 1), ("reset", "2024-01-01T00:00:00Z")]


def _reading(api: FakeApi) -> StreamReading:
    return StreamReading(lambda: api, Positioning(start_position="current"), (), threading.Event())


def test_an_all_filtered_batch_is_delivered_empty_and_advanced_past_then_reading_goes_on():
    api = FakeApi([_body([], "c1", True, num_filtered=5), _body([0, 1], "c2", False)])
    reading = _reading(api)
    batches = []
    for event in reading.events(A, None, Share()):
        if isinstance(event, Batch):
            batches.append((len(event.records), event.continuation))
            event.delivered.set()
    assert batches == [(0, "c1"), (2, "c2")]
    assert [call for call in api.calls if call[0] == "advance"] == [("advance", "c1"), ("advance", "c2")]
    assert reading.positioned[A.key] is True  # left exactly where it advanced it to


def test_an_undelivered_batch_is_never_advanced_past():
    api = FakeApi([_body([0, 1], "c1", True)])
    reading = _reading(api)
    events = reading.events(A, None, Share())
    batch = next(event for event in events if isinstance(event, Batch))
    assert next(events, None) is None  # resumed without its delivery: the stream stops
    assert batch.continuation == "c1" and ("advance", "c1") not in api.calls


def test_a_share_is_never_overshot_and_a_used_up_share_pauses_after_the_advance():
    api = FakeApi([_body([0, 1, 2], "c3", True)])
    events = _reading(api).events(A, None, Share(left=3))
    for event in events:
        if isinstance(event, Batch):
            event.delivered.set()
        elif isinstance(event, Paused):
            break
    assert api.calls == [("results", 3), ("advance", "c3")]
