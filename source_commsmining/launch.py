"""The CDK's launch(), plus what it leaves out and the platform needs, at the one place where messages are written.

- every line goes through the mask (masking.py);
- SIGINT (Ctrl-C) and SIGTERM (Airbyte's cancel) end like any other failure (signals.py): what was
  printed (states included) is flushed, a TRACE says the sync was interrupted, the exit code is
  128 + the signal, and the CDK's temporary directory is cleaned up;
- any other failure ends with a TRACE and exit code 1, never a bare traceback;
- once nobody reads stdout, nothing more is read or advanced (liveness.py), and the process ends quietly.
"""

import logging
import os
import sys
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.models import AirbyteErrorTraceMessage, AirbyteMessage, AirbyteTraceMessage, FailureType, TraceType, Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import liveness, signals
from source_commsmining.masking import masked_output
from source_commsmining.signals import Interrupted, interrupting


class Failed(Exception):
    """The run already printed its TRACE; only the exit code is left to set."""


def trace(message: str, internal: str, failure_type: FailureType, stack_trace: Optional[str] = None) -> str:
    """One TRACE error line."""
    return AirbyteEntrypoint.airbyte_message_to_string(
        AirbyteMessage(
            type=Type.TRACE,
            trace=AirbyteTraceMessage(
                type=TraceType.ERROR,
                emitted_at=int(datetime.now(timezone.utc).timestamp() * 1000),
                error=AirbyteErrorTraceMessage(
                    message=message, internal_message=internal, failure_type=failure_type, stack_trace=stack_trace
                ),
            ),
        )
    )


def _close(lines: Iterator[str]) -> None:
    try:
        lines.close()
    except RuntimeError:  # the entrypoint's `finally` had queued messages to yield; the platform will not read them now
        pass


def _discard_stdout() -> None:
    """Points the stdout file descriptor at /dev/null, so the interpreter's last flush has nowhere to fail."""
    stdout = sys.__stdout__
    if stdout is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _write_all(lines: Iterator[str]) -> int:
    """Writes every line of the run, masked; the exit code."""
    with masked_output() as write:
        exit_code = _write_lines(lines, write)
        signals.finished(exit_code)  # before the output's last flush: a signal from here on interrupts nothing
    return exit_code


def _write_lines(lines: Iterator[str], write: Callable[[str], None]) -> int:
    try:
        for line in lines:
            write(line)
    except Failed:
        return 1
    except BrokenPipeError:
        raise  # nobody reads stdout any more: see launch
    except Interrupted as stop:
        _close(lines)  # the entrypoint's temporary directory is removed here
        write(
            trace(
                f"The sync was interrupted ({stop}): it stopped at the last STATE printed above, and the "
                "next sync goes on from there.",
                f"source-commsmining received {stop}",
                FailureType.transient_error,
            )
        )
        return 128 + stop.signum
    except Exception as error:
        traced = error if isinstance(error, AirbyteTracedException) else AirbyteTracedException.from_exception(error)
        logging.getLogger("airbyte").fatal(f"source-commsmining failed: {error!r}")
        write(AirbyteEntrypoint.airbyte_message_to_string(traced.as_sanitized_airbyte_message()))
        return 1
    finally:
        _close(lines)
    return 0


def launch(lines: Iterator[str], own_process: bool) -> None:
    """Prints `lines` (the run's messages) and exits with the run's code; `own_process`: the console script's process."""
    exit_code = 0
    try:
        with interrupting():
            exit_code = _write_all(lines)
    except BrokenPipeError:
        # The reader of stdout went away (a platform that stopped the sync, or PyAirbyte once it has the
        # one message it asked for). Nothing written from here on could be delivered, and nothing is read
        # or advanced after a write fails; end quietly instead of with a traceback nobody can read.
        liveness.end("stdout is closed")
        _discard_stdout()
        exit_code = 1
        if own_process:
            # At once: a worker in an advance or its backoff must not keep the process alive (nor finish it).
            os._exit(exit_code)
    if exit_code:
        sys.exit(exit_code)
