"""How many dataset history records may wait, unwritten, between the partitions' threads and the output.

The CDK's concurrent framework reads up to `concurrency_level` partitions (datasets, time windows) at
once and queues their records for the main thread, which writes them: up to 10,000 records, a
constant of the CDK. An exported comment is some 20 KB as Python objects, so a full queue is some
200 MB, and it fills whenever the partitions read faster than the output writes (a large backfill:
316.9 MB peak at 1.39 million comments without this). A partition's thread waits before it hands a
record over while `limit` records wait unwritten; each record the main thread writes lets one more
through.

A record counted here that never reaches the output (a read that fails, a test's record limit) would
keep its place: a thread that waited `stall_s` without any record being written goes on and starts
the count again, so a lost place costs one wait, never a hung sync. (An output that blocks that long,
a stalled destination, lets the CDK's own queue take over for a while.)
"""

import threading
from typing import Optional

# Records waiting at most: about 20 MB of exported comments, a quarter of a second of the output's pace.
LIMIT = 1_000
STALL_SECONDS = 30.0


class Backlog:
    """Counts the records handed over and not yet written; `enter` in a partition's thread, `leave` in the main thread."""

    def __init__(self, limit: Optional[int] = None, stall_s: float = STALL_SECONDS):
        self.limit: float = LIMIT if limit is None else limit
        self.most = 0  # the most records seen waiting at once
        self._stall_s = stall_s
        self._waiting = 0
        self._written = threading.Condition()

    def enter(self) -> None:
        with self._written:
            while self._waiting >= self.limit:
                if not self._written.wait(self._stall_s):
                    self._waiting = 0  # nothing written for stall_s: the places counted are lost, or the output stalls
            self._waiting += 1
            if self._waiting > self.most:
                self.most = self._waiting

    def leave(self) -> None:
        with self._written:
            if self._waiting:
                self._waiting -= 1
            self._written.notify()

    def open(self) -> None:
        """The read is over (done or failed): nothing waits any more, as if there were no backlog."""
        with self._written:
            self.limit = float("inf")
            self._written.notify_all()


_current: Optional[Backlog] = None


def current() -> Optional[Backlog]:
    """The running read's backlog (None outside a read of the dataset history: nothing waits)."""
    return _current


def start(backlog: Backlog) -> Backlog:
    global _current
    _current = backlog
    return backlog


def stop() -> None:
    global _current
    if _current is not None:
        _current.open()
    _current = None
