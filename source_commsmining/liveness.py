"""Whether the sync is still live: one process-wide flag that every advance and reset checks first.

A stream may be advanced only while someone reads what it delivered. Once stdout is broken, a
signal stopped the sync or the parent process died, nothing more can be delivered, so no request
that consumes (an advance, or a retry of one) may be sent: a late advance from an orphaned
process could move the stream forward after the next sync rewound it.
`launch.py`, `signals.py` and `parent_watch.py` clear the flag; the reader and the requesters' authenticator (transport.py) check it.
"""

import threading

_live = threading.Event()
_live.set()
_why = ["the sync stopped"]


class SyncNotLive(Exception):
    """Raised instead of sending a request that would consume comments nobody can receive any more."""


def start() -> None:
    """Marks the sync live (the console script calls it once per run; in-process runs may repeat)."""
    _why[0] = "the sync stopped"
    _live.set()


def end(why: str) -> None:
    _why[0] = why
    _live.clear()


def is_live() -> bool:
    return _live.is_set()


def require_live(what: str) -> None:
    if not _live.is_set():
        raise SyncNotLive(f"{what} not sent: {_why[0]}, so nothing more can be delivered.")
