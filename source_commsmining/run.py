"""Console entry point: `source-commsmining spec|check|discover|read`.

The CDK's `launch()`, plus what it leaves out and the platform needs, all at the one place
where messages are written:

- every line written to stdout or stderr is masked (errors.mask: every form of the API token),
  whatever the server echoed back and whichever part of the CDK or the connector wrote it;
- SIGINT (Ctrl-C) and SIGTERM (Airbyte's cancel) end like any other failure: what was printed
  (states included) is flushed, a TRACE says the sync was interrupted, the exit code is
  non-zero, and the CDK's temporary directory is cleaned up;
- a source that cannot even be built (a bad config or state file) still ends with a TRACE;
- no advance once nobody reads the output (liveness.py): a broken stdout, a signal or the death of
  the parent process ends the sync's liveness, and the console script then ends at once
  (`_watch`), so no orphan finishes an advance after the next sync rewound the stream.
"""

import gc
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, List, Mapping, Optional, TextIO

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import (
    AirbyteErrorTraceMessage,
    AirbyteMessage,
    AirbyteTraceMessage,
    ConnectorSpecification,
    FailureType,
    TraceType,
    Type,
)
from airbyte_cdk.sources.utils.schema_helpers import split_config
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets, get_secrets, update_secrets

from source_commsmining import errors, liveness
from source_commsmining.console import Interrupted, interrupt
from source_commsmining.config import endpoint_secrets, validate_against_spec
from source_commsmining.errors import is_plausible_secret, mask, register_secret
from source_commsmining.source import SourceCommsmining



class CommsminingEntrypoint(AirbyteEntrypoint):
    """The CDK entrypoint, with config errors that name the offending field."""

    @staticmethod
    def validate_connection(source_spec: ConnectorSpecification, config: Mapping[str, Any]) -> None:
        connector_config, _ = split_config(config)
        validate_against_spec(connector_config, source_spec.connectionSpecification)

    @staticmethod
    def set_up_secret_filter(config: Any, connection_specification: Mapping[str, Any]) -> None:
        """As the CDK's, without secrets too short (or too common) to mask: the CDK's filter would replace
        them in every line, protocol words included. Such a token is refused before anything is sent."""
        secrets = [secret for secret in get_secrets(connection_specification, config) if is_plausible_secret(secret)]
        update_secrets(list(secrets))  # a list of its own: register_secret appends to the CDK's
        for secret in secrets:
            register_secret(secret)


# The handlers console.main installs first thing; run() installs them again when run in-process.
_interrupt = interrupt


WATCH_SECONDS = 0.25
_EXIT_GONE = 1  # the exit code when the parent or the reader of stdout went away


def _stdout_hung_up(fd: int) -> bool:
    """The reader of the stdout pipe (or socket) closed its end: a write would fail with EPIPE."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError):
        return False


def _watch(parent: int, stdout_fd: Optional[int], interval: float = WATCH_SECONDS) -> None:
    """A daemon thread of the console script: ends the process when its parent dies or stdout's reader goes.

    Polling the parent id rather than prctl(PR_SET_PDEATHSIG): that signal fires when the parent
    THREAD that spawned us exits (PyAirbyte may spawn from a worker thread), and it is Linux-only.
    A process that is orphaned, or whose stdout nobody reads, cannot deliver anything more, and any
    advance it still made could move a stream past comments no one received: the liveness flag is
    cleared (no advance or retry is sent from here on) and the process ends with a non-zero code.
    The main thread blocked in a long advance retry would only notice a broken pipe at its next write.
    """
    while True:
        time.sleep(interval)
        if os.getppid() != parent:
            why = "the parent process died"
        elif stdout_fd is not None and _stdout_hung_up(stdout_fd):
            why = "the reader of stdout went away"
        else:
            continue
        liveness.end(why)
        os._exit(_EXIT_GONE)


def start_watch() -> None:
    """Starts `_watch` (the console script only: it ends the whole process), unless already orphaned at start."""
    parent = os.getppid()
    if parent <= 1:
        return  # started by init (or a container's PID 1 died already): no parent whose death could be told
    stdout = sys.__stdout__
    try:
        fd = stdout.fileno() if stdout is not None else None
    except (OSError, ValueError):
        fd = None
    threading.Thread(target=_watch, args=(parent, fd), name="parent-watch", daemon=True).start()


class _MaskedStream:
    """sys.stdout / sys.stderr for the run: every write goes through errors.mask.

    mask scans each line for every registered form and fragment of the token; a line that holds
    none of errors.PROBES (pieces that every form and fragment contains) cannot hold any of them,
    so most lines skip the scans; a RECORD line is probed for the full forms only (see errors.PROBES). With no probe (no token registered) only the CDK's own
    registry is applied.
    """

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        for probe in errors.RECORD_PROBES if text.startswith('{"type":"RECORD"') else errors.PROBES:
            if probe in text:
                text = mask(text)
                break
        else:
            if not errors.PROBES:
                text = filter_secrets(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _trace(message: str, internal: str, failure_type: FailureType, stack_trace: Optional[str] = None) -> str:
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


def _read_config(args: List[str]) -> Optional[Mapping[str, Any]]:
    config_path = AirbyteEntrypoint.extract_config(args)
    return SourceCommsmining.read_config(config_path) if config_path else None


def _source(args: List[str], config: Optional[Mapping[str, Any]]) -> SourceCommsmining:
    """Built with the run's catalog, config and state, as the CDK's declarative source wants them."""
    catalog_path = AirbyteEntrypoint.extract_catalog(args)
    state_path = AirbyteEntrypoint.extract_state(args)
    return SourceCommsmining(
        catalog=SourceCommsmining.read_catalog(catalog_path) if catalog_path else None,
        config=config,
        state=SourceCommsmining.read_state(state_path) if state_path else None,
        config_path=AirbyteEntrypoint.extract_config(args),
    )


def _messages(
    args: List[str], config: Optional[Mapping[str, Any]], unreadable: Optional[Exception] = None, tune_gc: bool = False
) -> Iterator[str]:
    """Every line of the run, in order; a failure to start (`unreadable`: the config file's) becomes a TRACE."""
    try:
        if unreadable is not None:
            raise unreadable
        source = _source(args, config)
    except AirbyteTracedException as error:
        yield AirbyteEntrypoint.airbyte_message_to_string(error.as_sanitized_airbyte_message())
        raise _Failed()
    except Exception as error:
        # Without this the platform would only see a Python traceback on stderr.
        yield _trace(
            f"source-commsmining could not start: {error}", str(error), FailureType.config_error, traceback.format_exc()
        )
        raise _Failed()
    if tune_gc:
        _tune_gc()
    entrypoint = CommsminingEntrypoint(source)
    yield from entrypoint.run(entrypoint.parse_args(args))


def _tune_gc() -> None:
    """Python's collector, set for a read: 62k fewer instructions per record (787k against 849k, valgrind),
    RSS unchanged. Kept because the CPU guard of `make bench` fails without it (benchmarks/README.md).

    What exists once the source is built (the CDK, its models, the parsed manifest: ~110k objects)
    lives until exit: frozen, full collections stop re-walking it, and a young generation of 10,000
    rather than 700 lets a batch in flight (~2,000 containers, freed by reference counting) pass
    without a collection. No CDK internals involved. `SOURCE_COMMSMINING_GC_TUNING=0` turns it off.
    """
    if os.environ.get("SOURCE_COMMSMINING_GC_TUNING", "1") != "0":
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)


class _Failed(Exception):
    """The run already printed its TRACE; only the exit code is left to set."""


def _close(lines: Iterator[str]) -> None:
    try:
        lines.close()
    except RuntimeError:  # the entrypoint's `finally` had queued messages to yield; the platform will not read them now
        pass


@contextmanager
def masked_output() -> Iterator[Callable[[str], None]]:
    """What launch() prints through, masked: yields the function that writes one message line.

    As airbyte_cdk.entrypoint.launch, every line goes through the CDK's PrintBuffer, which
    ResultsReader flushes (messages.flush_stdout) after each STATE before it lets a stream advance.
    sys.stdout, sys.stderr (which the PrintBuffer redirects to stdout) and the CDK's log handler,
    which writes to the PrintBuffer itself, all go through the mask.
    """
    with PRINT_BUFFER:
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = (_MaskedStream(stream) for stream in saved)
        log_handlers = [
            handler
            for handler in logging.getLogger().handlers
            if isinstance(handler, logging.StreamHandler) and handler.stream is PRINT_BUFFER
        ]
        for handler in log_handlers:
            handler.setStream(_MaskedStream(PRINT_BUFFER))
        try:
            # One write per line (print would make a second, empty one for `end`): through the mask to the PrintBuffer.
            yield lambda line: sys.stdout.write(line + "\n")
        finally:
            sys.stdout, sys.stderr = saved
            for handler in log_handlers:
                handler.setStream(PRINT_BUFFER)


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


def run(args: Optional[List[str]] = None) -> None:
    """The console script (no `args`: the process is the connector's own, so its collector is tuned), or in-process."""
    own_process = args is None
    args = sys.argv[1:] if args is None else args
    liveness.start()
    if own_process:
        start_watch()
    exit_code = 0
    config, token, unreadable = None, None, None
    try:
        config = _read_config(args)
        token = (config or {}).get("api_token")
    except Exception as error:  # reported, as a TRACE, by _messages
        unreadable = error
    register_secret(token)
    for secret in endpoint_secrets((config or {}).get("api_endpoint") if isinstance(config, Mapping) else None):
        register_secret(secret)
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        with masked_output() as write:
            lines = _messages(args, config, unreadable, tune_gc=own_process)
            try:
                for line in lines:
                    write(line)
            except _Failed:
                exit_code = 1
            except BrokenPipeError:
                raise  # nobody reads stdout any more: see below
            except Interrupted as stop:
                _close(lines)  # the entrypoint's temporary directory is removed here
                write(
                    _trace(
                        f"The sync was interrupted ({stop}): it stopped at the last STATE printed above, and the "
                        "next sync goes on from there.",
                        f"source-commsmining received {stop}",
                        FailureType.transient_error,
                    )
                )
                exit_code = 128 + stop.signum
            except Exception as error:
                traced = error if isinstance(error, AirbyteTracedException) else AirbyteTracedException.from_exception(error)
                logging.getLogger("airbyte").fatal(f"source-commsmining failed: {error!r}")
                write(AirbyteEntrypoint.airbyte_message_to_string(traced.as_sanitized_airbyte_message()))
                exit_code = 1
            finally:
                _close(lines)
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
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if exit_code:
        sys.exit(exit_code)
