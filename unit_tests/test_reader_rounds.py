"""ResultsReader's rounds and threads, driven by an in-memory API: the delivery invariant under a cap and failures.

The invariant: a batch is advanced only after the main thread yielded its records and STATE and
flushed; when a sync stops (cap, error, close) nothing undelivered is advanced; nothing hangs.
"""

import threading
import time
from typing import Dict, List, Optional

import pytest
from airbyte_cdk.models import Type

from source_commsmining.api import CmStream
from source_commsmining.results_reader import ResultsReader
from source_commsmining.state import ResultsState
from unit_tests.conftest import comment


class FakeStreams:
    """Shared by every reader thread: positions per stream, and a log of what happened in order."""

    def __init__(self, sizes: Dict[str, int], batch: int = 4, failing: Optional[str] = None):
        self.sizes, self.batch, self.failing = sizes, batch, failing
        self.position = {name: 0 for name in sizes}
        self.flushed: List[str] = []  # uids the reader had flushed, in order
        self.printed: List[str] = []  # uids yielded so far (filled by the test's consumer)
        self.advanced_past_unflushed: List[str] = []
        self.lock = threading.Lock()

    def api(self) -> "FakeApi":
        return FakeApi(self)


class FakeApi:
    def __init__(self, world: FakeStreams):
        self.world = world

    def results(self, cm: CmStream, at_most: Optional[int] = None):
        if cm.stream == self.world.failing and self.world.position[cm.stream] >= self.world.batch:
            raise RuntimeError(f"{cm.stream} broke")
        start = self.world.position[cm.stream]
        size = min(self.world.batch, at_most or self.world.batch)
        end = min(start + size, self.world.sizes[cm.stream])
        results = [
            {"comment": comment(i, uid=f"{cm.stream}.{i}"), "prediction": None, "continuation": f"{cm.stream}-{i + 1}"}
            for i in range(start, end)
        ]
        more = end < self.world.sizes[cm.stream]
        return {"status": "ok", "results": results, "num_filtered": 0, "more_results": more, "continuation": f"{cm.stream}-{end}"}

    def advance(self, cm: CmStream, continuation: str) -> None:
        end = int(continuation.rsplit("-", 1)[1])
        with self.world.lock:
            delivered = set(self.world.flushed)
            for i in range(self.world.position[cm.stream], end):
                if f"{cm.stream}.{i}" not in delivered:
                    self.world.advanced_past_unflushed.append(f"{cm.stream}.{i}")
            self.world.position[cm.stream] = end

    def reset(self, cm: CmStream, created_at: str) -> bool:
        return True


def _read(world: FakeStreams, names, *, parallel: int, cap: Optional[int] = None, stop_after: Optional[int] = None):
    streams = [CmStream("acme", "collections", name) for name in names]

    def flush():
        with world.lock:
            world.flushed.extend(world.printed)

    reader = ResultsReader(
        world.api, streams, ResultsState(), parallel_streams=parallel, max_records=cap, flush=flush, start_position="current"
    )
    messages = reader.read()
    error = None
    try:
        for message in messages:
            if message.type == Type.RECORD:
                world.printed.append(message.record.data["uid"])
                time.sleep(0.001)  # a slow stdout: gives worker threads the chance to jump the gun
                if stop_after is not None and len(world.printed) >= stop_after:
                    break
    except Exception as raised:  # the failing stream's error surfaces after the others are done
        error = raised
    finally:
        messages.close()
    return error


def _run_with_timeout(target, seconds=20):
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("error", target()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the reader hung"
    return outcome.get("error")


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_a_cap_shared_in_rounds_advances_only_what_was_flushed(parallel):
    world = FakeStreams({"a": 40, "b": 6, "c": 40}, batch=4)
    error = _run_with_timeout(lambda: _read(world, ["a", "b", "c"], parallel=parallel, cap=30))
    assert error is None and world.advanced_past_unflushed == []
    per_stream = {name: sum(1 for uid in world.printed if uid.startswith(name + ".")) for name in "abc"}
    assert per_stream["b"] == 6 and per_stream["a"] >= 10 and per_stream["c"] >= 10  # b's leftover went to a and c
    assert 30 <= len(world.printed) <= 30 + 2  # shares are rounded up, never a batch over
    assert all(world.position[name] == per_stream[name] for name in "abc")  # every delivered batch was advanced


@pytest.mark.parametrize("parallel", [1, 2, 3])
def test_a_stream_failing_while_others_are_paused_fails_the_sync_and_advances_nothing_undelivered(parallel):
    world = FakeStreams({"a": 40, "b": 40, "c": 40}, batch=4, failing="b")
    error = _run_with_timeout(lambda: _read(world, ["a", "b", "c"], parallel=parallel, cap=24))
    assert error is not None and "b broke" in str(error)
    assert world.advanced_past_unflushed == []
    assert world.position["b"] == 4  # its one delivered batch, nothing after


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_sync_closed_mid_batch_never_advances_that_batch(parallel):
    world = FakeStreams({"a": 40, "b": 40, "c": 40}, batch=4)
    _run_with_timeout(lambda: _read(world, ["a", "b", "c"], parallel=parallel, stop_after=6))
    assert world.advanced_past_unflushed == []
    assert sum(world.position.values()) <= len(world.flushed)
