"""Console entry point: `source-commsmining spec|check|discover|read`."""

import gc
import logging
import os
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from typing import Iterable, List, Optional

import orjson
from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.entrypoint import logger as cdk_logger
from airbyte_cdk.logger import PRINT_BUFFER, is_platform_debug_log_enabled
from airbyte_cdk.models import (
    AirbyteErrorTraceMessage,
    AirbyteMessage,
    AirbyteMessageSerializer,
    AirbyteTraceMessage,
    FailureType,
    TraceType,
    Type,
)

from airbyte_cdk.models import ConnectorSpecification
from airbyte_cdk.sources.utils.schema_helpers import split_config
from airbyte_cdk.utils.constants import ENV_REQUEST_CACHE_PATH

from source_commsmining.config import validate_against_spec
from source_commsmining.messages import to_line
from source_commsmining.source import SourceCommsmining


class CommsminingEntrypoint(AirbyteEntrypoint):
    """The CDK entrypoint, with config errors that name the offending field and a leaner `read`."""

    @staticmethod
    def validate_connection(source_spec: ConnectorSpecification, config) -> None:
        connector_config, _ = split_config(config)
        validate_against_spec(connector_config, source_spec.connectionSpecification)

    def run(self, parsed_args) -> Iterable[str]:
        if parsed_args.command != "read":
            yield from super().run(parsed_args)
            return
        # AirbyteEntrypoint.run's `read` branch, step for step (unit_tests/test_cdk_contract.py
        # pins it), except that each message is written by messages.to_line: RECORDs skip the
        # serializer's intermediate dict and message walk (a few microseconds per record).
        if getattr(parsed_args, "debug", False) or is_platform_debug_log_enabled():
            self.logger.setLevel(logging.DEBUG)
            cdk_logger.setLevel(logging.DEBUG)
            self.logger.debug("Debug logs enabled")
        else:
            self.logger.setLevel(logging.INFO)
        source_spec = self.source.spec(self.logger)
        try:
            with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as temp_dir:
                os.environ[ENV_REQUEST_CACHE_PATH] = temp_dir
                config = self.source.configure(self.source.read_config(parsed_args.config), temp_dir)
                yield from [to_line(message) for message in self._emit_queued_messages(self.source)]
                catalog = self.source.read_catalog(parsed_args.catalog)
                state = self.source.read_state(parsed_args.state)
                yield from map(to_line, self.read(source_spec, config, catalog, state))
        finally:
            yield from [to_line(message) for message in self._emit_queued_messages(self.source)]


def _source(args: List[str]) -> Optional[SourceCommsmining]:
    catalog_path = AirbyteEntrypoint.extract_catalog(args)
    config_path = AirbyteEntrypoint.extract_config(args)
    state_path = AirbyteEntrypoint.extract_state(args)
    try:
        return SourceCommsmining(
            catalog=SourceCommsmining.read_catalog(catalog_path) if catalog_path else None,
            config=SourceCommsmining.read_config(config_path) if config_path else None,
            state=SourceCommsmining.read_state(state_path) if state_path else None,
            config_path=config_path,
        )
    except Exception as error:
        # Without this the platform would only see a Python traceback on stderr.
        message = AirbyteMessage(
            type=Type.TRACE,
            trace=AirbyteTraceMessage(
                type=TraceType.ERROR,
                emitted_at=int(datetime.now(timezone.utc).timestamp() * 1000),
                error=AirbyteErrorTraceMessage(
                    message=f"source-commsmining could not start: {error}",
                    internal_message=str(error),
                    failure_type=FailureType.config_error,
                    stack_trace=traceback.format_exc(),
                ),
            ),
        )
        print(orjson.dumps(AirbyteMessageSerializer.dump(message)).decode(), flush=True)
        return None


def run(args: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if args is None else args
    source = _source(args)
    if source is None:
        sys.exit(1)
    entrypoint = CommsminingEntrypoint(source)
    parsed_args = entrypoint.parse_args(args)
    # What exists now (the CDK, its models, the parsed manifest: ~110k objects) lives until exit.
    # Frozen, the collector stops re-walking it at every full collection, which a read's
    # short-lived batches trigger every few thousand records (a tenth of a read's CPU). And a
    # batch (~2,000 containers parsed from one /results body) is freed by reference counting,
    # so a young generation of 10,000 rather than 700 collects only real cyclic garbage, not
    # every batch in flight (another 4%; RSS is unchanged, see benchmarks/results.json).
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    # As airbyte_cdk.entrypoint.launch: every message goes through the PrintBuffer, which
    # ResultsReader flushes after each STATE before it lets a stream advance.
    with PRINT_BUFFER:
        for message in entrypoint.run(parsed_args):
            print(f"{message}\n", end="")
