"""The console script's first step: SIGINT/SIGTERM handlers, installed before the heavy imports.

Importing the CDK takes a second or two; a signal in that time would otherwise end the process with
a KeyboardInterrupt traceback or a bare -15. Only the standard library is imported here (the
package's __init__ defers its own import of the source), so the handlers are in place within
milliseconds of start; a signal before run.run takes over gets the same TRACE and exit code
(128 + the signal) that run.run gives one during a sync.

Before run.run the handler does not raise: an exception thrown into the middle of an import can
land inside an extension module's initialisation (the process died of SIGSEGV instead of ending
with its TRACE, twice in full test runs on a loaded machine; not reproduced in 160 tries alone).
Nothing has been read or sent yet, so it writes the TRACE and ends the process at once; run.run
installs the raising handler (`interrupt`) when it starts.
"""

import json
import os
import signal
import sys
import threading
import time
from typing import Any


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread (a BaseException, so no `except Exception` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt(signum: int, frame: Any) -> None:
    # A second signal (Airbyte repeats SIGTERM before its SIGKILL) must not cut the clean-up short.
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    from source_commsmining import liveness  # the standard library only: no advance or retry is sent from here on

    liveness.end(f"the sync received {signal.Signals(signum).name}")
    raise Interrupted(signum)


def _early_trace(stop: Interrupted) -> str:
    """The TRACE run.run would print, written by hand: the CDK's models may not be imported yet."""
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


def main() -> None:
    """`source-commsmining spec|check|discover|read`: handlers first, then the connector (run.run)."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _while_starting)
    try:
        from source_commsmining.run import run

        run()
    except Interrupted as stop:  # run.run's handler, before run.run's own handling began
        try:
            print(_early_trace(stop), flush=True)
        except (BrokenPipeError, OSError):
            pass
        sys.exit(128 + stop.signum)


def _while_starting(signum: int, frame: Any) -> None:
    """The handler until run.run installs its own: no exception into a half-done import."""
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    _stop_starting(signum)


def _stop_starting(signum: int) -> None:
    try:
        os.write(1, (_early_trace(Interrupted(signum)) + "\n").encode())
    except OSError:
        pass  # nobody reads stdout any more
    os._exit(128 + signum)
