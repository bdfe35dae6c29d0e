"""The console script's watch: the process ends when its parent dies or the reader of its stdout goes.

Polling the parent id rather than prctl(PR_SET_PDEATHSIG): that signal fires when the parent THREAD
that spawned us exits (PyAirbyte may spawn from a worker thread), and it is Linux-only. A process
that is orphaned, or whose stdout nobody reads, cannot deliver anything more, and any advance it
still made could move a stream past comments no one received: the liveness flag is cleared (no
advance or retry is sent from here on) and the process ends with a non-zero code at once, so no
orphan finishes an advance after the next sync rewound the stream. The main thread, blocked in a
long advance retry, would only notice a broken pipe at its next write.
"""

import os
import select
import sys
import threading
import time
from typing import Optional

from source_commsmining import liveness

WATCH_SECONDS = 0.25
EXIT_GONE = 1  # the exit code when the parent or the reader of stdout went away


def _stdout_hung_up(fd: int) -> bool:
    """The reader of the stdout pipe (or socket) closed its end: a write would fail with EPIPE."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError):
        return False


def _watch(parent: int, stdout_fd: Optional[int], interval: float = WATCH_SECONDS) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            why = "the parent process died"
        elif stdout_fd is not None and _stdout_hung_up(stdout_fd):
            why = "the reader of stdout went away"
        else:
            continue
        liveness.end(why)
        os._exit(EXIT_GONE)


def start() -> None:
    """Starts the watch in a daemon thread (the console script only: it ends the whole process), unless orphaned at start."""
    parent = os.getppid()
    if parent <= 1:
        return  # started by init (or a container's PID 1 died already): no parent whose death could be told
    stdout = sys.__stdout__
    try:
        fd = stdout.fileno() if stdout is not None else None
    except (OSError, ValueError):
        fd = None
    threading.Thread(target=_watch, args=(parent, fd), name="parent-watch", daemon=True).start()
