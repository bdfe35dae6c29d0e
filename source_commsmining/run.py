"""Runs the connector: build the source with the run's catalog, config and state, print a TRACE if
that fails, hand over to launch (masked output, signals, exit codes: launch.py)."""

import ctypes
import gc
import os
import sys
import traceback
from typing import Any, Iterator, List, Mapping, Optional

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import liveness, parent_watch, signals
from source_commsmining.config import credential_secrets, endpoint_secrets
from source_commsmining.entrypoint import CommsminingEntrypoint
from source_commsmining.errors import register_secret
from source_commsmining.launch import Failed, launch, trace
from source_commsmining.source import SourceCommsmining


def _read_config(args: List[str]) -> Optional[Mapping[str, Any]]:
    """The config file's content; its secrets (a token, a client secret) and any password in `api_endpoint`
    are masked from here on."""
    config_path = AirbyteEntrypoint.extract_config(args)
    config = SourceCommsmining.read_config(config_path) if config_path else None
    if isinstance(config, Mapping):
        for secret in [*credential_secrets(config), *endpoint_secrets(config.get("api_endpoint"))]:
            register_secret(secret)
    return config


def _source(args: List[str], config: Optional[Mapping[str, Any]]) -> SourceCommsmining:
    """Built with the run's catalog, config and state, as the CDK's declarative source wants them."""
    catalog_path, state_path = AirbyteEntrypoint.extract_catalog(args), AirbyteEntrypoint.extract_state(args)
    return SourceCommsmining(
        catalog=SourceCommsmining.read_catalog(catalog_path) if catalog_path else None,
        config=config,
        state=SourceCommsmining.read_state(state_path) if state_path else None,
        config_path=AirbyteEntrypoint.extract_config(args),
    )


def _messages(args: List[str], own_process: bool) -> Iterator[str]:
    """Every line of the run, in order; a source that cannot be built (a bad config or state file) is a TRACE."""
    try:
        source = _source(args, _read_config(args))
    except AirbyteTracedException as error:
        yield AirbyteEntrypoint.airbyte_message_to_string(error.as_sanitized_airbyte_message())
        raise Failed()
    except Exception as error:  # without this the platform would only see a Python traceback on stderr
        yield trace(f"source-commsmining could not start: {error}", str(error), FailureType.config_error, traceback.format_exc())
        raise Failed()
    if own_process:  # the process is the connector's: its collector and allocator are set for a read
        _tune_gc()
        _tune_malloc()
    entrypoint = CommsminingEntrypoint(source)
    parsed = entrypoint.parse_args(args)
    lines = entrypoint.run(parsed)
    yield from lines if parsed.command == "read" else _answered(lines)


# The one answer of `spec`, `check` and `discover`.
_ANSWERS = ('{"type":"SPEC"', '{"type":"CONNECTION_STATUS"', '{"type":"CATALOG"')


def _answered(lines: Iterator[str]) -> Iterator[str]:
    """The lines of `spec`, `check` or `discover`: once the answer is written, a signal has nothing left to
    interrupt (PyAirbyte terminates `discover` as soon as it has read the catalog)."""
    for line in lines:
        yield line  # launch has written it when this resumes
        if line.startswith(_ANSWERS):
            signals.finished(0)


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


# glibc's mallopt parameter: the size from which an allocation is its own mapping, given back when freed.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def _tune_malloc() -> None:
    """glibc's allocator with a fixed mmap threshold (its default, 128 KiB), so that memory freed by one
    partition's thread goes back to the system rather than staying in that thread's arena.

    By default glibc raises the threshold to the size of any mapped block freed: after the first export
    page (~550 KB of body) is freed, every later page comes from the arena of the thread that reads
    it, and with 8 partitions in flight each of 8 arenas keeps its own high-water mark. `make bench`
    (history_rss, 1,000,000 comments): see benchmarks/README.md for what it is worth.
    `SOURCE_COMMSMINING_MALLOC_TUNING=0` turns it off; without glibc (macOS, musl) there is nothing to set.
    """
    if os.environ.get("SOURCE_COMMSMINING_MALLOC_TUNING", "1") == "0":
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def run(args: Optional[List[str]] = None) -> None:
    """The console script (no `args`: the process is the connector's own, so its collector is tuned), or in-process."""
    own_process = args is None
    liveness.start()
    if own_process:
        parent_watch.start()
    launch(_messages(sys.argv[1:] if own_process else args, own_process), own_process)
