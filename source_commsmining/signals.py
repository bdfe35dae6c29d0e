"""SIGINT and SIGTERM: a sync that is stopped ends like any other failure, never half-way through a write.

Two handlers. While the process starts (`while_starting`, installed by console.main before the CDK,
which takes a second or two to import) the handler does not raise: an exception thrown into the
middle of an import can land inside an extension module's initialisation (the process died of
SIGSEGV instead of ending with its TRACE, twice in full test runs on a loaded machine). Nothing has
been read or sent yet, so it writes the TRACE and ends the process at once. Once the run has begun,
`interrupt` raises `Interrupted` in the main thread, and launch.launch flushes what was printed,
writes a TRACE and exits with 128 + the signal. Once every line of the run, or the one answer of
`spec`, `check` or `discover`, is written (`finished`), a signal has nothing left to interrupt: the process ends with the run's own exit code. PyAirbyte,
for one, terminates `discover` as soon as it has read the catalog, and takes any exit code but 0 or
-15 for a failure.

Only the standard library is imported here, so the first handler is in place within milliseconds.
"""

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_finished_with: Optional[int] = None  # the run's exit code, once every line of it is written


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread (a BaseException, so no `except Exception` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _ignore_more() -> None:
    # A second signal (Airbyte repeats SIGTERM before its SIGKILL) must not cut the clean-up short.
    for other in SIGNALS:
        signal.signal(other, signal.SIG_IGN)


def finished(exit_code: Optional[int]) -> None:
    """The run's outcome is written (its answer, or every line): a signal from here on ends nothing."""
    global _finished_with
    _finished_with = exit_code


def interrupt(signum: int, frame: Any) -> None:
    """The handler during the run: no advance or retry is sent from here on, and the main thread stops."""
    if _finished_with is not None:
        return  # the run is written: the flush goes on and the process ends with the run's exit code
    _ignore_more()
    from source_commsmining import liveness  # the standard library only

    liveness.end(f"the sync received {signal.Signals(signum).name}")
    raise Interrupted(signum)


def early_trace(stop: Interrupted) -> str:
    """The TRACE of a stop while starting, written by hand: the CDK's models may not be imported yet."""
    return json.dumps(
        {
            "type": "TRACE",
            "trace": {
                "type": "ERROR",
                "emitted_at": int(time.time() * 1000),
                "error": {
                    "message": f"The connector was interrupted ({stop}) while starting, before it read or sent anything.",
                    "internal_message": f"source-commsmining received {stop} while starting",
                    "failure_type": "transient_error",
                },
            },
        }
    )


def while_starting(signum: int, frame: Any) -> None:
    """The handler until the run installs `interrupt` (no exception into a half-done import), and again after it."""
    _ignore_more()
    if _finished_with is not None:
        os._exit(_finished_with)  # the run is written and flushed: only the interpreter's shutdown was left
    try:
        os.write(1, (early_trace(Interrupted(signum)) + "\n").encode())
    except OSError:
        pass  # nobody reads stdout any more
    os._exit(128 + signum)


def install_while_starting() -> None:
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, while_starting)


@contextmanager
def interrupting() -> Iterator[None]:
    """`interrupt` for SIGINT and SIGTERM during the block (main thread only), the previous handlers after it."""
    finished(None)  # a run begins: nothing of it is written yet
    saved = {}
    if threading.current_thread() is threading.main_thread():
        saved = {signum: signal.signal(signum, interrupt) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
