"""Console entry point: `source-commsmining spec|check|discover|read`."""

import sys
import traceback
from datetime import datetime, timezone
from typing import List, Optional

import orjson
from airbyte_cdk.entrypoint import AirbyteEntrypoint, launch
from airbyte_cdk.models import (
    AirbyteErrorTraceMessage,
    AirbyteMessage,
    AirbyteMessageSerializer,
    AirbyteTraceMessage,
    FailureType,
    TraceType,
    Type,
)

from source_commsmining.source import SourceCommsmining


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
    launch(source, args)
