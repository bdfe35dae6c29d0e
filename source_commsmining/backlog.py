"""How many dataset history comments may be in memory, parsed and not yet written, across the partitions' threads.

The CDK's concurrent framework reads up to `concurrency_level` partitions (datasets, time windows) at
once and queues their records for the main thread, which writes them: up to 10,000 records (a CDK
constant), while each partition's thread holds the page it reads. A page of 256 exported comments is
some 550 KB of body and 2 MB of objects once parsed. So a partition's thread takes its page's places
here before it parses the page (as many as the request's `limit`), waits while they do not fit, and
gives back those its page did not fill; each record the main thread writes gives back one more. A
backfill of 1.39 million comments peaked at 316.9 MB with only the CDK's queue as a bound.

A record counted here that never reaches the output (a read that fails, a test's record limit) would
keep its place: a thread that waited `stall_s` without any record being written goes on and starts
the count again, so a lost place costs one wait, never a hung sync. (An output that blocks that long,
a stalled destination, lets the CDK's own queue take over for a while.)
"""

import threading
from typing import Optional

# Comments in memory at most: two pages of the default size (one written while the next is parsed).
LIMIT = 512
STALL_SECONDS = 30.0


class Backlog:
    """Counts the places taken and not yet given back; `enter` in a partition's thread, `leave` in the main thread."""

    def __init__(self, limit: Optional[int] = None, stall_s: float = STALL_SECONDS):
        self.limit: float = LIMIT if limit is None else limit
        self.most = 0  # the most places seen taken at once
        self._stall_s = stall_s
        self._waiting = 0
        self._written = threading.Condition()

    @property
    def unwritten(self) -> int:
        """Places taken and not yet given back."""
        return self._waiting

    def enter(self, places: int = 1) -> None:
        """Takes `places` (a page's worth, before it is parsed), waiting while they do not fit; a page bigger than the limit goes alone."""
        with self._written:
            while self._waiting and self._waiting + places > self.limit:
                if not self._written.wait(self._stall_s):
                    self._waiting = 0  # nothing written for stall_s: the places counted are lost, or the output stalls
            self._waiting += places
            if self._waiting > self.most:
                self.most = self._waiting

    def leave(self, places: int = 1) -> None:
        """Gives back places: a record written, or places taken for records that did not come."""
        with self._written:
            self._waiting = max(0, self._waiting - places)
            self._written.notify(places)  # as many waiting threads as places given back: each may fit now

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
